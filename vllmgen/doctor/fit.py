"""Will the model fit? Weights and KV cache from a Hugging Face config.json, against GPU memory.

An estimate, not vLLM's profiler: parameters are counted from the config's shapes (dense and MoE
MLPs, standard and gated attention, Gated DeltaNet linear attention), weights are split evenly over
the GPUs, and activations + CUDA graphs + NCCL buffers are a fixed RESERVE_GIB_PER_GPU. vLLM measures
the real numbers at start-up; this answers "is it hopeless?" before anything is started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from vllmgen.doctor.checks import CheckResult, fail, ok

GIB = 1024**3

# Activations at max_num_batched_tokens, CUDA graphs, NCCL and allocator slack, per GPU. A stated
# approximation (vLLM profiles the real value; a few GiB is typical for large models).
RESERVE_GIB_PER_GPU = 2.0

DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "float": 4, "fp32": 4,
    "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "fp8": 1, "int8": 1,
}  # fmt: skip

EXPERT_KEYS = ("num_experts", "num_routed_experts", "n_routed_experts", "num_local_experts")
TOPK_KEYS = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "top_k")
# Qwen3-Next's attention has an output gate: q_proj is twice as wide (Qwen3.5 spells it attn_output_gate).
GATED_ATTENTION_TYPES = frozenset({"qwen3_next"})


def text_config(config: Mapping[str, object]) -> dict[str, object]:
    """Multimodal wrappers keep the language model under text_config."""
    inner = config.get("text_config")
    if isinstance(inner, Mapping):
        return {**config, **inner}
    return dict(config)


def _int(cfg: Mapping[str, object], *keys: str, default: int = 0) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return default


def layer_kinds(cfg: Mapping[str, object]) -> list[str]:
    """Per layer 'full_attention', 'linear_attention' or 'sliding_attention'."""
    n = _int(cfg, "num_hidden_layers")
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == n:
        return [str(t) for t in types]
    interval = _int(cfg, "full_attention_interval")
    if interval > 0:
        return ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)]
    return ["full_attention"] * n


def dtype_bytes(cfg: Mapping[str, object]) -> tuple[float, str | None]:
    """Bytes per weight, and a note when the value is a guess or comes from quantization."""
    quant = cfg.get("quantization_config")
    if isinstance(quant, Mapping):
        method = str(quant.get("quant_method", "?"))
        bits = quant.get("bits") or quant.get("w_bit") or quant.get("weight_bits")
        if isinstance(bits, int):
            return bits / 8, f"quantized ({method}, {bits}-bit weights; scales and unquantized layers not counted)"
        if "fp8" in method.lower():
            return 1, f"quantized ({method}, 8-bit weights; scales not counted)"
        return 2, f"quantized ({method}): weight size unknown, assumed 2 bytes"
    name = cfg.get("torch_dtype") or cfg.get("dtype")
    if isinstance(name, str) and name in DTYPE_BYTES:
        return DTYPE_BYTES[name], None
    return 2, "no torch_dtype in config.json: assumed 2 bytes (bfloat16)"


@dataclass(frozen=True)
class Params:
    """Parameter counts by part; `total` is what is loaded, `active` what one token uses."""

    embedding: int
    attention: int
    linear_attention: int
    dense_mlp: int
    experts: int
    shared_experts: int
    routers: int
    norms: int
    active: int

    @property
    def total(self) -> int:
        return (
            self.embedding + self.attention + self.linear_attention + self.dense_mlp
            + self.experts + self.shared_experts + self.routers + self.norms
        )  # fmt: skip


def _is_moe_layer(cfg: Mapping[str, object], i: int, experts: int) -> bool:
    if experts <= 0:
        return False
    mlp_only = cfg.get("mlp_only_layers") or []
    if isinstance(mlp_only, list) and i in mlp_only:
        return False
    if i < _int(cfg, "first_k_dense_replace"):
        return False
    step = _int(cfg, "decoder_sparse_step", "moe_layer_freq", default=1) or 1
    return (i + 1) % step == 0 if "decoder_sparse_step" in cfg else i % step == 0


def estimate_params(config: Mapping[str, object]) -> Params:
    cfg = text_config(config)
    h = _int(cfg, "hidden_size")
    vocab = _int(cfg, "vocab_size")
    heads = _int(cfg, "num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", default=heads)
    head_dim = _int(cfg, "head_dim") or (h // heads if heads else 0)
    inter = _int(cfg, "intermediate_size")
    experts = _int(cfg, *EXPERT_KEYS)
    topk = _int(cfg, *TOPK_KEYS)
    moe_inter = _int(cfg, "moe_intermediate_size") or inter
    shared_inter = _int(cfg, "shared_expert_intermediate_size")
    n_shared = _int(cfg, "n_shared_experts", "num_shared_experts")
    # transformers' own default for tie_word_embeddings is True; most large models set it to false.
    tied = bool(cfg.get("tie_word_embeddings", True))
    gated = bool(cfg.get("attn_output_gate")) or cfg.get("model_type") in GATED_ATTENTION_TYPES

    embedding = vocab * h * (1 if tied else 2)
    q_width = heads * head_dim * (2 if gated else 1)
    per_attention = h * q_width + 2 * h * kv_heads * head_dim + heads * head_dim * h
    if cfg.get("attention_bias"):
        per_attention += heads * head_dim + 2 * kv_heads * head_dim
    if str(cfg.get("model_type", "")).startswith("qwen3"):
        per_attention += 2 * head_dim  # Qwen3's per-head RMSNorm on q and k

    # Gated DeltaNet (Qwen3-Next): fused q,k,v,z and b,a projections, a short conv, an output projection.
    nk, nv = _int(cfg, "linear_num_key_heads"), _int(cfg, "linear_num_value_heads")
    dk, dv = _int(cfg, "linear_key_head_dim"), _int(cfg, "linear_value_head_dim")
    kernel = _int(cfg, "linear_conv_kernel_dim", default=4)
    key_dim, value_dim = nk * dk, nv * dv
    per_linear = (
        h * (2 * key_dim + 2 * value_dim) + h * 2 * nv
        + (2 * key_dim + value_dim) * kernel + value_dim * h + 2 * nv + dv
    )  # fmt: skip

    one_expert = 3 * h * moe_inter  # gate, up and down projections
    per_shared = 3 * h * shared_inter + h if shared_inter else n_shared * one_expert

    attention = linear = dense = routed = shared = routers = 0
    active_experts = 0
    for i, kind in enumerate(layer_kinds(cfg)):
        if kind == "linear_attention":
            linear += per_linear
        else:
            attention += per_attention
        if _is_moe_layer(cfg, i, experts):
            routed += experts * one_expert
            shared += per_shared
            routers += h * experts
            active_experts += min(topk or experts, experts) * one_expert
        else:
            dense += 3 * h * inter
    norms = (2 * len(layer_kinds(cfg)) + 1) * h
    active = embedding + attention + linear + dense + active_experts + shared + routers + norms
    return Params(embedding, attention, linear, dense, routed, shared, routers, norms, active)


@dataclass(frozen=True)
class KvCache:
    """KV cache size for the whole model, before any sharding."""

    full_attention_layers: int
    linear_attention_layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: float
    bytes_per_token: int
    # Linear-attention layers keep a fixed recurrent + conv state per sequence instead of per-token KV.
    state_bytes_per_sequence: int


def kv_cache(config: Mapping[str, object], kv_dtype_bytes: float | None = None) -> KvCache:
    cfg = text_config(config)
    heads = _int(cfg, "num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", default=heads)
    head_dim = _int(cfg, "head_dim") or (_int(cfg, "hidden_size") // heads if heads else 0)
    size = kv_dtype_bytes if kv_dtype_bytes is not None else dtype_bytes(cfg)[0]
    if cfg.get("quantization_config") is not None and kv_dtype_bytes is None:
        size = 2  # the KV cache stays in the activation dtype unless kv_cache_dtype says otherwise
    kinds = layer_kinds(cfg)
    # Sliding-window layers are counted as full attention: an upper bound on their KV.
    full = sum(1 for k in kinds if k != "linear_attention")
    linear = len(kinds) - full
    nk, nv = _int(cfg, "linear_num_key_heads"), _int(cfg, "linear_num_value_heads")
    dk, dv = _int(cfg, "linear_key_head_dim"), _int(cfg, "linear_value_head_dim")
    kernel = _int(cfg, "linear_conv_kernel_dim", default=4)
    per_layer_state = nv * dk * dv + (2 * nk * dk + nv * dv) * (kernel - 1)
    return KvCache(
        full_attention_layers=full,
        linear_attention_layers=linear,
        kv_heads=kv_heads,
        head_dim=head_dim,
        dtype_bytes=size,
        bytes_per_token=int(full * 2 * kv_heads * head_dim * size),
        state_bytes_per_sequence=int(linear * per_layer_state * size),
    )


def tp_problems(config: Mapping[str, object], tp: int) -> list[str]:
    """vLLM's tensor-parallel rules: heads split evenly; KV heads split evenly or replicated evenly."""
    cfg = text_config(config)
    heads = _int(cfg, "num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", default=heads)
    problems = []
    if heads % tp:
        problems.append(f"num_attention_heads {heads} is not divisible by tensor parallel size {tp}")
    if kv_heads and (kv_heads % tp if kv_heads >= tp else tp % kv_heads):
        problems.append(f"num_key_value_heads {kv_heads} and tensor parallel size {tp}: neither divides the other")
    for key in ("linear_num_key_heads", "linear_num_value_heads"):
        n = _int(cfg, key)
        if n and n % tp:
            problems.append(f"{key} {n} is not divisible by tensor parallel size {tp}")
    return problems


