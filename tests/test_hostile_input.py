"""Issue 10, input half: no spec text crashes vllmgen; every refusal is positioned and bounded."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from inprocess import run_vllmgen

from vllmgen.spec import load, yamltree
from vllmgen.errors import SpecError
from vllmgen.spec.load import load_file, load_text
from vllmgen.spec.validate import validate

SPEC = (ROOT / "specs" / "seed-two-node-ray.yaml").read_text()
MINIMAL = "version: 1\nname: demo\nmodel: {source: org/model}\nnodes: [{name: a, address: 192.0.2.1, gpus: 1}]\n"


def errors(text: str) -> list[str]:
    try:
        validate(load_text(text, "s.yaml"))
    except SpecError as exc:
        return [str(d) for d in exc.diagnostics]
    return []


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# --- loading: every YAML error class positioned ---------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: \x00\n", "s.yaml:1:7: <yaml>: invalid YAML: the character '\\x00' (U+0000) is not allowed"),
        ("a: 1\nname: \x1b[1m\n", "s.yaml:2:7: <yaml>: invalid YAML: the character '\\x1b' (U+001B) is not allowed"),
        ("name: !!float abc\n", "s.yaml:1:7: <yaml>: invalid YAML: cannot read 'abc' as !!float"),
        ("name: !!int abc\n", "s.yaml:1:7: <yaml>: invalid YAML: cannot read 'abc' as !!int"),
        ("name: !!bool maybe\n", "s.yaml:1:7: <yaml>: invalid YAML: cannot read 'maybe' as !!bool"),
        ("name: !!timestamp 2020-13-45\n", "s.yaml:1:7: <yaml>: invalid YAML: cannot read '2020-13-45' as !!timestamp"),
        ("? - a\n: b\n", "s.yaml:1:3: <yaml>: invalid YAML: a mapping key must be a plain value, not a list or mapping"),
        ("{[a]: b}\n", "s.yaml:1:2: <yaml>: invalid YAML: a mapping key must be a plain value, not a list or mapping"),
        ("a: 1\n---\nb: 2\n", "s.yaml:2:1: <yaml>: invalid YAML: expected a single document, but found another"),
        ("a: *nope\n", "s.yaml:1:4: <yaml>: invalid YAML: found undefined alias 'nope'"),
        ('name: "\\ud800"\n', "s.yaml:1:7: <yaml>: invalid YAML: a surrogate code point (an escape such as \\ud800) is not text"),
        ("a: &x [1, *x]\n", "s.yaml:1:11: <yaml>: invalid YAML: found undefined alias 'x'"),
        ("1: a\n'1': b\n", 's.yaml:2:1: <yaml>: invalid YAML: found duplicate key "1"'),
        ("a: {<<: 5}\n", "s.yaml:1:9: <yaml>: invalid YAML: a merge key '<<' takes a mapping or a list of mappings"),
        ("%YAML 1.1\n---\n%YAML 1.3\n---\na: 1\n", "s.yaml:3:1: <yaml>: invalid YAML: YAML '1.3' is not supported; write %YAML 1.2 or nothing"),
        ("\ufeff%YAML 2.0\n---\na: 1\n", "s.yaml:1:1: <yaml>: invalid YAML: YAML '2.0' is not supported; write %YAML 1.2 or nothing"),
        ("%YAML\n---\na: 1\n", "s.yaml:1:1: <yaml>: invalid YAML: YAML '' is not supported; write %YAML 1.2 or nothing"),
    ],
)
def test_yaml_errors_are_positioned(text, expected):
    with pytest.raises(SpecError) as caught:
        load_text(text, "s.yaml")
    assert [str(d) for d in caught.value.diagnostics] == [expected]


def test_huge_integer_is_positioned_and_short():
    (message,) = errors("version: 1\nname: " + "9" * 5000 + "\n")
    assert message.startswith("s.yaml:2:7: <yaml>: invalid YAML: cannot read '9999")
    assert message.endswith("... (5,000 characters) as !!int") and len(message) < 200


def test_limits_name_themselves(tmp_path):
    (message,) = errors("name: " + "a" * (yamltree.MAX_SCALAR + 1) + "\n")
    assert message == f"s.yaml:1:7: <yaml>: invalid YAML: a value of {yamltree.MAX_SCALAR + 1:,} characters; the limit is 16,384"
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * load.MAX_BYTES + "\n")
    with pytest.raises(SpecError) as caught:
        load_file(big)
    assert str(caught.value) == f"{big}: <file>: the spec is larger than 1,048,576 bytes (the limit)"


def test_nesting_is_bounded_before_composing():
    (message,) = errors("a: " + "[" * 1000 + "\n")
    assert message == "s.yaml:1:67: <yaml>: invalid YAML: nested deeper than 64 levels (the limit)"
    (message,) = errors("a:\n" + "- " * 1000 + "x\n")
    assert message == "s.yaml:2:127: <yaml>: invalid YAML: nested deeper than 64 levels (the limit)"


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_100000_levels_exit_3_with_a_position(tmp_path, opener):
    spec = tmp_path / "deep.yaml"
    spec.write_text("a:\n  " + opener * 100_000 + "x\n")
    result = subprocess.run([sys.executable, "-m", "vllmgen", "validate", str(spec)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr[-500:]
    assert result.stderr.startswith(f"{spec}:2:") and "nested deeper than 64 levels" in result.stderr
    assert "Traceback" not in result.stderr


def test_nine_levels_of_aliases_fail_at_the_alias():
    with pytest.raises(SpecError) as caught:
        load_text(laughs(9), "s.yaml")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.line == 5 and "aliases expand to more than 10,000 nodes (the limit)" in diagnostic.message


def test_aliases_below_the_cap_load_and_share_positions():
    loaded = load_text(laughs(2), "s.yaml")
    assert loaded.data["a2"][8][8][8] == "x"
    assert loaded.positions.of(("a2", 3, 4, 5)) == (1, 25)  # where the anchored item stands
    assert loaded.positions.of(("a2", 3)) == (3, 25)  # the alias itself


def test_non_utf8_is_reported_at_line_and_column(tmp_path):
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_file(spec)
    assert str(caught.value) == f"{spec}:2:10: <file>: not UTF-8: byte 0xe9 cannot start or continue a character"


def test_merge_keys_inline_and_in_lists():
    text = "x: &x {a: 1, b: 2}\ny: &y {b: 3, c: 4}\nz:\n  <<: [*x, *y]\n  c: 5\nw:\n  <<: {d: 6}\n"
    loaded = load_text(text, "s.yaml")
    assert loaded.data["z"] == {"a": 1, "b": 2, "c": 5}
    assert loaded.data["w"] == {"d": 6}
    assert loaded.positions.of(("z", "b"), key=True) == (1, 14)  # the first mapping wins
    assert loaded.positions.of(("z", "c"), key=True) == (5, 3)  # the explicit key wins
    assert loaded.positions.of(("w", "d"), key=True) == (7, 8)


def test_yaml_11_directive_is_honoured():
    assert load_text("%YAML 1.1\n---\na: yes\n", "s.yaml").data == {"a": True}
    assert load_text("a: yes\n", "s.yaml").data == {"a": "yes"}


# --- patterns match in full; addresses ------------------------------------------------------------

@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("name: qwen3-next-tp16-ray", 'name: "qwen3-next-tp16-ray\\n"'),
        ("address: 192.0.2.1", 'address: "192.0.2.1\\n"'),
        ("nic: eth0", 'nic: "eth0\\n"'),
        ("base: vllm/vllm-openai:v0.32.0", 'base: "vllm/vllm-openai:v0.32.0\\n"'),
    ],
)
def test_a_trailing_newline_is_refused(old, new):
    assert old in SPEC, old
    found = errors(SPEC.replace(old, new, 1))
    assert found and all("<yaml>" not in line for line in found), found


@pytest.mark.parametrize(
    ("address", "ok"),
    [("fe80::1%eth0", True), ("fe80::1%$(reboot)", False), ("fe80::1%", False), ("192.0.2.1%eth0", False),
     ("fd00::1", True), ("192.0.2.300", False), ("host-1.example.com", True)],
)
def test_ipv6_scope_ids_are_interface_names(address, ok):
    found = errors(MINIMAL.replace("192.0.2.1", f"'{address}'"))
    assert (found == []) is ok, found


def test_ipv6_duplicates_are_seen_in_canonical_form():
    text = SPEC.replace("192.0.2.1", "fd00::1").replace("192.0.2.2", "'fd00:0:0::0001'")
    found = errors(text)
    assert any("nodes[1].address: duplicate address 'fd00::1' (also nodes[0].address)" in line for line in found), found


def test_ipv6_is_bracketed_in_urls_and_host_port():
    from vllmgen.render.compile import Compiled
    from vllmgen.plan.plan import build_plan
    from vllmgen.render.artifacts import render

    text = SPEC.replace("192.0.2.1", "fd00::1").replace("192.0.2.2", "fd00::2")
    plan = build_plan(validate(load_text(text, "s.yaml")).spec, "s.yaml")
    assert plan.endpoint.url == f"http://[fd00::1]:{plan.endpoint.port}"
    files = {artifact.path: artifact.content for artifact in render(plan)}
    worker = next(content for path, content in files.items() if path.endswith("worker-1/start.sh"))
    assert "--address=[fd00::1]:6379" in worker and "--node-ip-address=fd00::2" in worker
    readme = next(content for path, content in files.items() if path.endswith("README.md"))
    assert f"http://[fd00::1]:{plan.endpoint.port}/v1" in readme and "http://fd00::1" not in readme
    assert Compiled  # the module imports


# --- secrets, truncation, every error at once ------------------------------------------------------

TOKEN = "hf_" + "a" * 34


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("runtime:\n  env: {%s: x}\n", "runtime.env.hf_aaaa"),
        ("docker:\n  daemon: {%s: 1}\n", "docker.daemon.hf_aaaa"),
        ("serve:\n  speculative_config: {method: ngram, %s: 1}\n", "serve.speculative_config.hf_aaaa"),
    ],
)
def test_a_token_as_a_mapping_key_is_refused(where, path):
    found = errors(MINIMAL + where % TOKEN)
    assert any(path in line and "this key looks like a literal Hugging Face token" in line for line in found), found


def test_messages_never_echo_a_huge_value():
    found = errors(MINIMAL.replace("name: demo", "name: " + "A" * 16000) + f"runtime: {{env: {{{'B' * 16000}: x}}}}\n")
    assert found and max(map(len, found)) < 400, [line[:300] for line in found]


def test_readme_example_is_what_the_tool_prints():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("a test keeps this output exact):\n\n```text\n", 1)[1].split("```", 1)[0]
    result = run_vllmgen("validate", "bad.yaml", cwd=ROOT / "tests" / "fixtures" / "readme")
    assert result.returncode == 3
    assert result.stderr == block


def test_rules_run_beside_field_errors():
    text = SPEC.replace("gpus: 8", "gpus: 8\n    gpu: 8", 1).replace("tensor_parallel_size: 16", "tensor_parallel_size: 8")
    found = errors(text)
    assert any("unknown key 'gpu'" in line for line in found)
    assert any("= 8 must equal the GPUs of all nodes (8 + 8 = 16)" in line for line in found), found


# --- extra_args as vLLM's parser reads them -------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('[--cudagraph-capture-sizes, "1", "2", "4"]', []),
        ('[--seed, "-1", --max-num-batched-tokens, 32k, -O3, --compilation-config.mode, "3"]', []),
        ('[--compilation-config, \'{"mode": 3}\', --kv-cache-dtype, fp8]', []),
        ("[--kv-cache-dtype, fp9]", ["serve.extra_args[1]: --kv-cache-dtype has no choice 'fp9'; did you mean 'fp8'?"]),
        ("[--block-size, x]", ["serve.extra_args[1]: --block-size expects an integer, got 'x'"]),
        ("[--cudagraph-capture-sizes]", ["serve.extra_args[0]: --cudagraph-capture-sizes expects one or more values"]),
        ("[--cudagraph-capture-sizes, '1', x]", ["serve.extra_args[2]: --cudagraph-capture-sizes expects an integer, got 'x'"]),
        ("[--seed, --block-size, '16']", ["serve.extra_args[0]: --seed expects a value"]),
        ("[--disable-log-stats=yes]", ["serve.extra_args[0]: --disable-log-stats takes no value (write it alone, without '=yes')"]),
        ("[--disable-log-stats, yes]", ["serve.extra_args[1]: 'yes' is not a flag, and the flag before it takes no more values"]),
        ("[--compilation-config, '{bad']", ["serve.extra_args[1]: --compilation-config expects JSON, such as '{\"key\": 1}', got '{bad'"]),
    ],
)
def test_extra_args_follow_the_parser(args, expected):
    found = errors(MINIMAL + f"serve: {{extra_args: {args}}}\n")
    assert [line.split(": ", 1)[1] for line in found if "warning" not in line] == expected


def test_many_values_are_bounded_and_few_errors_are_shown():
    text = "version: 1\nname: x\nmodel: {source: a/b}\nnodes: [" + ", ".join(["1"] * 25_000) + "]\n"
    with pytest.raises(SpecError) as caught:
        load_text(text, "s.yaml")
    assert str(caught.value).endswith("invalid YAML: the spec holds more than 20,000 keys and values (the limit)")
    text = "version: 1\nname: x\nmodel: {source: a/b}\nnodes: [" + ", ".join(["1"] * 500) + "]\n"
    found = errors(text)
    assert len(found) == 201
    # 500 bad nodes and the missing cluster.backend: 501 problems
    assert found[0] == "s.yaml: <spec>: 301 more problems are not shown (the first 200 are)"


@pytest.mark.parametrize("endpoint", ["ssh://root@host\n", "ssh://root\n@host", "tcp://10.0.0.1\n:2376",
                                      "ssh://root@[fe80::1%$(x)]"])
def test_docker_host_patterns_match_in_full(endpoint):
    found = errors(MINIMAL.replace("gpus: 1}", "gpus: 1, docker_host: %s}" % json.dumps(endpoint)))
    assert len(found) == 1 and "nodes[0].docker_host" in found[0], found


def test_docker_host_ipv6_with_an_interface_scope_passes():
    assert errors(MINIMAL.replace("gpus: 1}", "gpus: 1, docker_host: 'ssh://root@[fe80::1%eth0]'}")) == []
