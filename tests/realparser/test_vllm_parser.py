"""Hand-written `vllm serve` command lines through vLLM's real parser."""

import pytest

pytestmark = [pytest.mark.realparser, pytest.mark.slow]

# argv after `vllm serve`, written as one string each
ACCEPTED = {
    "plain": "Qwen/Qwen3-0.6B --tensor-parallel-size 2 --max-model-len 4096",
    "underscores-and-inline": "m --trust_remote_code --max_model_len=32k --port=8001",
    "alias-and-pair": "m -tp 4 --no-enable-prefix-caching",
    "json-dotted": "m --compilation-config.mode 3 -O3",
    "registries": "m --reasoning-parser deepseek_r1 "
    "--enable-auto-tool-choice --tool-call-parser hermes",
}
REJECTED = {  # argv, what the error says
    "removed": (
        "m --enable-reasoning --reasoning-parser deepseek_r1",
        "unrecognized arguments: --enable-reasoning",
    ),
    "misspelt": (
        "m --tensor-paralel-size 2",
        "unrecognized arguments: --tensor-paralel-size",
    ),
    "bad-choice": ("m --dtype fp7", "invalid choice: 'fp7'"),
    "bad-int": ("m --tensor-parallel-size two", "invalid int value: 'two'"),
    "bool-with-value": (
        "m --enable-prefix-caching true",
        "unrecognized arguments: true",
    ),
    "unknown-reasoning-parser": (
        "m --reasoning-parser deepseek-r1",
        "invalid reasoning parser: deepseek-r1",
    ),
}


@pytest.fixture(scope="module")
def results(parse_check, tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "serve.yaml"
    config.write_text(
        "tensor-parallel-size: 2\n"
        "max_model_len: 8k\n"
        "served-model-name: [a, b]\n"
        "enable-prefix-caching: false\n"  # vllm serve drops `false`: see the test below
        "no-enable-chunked-prefill: true\n"
    )
    items = [{"id": k, "argv": v.split(), "config": None} for k, v in ACCEPTED.items()]
    items += [
        {"id": k, "argv": v.split(), "config": None} for k, (v, _) in REJECTED.items()
    ]
    items.append({"id": "yaml", "argv": ["m"], "config": str(config)})
    items.append({"id": "config-equals", "argv": ["m", f"--config={config}"]})
    return parse_check(items)


@pytest.mark.parametrize("case", ACCEPTED)
def test_accepted(results, case):
    assert results[case]["ok"], results[case]["error"]


@pytest.mark.parametrize("case", REJECTED)
def test_rejected(results, case):
    result = results[case]
    assert not result["ok"]
    assert REJECTED[case][1] in result["error"]


def test_parsed_values(results):
    assert results["underscores-and-inline"]["set"]["max_model_len"] == 32000
    assert results["alias-and-pair"]["set"]["enable_prefix_caching"] is False


def test_config_yaml(results):
    got = results["yaml"]
    assert got["ok"], got["error"]
    assert got["set"]["tensor_parallel_size"] == 2
    assert got["set"]["max_model_len"] == 8000
    assert got["set"]["served_model_name"] == ["a", "b"]
    assert got["set"]["enable_chunked_prefill"] is False
    # vLLM turns `key: false` into --no-key only when the top-level `vllm` parser
    # knows --no-key, and it never does: the YAML false is silently dropped.
    assert "enable_prefix_caching" not in got["set"]


def test_config_equals_form_is_not_read(results):
    # vLLM reads the YAML only for the two tokens `--config PATH`; `--config=PATH`
    # parses fine and is silently ignored, so vllmgen must never emit it.
    got = results["config-equals"]
    assert got["ok"] and "tensor_parallel_size" not in got["set"]
