"""`vllmgen init --recipe`: golden specs from fixture recipes, every refusal with its message, a property
over everything the fixture source offers, the JSON API form (from a folder and from a loopback server)."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT
from fuzzing import check, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllmgen.render.compile import compile_file
from vllmgen.spec.load import load_file
from vllmgen.recipes.record import read_record
from vllmgen.recipes.source import open_source

FIXTURES = ROOT / "tests" / "fixtures" / "recipes"
SOURCE = FIXTURES / "source"
GOLDEN = FIXTURES / "golden"
QWEN = "Qwen/Qwen3-Next-80B-A3B-Instruct"
# name -> the choices after `init --recipe SOURCE`; together they cover every deployable strategy kind,
# variants with their own checkpoint, flags and env, opt-in features, modes, hardware and strategy
# overrides, and the placeholders ($IFACE_NAME, $IB_IF)
CASES = {
    "qwen3-next-two-nodes": ["--model", QWEN, "--strategy", "multi_node_tp", "--hardware", "h200",
                             "--feature", "spec_decoding", "--nodes", "198.51.100.10,198.51.100.11", "--nic", "ens1f0"],
    "qwen3-next-nvfp4-tep": ["--model", QWEN, "--strategy", "single_node_tep", "--hardware", "b200",
                             "--variant", "nvfp4"],
    "qwen3-next-fp8-dep": ["--model", QWEN, "--strategy", "single_node_dep", "--hardware", "h200", "--variant", "fp8"],
    "qwen3-next-tp-pp": ["--model", QWEN, "--strategy", "multi_node_tp_pp", "--hardware", "h100",
                         "--nodes", "198.51.100.10,198.51.100.11,198.51.100.12"],
    "dense-single-gpu": ["--model", "acme/Dense-8B", "--strategy", "single_node_tp", "--hardware", "h100"],
    "dense-awq-blackwell": ["--model", "acme/Dense-8B", "--strategy", "single_node_tp", "--hardware", "b200",
                            "--variant", "awq"],
    "dense-replica-per-node": ["--model", "acme/Dense-8B", "--strategy", "multi_node_tp_dp", "--hardware", "gb200"],
    "wide-moe-dep": ["--model", "acme/Wide-MoE-600B", "--strategy", "multi_node_dep", "--hardware", "h200",
                     "--ib-hca", "mlx5_0,mlx5_1", "--nic", "ib0"],
    "wide-moe-tep-nvfp4": ["--model", "acme/Wide-MoE-600B", "--strategy", "multi_node_tep", "--hardware", "b200",
                           "--variant", "nvfp4", "--feature", "spec_decoding"],
}


def init(tmp_path: Path, *choices: str, source: Path = SOURCE, name: str = "spec.yaml"):
    out = tmp_path / name
    outcome = run_cli(["init", "--recipe", str(source), *choices, "-o", str(out)])
    return outcome, out


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_specs(case, tmp_path):
    outcome, out = init(tmp_path, *CASES[case], name=f"{case}.yaml")
    assert outcome.code == 0, outcome.output
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("VLLMGEN_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        shutil.copyfile(out, golden)
    assert out.read_text() == golden.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_specs_validate_and_render(case):
    """Each golden spec compiles: validation, plan and every template, as `render` runs them."""
    compiled = compile_file(GOLDEN / f"{case}.yaml")
    assert compiled.valid.warnings == []
    spec = compiled.valid.spec
    assert spec.serve.world_size == spec.total_gpus
    names = {artifact.path for artifact in compiled.artifacts}
    assert "serve-config.yaml" in names


def test_worked_example_binds_the_recipe_to_the_hosts():
    spec = compile_file(GOLDEN / "qwen3-next-two-nodes.yaml").valid.spec
    assert [n.address for n in spec.nodes] == ["198.51.100.10", "198.51.100.11"]
    assert spec.cluster.nic == "ens1f0"  # the strategy's $IFACE_NAME
    assert spec.serve.tensor_parallel_size == 16 and spec.cluster.backend == "mp"
    assert spec.serve.speculative_config == {"method": "qwen3_next_mtp", "num_speculative_tokens": 2}
    assert spec.serve.tool_call_parser == "hermes"
    assert spec.serve.extra_args == ["--no-enable-chunked-prefill"]
    assert "GLOO_SOCKET_IFNAME" not in spec.runtime.env  # owned by cluster.nic


def test_overrides_and_placeholders_are_applied():
    wide = compile_file(GOLDEN / "wide-moe-dep.yaml").valid.spec
    # strategy override: TP 2 x 8 DP ranks over two 8-GPU nodes, hybrid LB behind a router
    assert (wide.serve.tensor_parallel_size, wide.serve.data_parallel_size) == (2, 8)
    assert wide.serve.data_parallel.lb == "hybrid" and wide.router is not None
    assert wide.serve.expert_parallel.eplb  # hopper's strategy hardware override
    assert wide.cluster.ib_hcas == ["mlx5_0", "mlx5_1"]  # $IB_IF from --ib-hca
    assert wide.runtime.env["UCX_NET_DEVICES"] == "ib0"  # $IFACE_NAME from --nic
    # a strategy's hardware override replaces the recipe's (the site's rule): no nvidia-wide env here
    assert "NCCL_CUMEM_ENABLE" not in wide.runtime.env
    assert compile_file(GOLDEN / "wide-moe-tep-nvfp4.yaml").valid.spec.runtime.env["NCCL_CUMEM_ENABLE"] == "1"
    nvfp4 = compile_file(GOLDEN / "qwen3-next-nvfp4-tep.yaml").valid.spec
    assert nvfp4.model.source == "nvidia/Qwen3-Next-80B-A3B-Instruct-NVFP4"
    assert nvfp4.runtime.env["VLLM_USE_FLASHINFER_MOE_FP4"] == "1"  # the variant's env
    assert nvfp4.runtime.env["VLLM_USE_FLASHINFER_MOE_FP8"] == "1"  # the blackwell override
    assert nvfp4.serve.extra_args == ["--kv-cache-dtype", "fp8"]
    assert nvfp4.serve.expert_parallel.enabled
    tep = compile_file(GOLDEN / "wide-moe-tep-nvfp4.yaml").valid.spec
    assert tep.serve.speculative_config == {"method": "mtp", "num_speculative_tokens": 1}  # from dotted keys
    assert tep.serve.ready_timeout == 3600 and "VLLM_ENGINE_READY_TIMEOUT_S" not in tep.runtime.env
    awq = compile_file(GOLDEN / "dense-awq-blackwell.yaml").valid.spec
    assert awq.model.quantization == "awq" and awq.serve.reasoning_parser == "deepseek_r1"  # feature override
    assert awq.serve.speculative_config["method"] == "ngram"  # the variant's default mode turns it on
    single = compile_file(GOLDEN / "dense-single-gpu.yaml").valid.spec
    assert single.nodes[0].gpus == 1 and single.serve.max_model_len == 32000  # tp: 1; '32k'


def test_header_names_recipe_hash_and_choices():
    text = (GOLDEN / "qwen3-next-two-nodes.yaml").read_text()
    digest = __import__("hashlib").sha256((SOURCE / "models" / f"{QWEN}.yaml").read_bytes()).hexdigest()
    assert f"# sha256:   {digest}" in text
    record = read_record(text)
    assert record["sha256"] == digest
    assert (record["strategy"], record["hardware"], record["variant"]) == ("multi_node_tp", "h200", "default")
    assert record["features"] == ["tool_calling", "spec_decoding"]


def test_documentation_addresses_without_nodes(tmp_path):
    outcome, out = init(tmp_path, "--model", QWEN, "--strategy", "multi_node_tep", "--hardware", "h200")
    assert outcome.code == 0, outcome.output
    data = load_file(str(out)).data
    assert [n["address"] for n in data["nodes"]] == ["192.0.2.1", "192.0.2.2"]
    assert "documentation addresses" in out.read_text()


REFUSALS = {
    "pd_cluster": (["--model", "acme/Wide-MoE-600B", "--strategy", "pd_cluster", "--hardware", "h200"],
                   "strategy pd_cluster (pd_cluster) runs separate engines"),
    "unknown flag": (["--model", "acme/Refusals-30B", "--strategy", "single_node_tp", "--hardware", "h200",
                      "--feature", "legacy_swap"],
                     "features.legacy_swap: vLLM 0.33.0 has no flag --swap-space (it exists in vLLM 0.17.1"),
    "tp does not divide": (["--model", "acme/Refusals-30B", "--strategy", "single_node_dep", "--hardware", "h200"],
                           "strategy_overrides.single_node_dep: --tensor-parallel-size 3: TP 3 does not divide the 8 "
                           "GPUs of a node"),
    "dp ranks per node": (["--model", "acme/Wide-MoE-600B", "--strategy", "multi_node_dep", "--hardware", "gb200"],
                          "--data-parallel-size-local 4: vllmgen runs 2 DP rank(s) per node here"),
    "vram": (["--model", "acme/Refusals-30B", "--strategy", "single_node_tp", "--hardware", "h200",
              "--variant", "huge"],
             "variant huge needs 4000 GB of GPU memory (vram_minimum_gb); 1 node(s) of h200 have 1128 GB"),
    "precision": (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "h200", "--variant", "nvfp4"],
                  "variant nvfp4 (nvfp4) needs blackwell GPUs; h200 is hopper"),
    "owned env": (["--model", "acme/Refusals-30B", "--strategy", "single_node_tp", "--hardware", "h200",
                   "--variant", "pinned"], "CUDA_VISIBLE_DEVICES is set by vllmgen from nodes[].gpu_ids"),
    "owned flag": (["--model", "acme/Refusals-30B", "--strategy", "single_node_tp", "--hardware", "h200",
                    "--variant", "keyed"], "variants.keyed.extra_args: --api-key is set by vllmgen from secrets.api_key"),
    "placeholder": (["--model", "acme/Refusals-30B", "--strategy", "multi_node_tp", "--hardware", "h200"],
                    "ROUTER_ADDR=$ROUTER_HOST holds the placeholder $ROUTER_HOST, which vllmgen cannot bind"),
    "ib placeholder": (["--model", "acme/Wide-MoE-600B", "--strategy", "multi_node_dep", "--hardware", "h200"],
                       "NCCL_IB_HCA=$IB_IF names your InfiniBand HCAs: pass --ib-hca"),
    "not NVIDIA": (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "mi300x"],
                   "hardware mi300x is AMD (amd): vllmgen deploys NVIDIA GPUs"),
    "omni": (["--model", "acme/Omni-Speech", "--strategy", "single_node_tp", "--hardware", "h100"],
             "served by vLLM-Omni"),
    "not offered": (["--model", "acme/Dense-8B", "--strategy", "multi_node_dep", "--hardware", "h200"],
                    "acme/Dense-8B does not offer strategy multi_node_dep on h200"),
    "unsupported hardware": (["--model", "acme/Wide-MoE-600B", "--strategy", "single_node_tep", "--hardware", "h100"],
                             "marks hardware h100 unsupported"),
    "restricted hardware": (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "workstation_96"],
                            "hardware workstation_96 is restricted"),
    "not scalable": (["--model", "acme/Dense-8B", "--strategy", "multi_node_tp", "--hardware", "workstation_96"],
                     "needs at least 2 GPUs per node; workstation_96 has 1"),
    "speculative config without a method": (
        ["--model", "acme/Refusals-30B", "--strategy", "single_node_tp", "--hardware", "h200", "--feature", "draft_model"],
        "features.draft_model: its speculative config names no 'method'"),
    "old vllm": (["--model", "acme/Wide-MoE-600B", "--strategy", "single_node_tep", "--hardware", "h200",
                  "--vllm", "0.17.1"], "the recipe needs vLLM >= 0.30.0 (min_vllm_version); --vllm 0.17.1 is older"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refusals_exit_3_with_the_reason_and_write_nothing(kind, tmp_path):
    choices, message = REFUSALS[kind]
    outcome, out = init(tmp_path, *choices)
    assert outcome.code == 3, outcome.output
    assert message in outcome.output
    assert check(outcome) is None and not out.exists()


@pytest.mark.parametrize("choices, message", [
    (["--model", "acme/Dense-9B", "--strategy", "single_node_tp", "--hardware", "h100"],
     "the source offers no model 'acme/Dense-9B'; did you mean 'acme/Dense-8B'?"),
    (["--model", QWEN, "--strategy", "single_node_tpp", "--hardware", "h100"], "did you mean 'single_node_tp'?"),
    (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "h100", "--variant", "fp9"], "no variant 'fp9'"),
    (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "h100", "--feature", "mtp"], "no feature of"),
    (["--model", QWEN, "--strategy", "single_node_tp"], "--recipe needs --hardware"),
    (["--model", QWEN, "--strategy", "multi_node_tp", "--hardware", "h200", "--nodes", "10.0.0.1"],
     "give --nodes two addresses or more"),
    (["--model", QWEN, "--strategy", "single_node_tp", "--hardware", "h200", "--vllm", "0.99.0"],
     "vllmgen has flag catalogs for"),
])
def test_wrong_choices_are_usage_errors(choices, message, tmp_path):
    outcome, _ = init(tmp_path, *choices)
    assert outcome.code == 2, outcome.output
    assert message in outcome.output


def test_a_broken_recipe_file_is_an_error_with_its_position(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(SOURCE, source)
    (source / "models" / "acme" / "Dense-8B.yaml").write_text("meta:\n  title: [unclosed\nmodel: {}\n")
    outcome, _ = init(tmp_path, "--model", "acme/Dense-8B", "--strategy", "single_node_tp", "--hardware", "h100",
                      source=source)
    assert outcome.code == 3, outcome.output
    assert "Dense-8B.yaml:3:" in outcome.output and check(outcome) is None


def test_list_shows_models_strategies_hardware_variants_and_features():
    whole = run_cli(["init", "--recipe", str(SOURCE), "--list"])
    assert whole.code == 0
    for word in ("acme/Dense-8B", QWEN, "pd_cluster", "(not deployed by vllmgen yet)", "gb200", "mi300x"):
        assert word in whole.output
    one = run_cli(["init", "--recipe", str(SOURCE), "--list", "--model", QWEN])
    assert one.code == 0
    for line in ("nvfp4        nvfp4   48 GB  nvidia/Qwen3-Next-80B-A3B-Instruct-NVFP4", "spec_decoding    opt-in",
                 "tool_calling     on", "multi_node_tp_pp"):
        assert line in one.output


# --- the property -----------------------------------------------------------------------------------

_SOURCE = open_source(str(SOURCE))
TRIPLES = [(m, s, h) for m in _SOURCE.model_ids() for s in _SOURCE.strategies for h in _SOURCE.hardware]


def _answer_is_a_spec_or_a_reason(outcome, out: Path) -> None:
    assert check(outcome) is None, outcome.output
    if outcome.code == 0:
        validated = run_cli(["validate", str(out)])
        assert validated.code == 0, validated.output + out.read_text()
    else:
        assert outcome.code == 3 and outcome.output.strip() and not out.exists(), outcome.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triple=st.sampled_from(TRIPLES), data=st.data())
def test_every_offered_choice_gives_a_valid_spec_or_a_reason(triple, data, tmp_path_factory):
    model, strategy, hardware = triple
    recipe = _SOURCE.recipe(model)
    variants = list(recipe.data.get("variants") or {})
    features = list(recipe.data.get("features") or {})
    choices = ["--model", model, "--strategy", strategy, "--hardware", hardware,
               "--variant", data.draw(st.sampled_from(variants))]
    for feature in data.draw(st.lists(st.sampled_from(features), unique=True, max_size=len(features))) if features else []:
        choices += ["--feature", feature]
    if _SOURCE.strategies[strategy].get("deploy_type") == "multi_node" and data.draw(st.booleans()):
        count = data.draw(st.integers(2, 4))
        choices += ["--nodes", ",".join(f"198.51.100.{i + 1}" for i in range(count)), "--nic", "ens1f0",
                    "--ib-hca", "mlx5_0"]
    outcome, out = init(tmp_path_factory.mktemp("prop"), *choices)
    _answer_is_a_spec_or_a_reason(outcome, out)


@pytest.mark.slow
def test_every_offered_triple_once(tmp_path):
    """The property's cases without sampling: every (model, strategy, hardware), default choices (12 s: the
    slow tier; the fast tier samples them above)."""
    written = 0
    for index, (model, strategy, hardware) in enumerate(TRIPLES):
        outcome, out = init(tmp_path, "--model", model, "--strategy", strategy, "--hardware", hardware,
                            name=f"{index}.yaml")
        _answer_is_a_spec_or_a_reason(outcome, out)
        written += outcome.code == 0
    assert written >= 40  # the fixtures are mostly deployable; the refusals are the exceptions


# --- the JSON API form --------------------------------------------------------------------------------

def _api_folder(root: Path) -> Path:
    """The fixture source as the site's build publishes it: taxonomy/strategies/models JSON, and one JSON
    per recipe without compatible_strategies and strategy_overrides (offered strategies in its renderings)."""
    api = root / "api"
    api.mkdir()
    (api / "taxonomy.json").write_text(json.dumps(_plain(_SOURCE.taxonomy)))
    (api / "strategies.json").write_text(json.dumps(_plain(_SOURCE.strategies)))
    index = []
    for model in _SOURCE.model_ids():
        data = dict(_plain(_SOURCE.recipe(model).data))
        offered = data.pop("compatible_strategies")
        data.pop("strategy_overrides", None)
        data["hf_id"] = model
        data["recommended_command"] = {"strategy": offered[0], "alternatives": {s: f"/{model}/strategies/{s}.json"
                                                                                 for s in offered[1:]}}
        path = api / f"{model}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        index.append({"hf_id": model, "json": f"/{model}.json"})
    (api / "models.json").write_text(json.dumps(index))
    return api


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def test_json_api_folder(tmp_path):
    api = _api_folder(tmp_path)
    outcome, out = init(tmp_path, *CASES["qwen3-next-two-nodes"], source=api)
    assert outcome.code == 0, outcome.output
    # the same spec as from the checkout but for the hash (of the JSON file) in the header
    body = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    golden = [line for line in (GOLDEN / "qwen3-next-two-nodes.yaml").read_text().splitlines() if not line.startswith("#")]
    assert body == golden


def test_json_api_url_on_loopback(tmp_path):
    api = _api_folder(tmp_path)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(api)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        outcome, out = init(tmp_path, "--model", "acme/Dense-8B", "--strategy", "single_node_tp", "--hardware", "h100",
                            source=url)
        assert outcome.code == 0, outcome.output
        assert load_file(str(out)).data["model"]["source"] == "acme/Dense-8B"
        missing = run_cli(["init", "--recipe", url + "nothing/", "--list"])
        assert missing.code == 3 and "HTTP 404" in missing.output
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_readme_refusal_lines_are_what_init_prints(tmp_path):
    """The README's examples of refusals, each as init prints it (a trailing '...' abridges a line)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Starting from a vLLM recipe"):readme.index("### What `build/<name>/` holds")]
    block = section[section.index("```text\n") + 8:]
    lines = block[:block.index("```")].splitlines()
    printed = []
    for kind in ("unknown flag", "pd_cluster", "tp does not divide", "vram", "precision", "owned env", "placeholder",
                 "not NVIDIA"):
        outcome, _ = init(tmp_path, *REFUSALS[kind][0])
        printed += outcome.output.splitlines()
    assert len(lines) == 8
    for line in lines:
        assert any(out == line or (line.endswith("; ...") and out.startswith(line[:-3])) for out in printed), line


