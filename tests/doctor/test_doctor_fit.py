"""Model fit for the seed's Qwen3-Next-80B-A3B (tests/fixtures/doctor/FIT.md has the arithmetic)."""

from __future__ import annotations

import pytest
from doctor_fixtures import H100, qwen3_next, text

from vllmgen.doctor import fit, gpu

H100_GIB = gpu.parse_gpu_query(text(H100 / "nvidia_smi_query.txt"))[0].memory_total_gib  # 81559 MiB


def test_parameter_count_matches_the_release():
    # FIT.md sums these by hand; a public test asserts the same two numbers for Qwen3-Coder-Next (same shapes).
    p = fit.estimate_params(qwen3_next())
    assert p.total == 79_674_391_296
    assert p.active == 3_874_929_408  # the "A3B": 10 of 512 experts, plus the shared expert
    assert p.experts == 48 * 512 * 3 * 2048 * 512


def test_kv_cache_counts_only_full_attention_layers():
    kv = fit.kv_cache(qwen3_next())
    assert (kv.full_attention_layers, kv.linear_attention_layers) == (12, 36)
    assert kv.bytes_per_token == 12 * 2 * 2 * 256 * 2 == 24576
    assert kv.state_bytes_per_sequence == 36 * (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 3) * 2


def test_layer_types_win_over_the_interval():
    cfg = qwen3_next() | {"layer_types": ["full_attention"] * 48}
    assert fit.kv_cache(cfg).full_attention_layers == 48


def test_two_nodes_of_eight_h100_at_tp16_fit():
    r = fit.fit(qwen3_next(), gpus=16, gpu_mem_gib=H100_GIB, util=0.9, tp=16, max_model_len=16248)
    assert r.fits and (r.tp, r.pp) == (16, 1)
    assert round(r.weights_gib, 1) == 148.4 and round(r.weights_gib_per_gpu, 2) == 9.28
    assert r.kv_bytes_per_token_per_gpu == 12 * 2 * 1 * 256 * 2  # 2 KV heads replicated: 1 per rank
    assert r.message == "fits with 966.5 GiB for KV cache (60.4 GiB per GPU, ≈ 5,278,478 tokens)"


def test_one_h100_does_not_fit():
    r = fit.fit(qwen3_next(), gpus=1, gpu_mem_gib=H100_GIB, util=0.9, tp=1, max_model_len=16248)
    assert not r.fits and r.tokens == 0
    assert r.message == "does not fit: needs 150.8 GiB, has 71.7 GiB"
    check = fit.check_fit(r)
    assert check.status == "fail" and "quantized" in check.fix


def test_notes_state_the_approximations():
    r = fit.fit(qwen3_next(), gpus=16, gpu_mem_gib=H100_GIB, util=0.9, tp=16, max_model_len=16248)
    assert any("reserve of 2 GiB per GPU" in n for n in r.notes)
    assert any("36 of 48 layers are linear attention" in n for n in r.notes)


def test_tensor_parallel_rules():
    assert fit.tp_problems(qwen3_next(), 16) == []
    assert fit.check_tp(qwen3_next(), 16).detail == "16 heads split over 16 ranks; 2 KV heads replicated 8x"
    problems = fit.tp_problems(qwen3_next(), 3)
    assert "num_attention_heads 16 is not divisible by tensor parallel size 3" in problems
    assert fit.check_tp(qwen3_next(), 32).status == "fail"  # 16 heads over 32 ranks
    with pytest.raises(ValueError):
        fit.fit(qwen3_next(), gpus=16, gpu_mem_gib=H100_GIB, util=0.9, tp=3, max_model_len=1)


def test_dense_model_by_hand():
    # The tiny Llama that serves on CPU here (FACTS.md): hidden 128, 2 layers, 2 heads, vocab 512.
    cfg = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
           "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 512,
           "tie_word_embeddings": False, "torch_dtype": "float32"}  # fmt: skip
    p = fit.estimate_params(cfg)
    attention = 128 * 128 * 4  # q, k, v, o with head_dim 64 x 2 heads
    assert p.total == 2 * 512 * 128 + 2 * (attention + 3 * 128 * 256) + (2 * 2 + 1) * 128
    assert fit.dtype_bytes(cfg) == (4, None)
    assert fit.kv_cache(cfg).bytes_per_token == 2 * 2 * 2 * 64 * 4


def test_moe_key_spellings_and_shared_experts():
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10,
            "moe_intermediate_size": 8, "intermediate_size": 32, "tie_word_embeddings": True}  # fmt: skip
    counts = {fit.estimate_params(base | {k: 4}).experts for k in fit.EXPERT_KEYS}
    assert counts == {2 * 4 * 3 * 64 * 8}
    deepseek = base | {"n_routed_experts": 4, "n_shared_experts": 2, "first_k_dense_replace": 1}
    p = fit.estimate_params(deepseek)
    assert p.experts == 4 * 3 * 64 * 8 and p.shared_experts == 2 * 3 * 64 * 8 and p.dense_mlp == 3 * 64 * 32


def test_dtype_and_quantization_notes():
    assert fit.dtype_bytes({"torch_dtype": "bfloat16"}) == (2, None)
    assert fit.dtype_bytes({"dtype": "float16"}) == (2, None)
    assert fit.dtype_bytes({})[1].startswith("no torch_dtype")
    fp8 = fit.dtype_bytes({"quantization_config": {"quant_method": "fp8"}})
    assert fp8[0] == 1 and "quantized (fp8" in fp8[1]
    awq = fit.dtype_bytes({"quantization_config": {"quant_method": "awq", "bits": 4}})
    assert awq[0] == 0.5
    fp8_config = qwen3_next() | {"quantization_config": {"quant_method": "fp8"}}
    r = fit.fit(fp8_config, 1, H100_GIB, 0.9, 1, 16248)  # FP8 halves the weights: still not on one H100
    assert r.message == "does not fit: needs 76.6 GiB, has 71.7 GiB"
    assert fit.fit(fp8_config, 2, H100_GIB, 0.9, 2, 16248).fits
    assert fit.kv_cache(fp8_config).dtype_bytes == 2  # the KV cache stays bf16


def test_text_config_wrapper():
    wrapped = {"model_type": "qwen3_5", "text_config": qwen3_next()}
    assert fit.estimate_params(wrapped).total == fit.estimate_params(qwen3_next()).total
