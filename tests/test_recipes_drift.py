"""`vllmgen diff SPEC --against-recipe SOURCE`: what the recipe changed upstream since the spec was made."""

import shutil
from pathlib import Path

from conftest import ROOT
from fuzzing import run_cli

SOURCE = ROOT / "tests" / "fixtures" / "recipes" / "source"
QWEN = "Qwen/Qwen3-Next-80B-A3B-Instruct"


def _made(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "recipes"
    shutil.copytree(SOURCE, source)
    spec = tmp_path / "spec.yaml"
    outcome = run_cli(["init", "--recipe", str(source), "--model", QWEN, "--strategy", "multi_node_tp",
                       "--hardware", "h200", "--feature", "spec_decoding", "-o", str(spec)])
    assert outcome.code == 0, outcome.output
    return source, spec


def _edit(source: Path, *pairs: tuple[str, str]) -> None:
    path = source / "models" / f"{QWEN}.yaml"
    text = path.read_text()
    for old, new in pairs:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)


def test_unchanged_recipe(tmp_path):
    source, spec = _made(tmp_path)
    outcome = run_cli(["diff", str(spec), "--against-recipe", str(source), "--exit-code"])
    assert outcome.code == 0
    assert outcome.output == f"{QWEN}: the recipe is unchanged since the spec was made (same sha256)\n"


def test_upstream_changes_per_concern(tmp_path):
    source, spec = _made(tmp_path)
    _edit(source,
          ('"hermes"', '"qwen3_coder"'),
          ('      - "--no-enable-chunked-prefill"\n', '      - "--max-num-seqs"\n      - "256"\n'),
          ('min_vllm_version: "0.10.0"', 'min_vllm_version: "0.11.0"'),
          ("strategy_overrides: {}", 'strategy_overrides:\n  multi_node_tp:\n    extra_env:\n      NCCL_NVLS_ENABLE: "0"'),
          ('model_id: "nvidia/', 'model_id: "nvidia-new/'),
          # a Blackwell-only change: not this spec's concern (h200)
          ('VLLM_FLASHINFER_MOE_BACKEND: "latency"', 'VLLM_FLASHINFER_MOE_BACKEND: "throughput"'))
    outcome = run_cli(["diff", str(spec), "--against-recipe", str(source), "--exit-code"])
    assert outcome.code == 1, outcome.output
    assert outcome.output == (
        f"{QWEN}: the recipe changed upstream since the spec was made\n"
        "  vllm:\n"
        "    min_vllm_version 0.10.0 -> 0.11.0 (the spec pins 0.33.0)\n"
        "  flags:\n"
        "    + --max-num-seqs 256\n"
        "    - --no-enable-chunked-prefill\n"
        "    ~ --tool-call-parser hermes -> --tool-call-parser qwen3_coder\n"
        "  env:\n"
        "    + NCCL_NVLS_ENABLE=0\n"
        "  variants:\n"
        "    ~ nvfp4=nvidia/Qwen3-Next-80B-A3B-Instruct-NVFP4 -> nvidia-new/Qwen3-Next-80B-A3B-Instruct-NVFP4\n"
    )


def test_a_change_this_spec_does_not_use(tmp_path):
    source, spec = _made(tmp_path)
    _edit(source, ('VLLM_FLASHINFER_MOE_BACKEND: "latency"', 'VLLM_FLASHINFER_MOE_BACKEND: "throughput"'))
    outcome = run_cli(["diff", str(spec), "--against-recipe", str(source), "--exit-code"])
    assert outcome.output == f"{QWEN}: the recipe file changed, but nothing this spec uses did\n"
    assert outcome.code == 1  # the file did change: a reviewer may want to look


def test_a_choice_the_recipe_dropped(tmp_path):
    source, spec = _made(tmp_path)
    _edit(source, ("  - multi_node_tp\n", ""), ('  tool_calling:\n', '  tools:\n'))
    outcome = run_cli(["diff", str(spec), "--against-recipe", str(source)])
    assert outcome.code == 0, outcome.output
    assert "    - tool_calling (removed from the recipe)\n" in outcome.output
    assert "the recipe no longer deploys this choice: Qwen/Qwen3-Next-80B-A3B-Instruct does not offer strategy " \
           "multi_node_tp on h200" in outcome.output


def test_a_spec_not_made_from_a_recipe(tmp_path):
    outcome = run_cli(["diff", str(ROOT / "specs" / "seed-two-node-mp.yaml"), "--against-recipe", str(SOURCE)])
    assert outcome.code == 2 and "was not made by `vllmgen init --recipe`" in outcome.output
    assert "Traceback" not in outcome.output


def test_json_output(tmp_path):
    source, spec = _made(tmp_path)
    _edit(source, ('"hermes"', '"qwen3_coder"'))
    outcome = run_cli(["diff", str(spec), "--against-recipe", str(source), "-o", "json"])
    assert outcome.code == 0
    assert __import__("json").loads(outcome.output) == {
        "model": QWEN, "unchanged": False,
        "concerns": {"flags": ["~ --tool-call-parser hermes -> --tool-call-parser qwen3_coder"]}}