# --- hostile recipes ----------------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_TOKEN = st.one_of(_TEXT, st.sampled_from(["--kv-cache-dtype", "fp8", "--max-model-len", "auto", "-tp", "3",
                                           "--port", "8000", "--enable-prefix-caching", "--no-enable-prefix-caching",
                                           "--speculative-config", '{"method":"mtp"}', "--speculative-config.method",
                                           "--reasoning-parser", "qwen3", "$IFACE_NAME", "--api-key", "-1e3"]))


@settings(max_examples=int(os.environ.get("VLLMGEN_RECIPE_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_TEXT, min_size=1, max_size=3), args=st.lists(_TOKEN, max_size=8),
       env=st.dictionaries(_TEXT, st.one_of(_TEXT, st.just("$IFACE_NAME")), max_size=3),
       slug=_TEXT, model_id=_TEXT, strategy=st.sampled_from(["single_node_tp", "multi_node_tp", "single_node_dep"]))
def test_hostile_recipe_values_give_a_valid_spec_or_a_reason(names, args, env, slug, model_id, strategy,
                                                             tmp_path_factory):
    """Whatever text a recipe holds (feature names, flags, env, ids, line breaks, quotes, '#'), init answers
    with a spec that validates or an error: never a traceback, never a spec that fails later."""
    root = tmp_path_factory.mktemp("hostile")
    source = root / "source"
    shutil.copytree(SOURCE / "strategies", source / "strategies")
    shutil.copyfile(SOURCE / "taxonomy.yaml", source / "taxonomy.yaml")
    (source / "models" / "acme").mkdir(parents=True)
    recipe = {
        "meta": {"slug": slug, "tasks": ["text"]},
        "model": {"model_id": "acme/Hostile", "min_vllm_version": "0.30.0", "architecture": "moe",
                  "base_args": args, "base_env": env},
        "features": {name: {"args": args[:2]} for name in names},
        "variants": {"default": {"vram_minimum_gb": 10}, "other": {"model_id": model_id, "precision": ["fp8"],
                                                                   "vram_minimum_gb": "lots", "tp": {"h200": "x"}}},
        "strategy_overrides": {strategy: {"extra_args": args[-2:], "hardware_overrides": {"hopper": {"extra_env": env}}}},
        "opt_in_features": names[:1],
        "compatible_strategies": [strategy],
    }
    text = json.dumps(recipe, ensure_ascii=False)  # JSON is YAML
    (source / "models" / "acme" / "Hostile.yaml").write_text(text, encoding="utf-8")
    listed = run_cli(["init", "--recipe", str(source), "--list", "--model", "acme/Hostile"])
    assert check(listed) is None, listed.output  # a list or the file's YAML error (a raw control character)
    for variant in ("default", "other"):
        out = root / f"{variant}.yaml"
        outcome = run_cli(["init", "--recipe", str(source), "--model", "acme/Hostile", "--strategy", strategy,
                           "--hardware", "h200", "--variant", variant, "--feature", names[0], "-o", str(out)])
        assert outcome.code in (0, 2, 3), outcome.output
        assert "Traceback" not in outcome.output and "internal error" not in outcome.output, outcome.output
        if outcome.code == 0:
            validated = run_cli(["validate", str(out)])
            assert validated.code == 0, validated.output + out.read_text()
        else:
            assert not out.exists()


def test_a_checkout_is_read_without_network_code(tmp_path):
    """The default form is offline: init from a checkout imports no HTTP client."""
    code = ("import sys; from vllmgen.cli.commands import main; sys.argv = ['vllmgen', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print([m for m in sys.modules if m.startswith(('urllib.request', 'http.client'))])")
    result = subprocess.run([sys.executable, "-c", code, "init", "--recipe", str(SOURCE), *CASES["wide-moe-dep"],
                             "-o", str(tmp_path / "spec.yaml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