@dataclass(frozen=True)
class Fit:
    fits: bool
    gpus: int
    tp: int
    pp: int
    params: int
    weight_bytes_per_param: float
    weights_gib: float
    weights_gib_per_gpu: float
    budget_gib_per_gpu: float
    reserve_gib_per_gpu: float
    kv_bytes_per_token: int
    kv_bytes_per_token_per_gpu: int
    state_bytes_per_sequence_per_gpu: int
    kv_gib_per_gpu: float
    tokens: int
    needs_gib: float
    has_gib: float
    notes: tuple[str, ...]
    message: str


def fit(
    config: Mapping[str, object],
    gpus: int,
    gpu_mem_gib: float,
    util: float,
    tp: int,
    max_model_len: int,
    reserve_gib: float = RESERVE_GIB_PER_GPU,
    kv_dtype_bytes: float | None = None,
) -> Fit:
    """Weights + reserve + KV cache for one max_model_len sequence vs gpus x gpu_mem_gib x util.

    gpus is the world size (all nodes); pipeline stages are gpus // tp.
    """
    if gpus <= 0 or tp <= 0 or gpus % tp:
        raise ValueError(f"gpus ({gpus}) must be a positive multiple of tensor parallel size ({tp})")
    cfg = text_config(config)
    pp = gpus // tp
    params = estimate_params(cfg)
    per_param, dtype_note = dtype_bytes(cfg)
    kv = kv_cache(cfg, kv_dtype_bytes)
    notes = [n for n in (dtype_note,) if n]
    notes.append(f"reserve of {reserve_gib:g} GiB per GPU for activations and CUDA graphs is an approximation")

    weights = params.total * per_param
    weights_gpu = weights / gpus
    budget = gpu_mem_gib * util
    # KV heads fewer than TP ranks are replicated, so each rank holds at least one.
    kv_heads_rank = max(1, kv.kv_heads // tp)
    full_per_stage = math.ceil(kv.full_attention_layers / pp)
    kv_token_gpu = int(full_per_stage * 2 * kv_heads_rank * kv.head_dim * kv.dtype_bytes)
    linear_per_stage = math.ceil(kv.linear_attention_layers / pp)
    state_gpu = (
        int(kv.state_bytes_per_sequence / kv.linear_attention_layers * linear_per_stage / tp)
        if kv.linear_attention_layers
        else 0
    )
    if kv.linear_attention_layers:
        notes.append(
            f"{kv.linear_attention_layers} of {kv.full_attention_layers + kv.linear_attention_layers} layers are "
            f"linear attention: no per-token KV, {kv.state_bytes_per_sequence / 2**20:.1f} MiB of state per sequence"
        )
    kv_avail_gpu = budget - weights_gpu / GIB - reserve_gib
    tokens = int(kv_avail_gpu * GIB // kv_token_gpu) if kv_avail_gpu > 0 and kv_token_gpu else 0

    needs = weights / GIB + gpus * (reserve_gib + (kv_token_gpu * max_model_len + state_gpu) / GIB)
    has = gpus * budget
    fits = needs <= has
    if fits:
        message = (
            f"fits with {kv_avail_gpu * gpus:.1f} GiB for KV cache "
            f"({kv_avail_gpu:.1f} GiB per GPU, ≈ {tokens:,} tokens)"
        )
    else:
        message = f"does not fit: needs {needs:.1f} GiB, has {has:.1f} GiB"
    return Fit(
        fits=fits,
        gpus=gpus,
        tp=tp,
        pp=pp,
        params=params.total,
        weight_bytes_per_param=per_param,
        weights_gib=weights / GIB,
        weights_gib_per_gpu=weights_gpu / GIB,
        budget_gib_per_gpu=budget,
        reserve_gib_per_gpu=reserve_gib,
        kv_bytes_per_token=kv.bytes_per_token,
        kv_bytes_per_token_per_gpu=kv_token_gpu,
        state_bytes_per_sequence_per_gpu=state_gpu,
        kv_gib_per_gpu=max(kv_avail_gpu, 0.0),
        tokens=tokens,
        needs_gib=needs,
        has_gib=has,
        notes=tuple(notes),
        message=message,
    )


def check_fit(result: Fit) -> CheckResult:
    name = "model.fit"
    size = f"{result.params / 1e9:.1f}B params, {result.weights_gib:.1f} GiB weights on {result.gpus} GPU(s)"
    detail = f"{size}: {result.message}"
    if result.fits:
        return ok(name, detail)
    return fail(
        name,
        detail,
        "add GPUs (raise tensor/pipeline parallel size), use a quantized checkpoint, or lower max_model_len",
    )


def check_tp(config: Mapping[str, object], tp: int) -> CheckResult:
    name = "model.tensor_parallel"
    problems = tp_problems(config, tp)
    if problems:
        return fail(name, "; ".join(problems), "choose a tensor parallel size that divides the head counts")
    cfg = text_config(config)
    heads = _int(cfg, "num_attention_heads")
    kv_heads = _int(cfg, "num_key_value_heads", default=heads)
    if kv_heads and kv_heads < tp:
        return ok(name, f"{heads} heads split over {tp} ranks; {kv_heads} KV heads replicated {tp // kv_heads}x")
    return ok(name, f"{heads} heads and {kv_heads} KV heads split over {tp} ranks")
