"""Issue 17, secrets hygiene at validate: credentials and hostile image references refused with their
position; ordinary names and values (tokenizer settings, model ids, git users) still pass."""

import json

import pytest

from vllmgen.errors import SpecError
from vllmgen.spec.formats import floating_image, token_kind, url_credentials
from vllmgen.spec.load import load_text
from vllmgen.spec.rules.secrets import is_secret_name
from vllmgen.spec.validate import validate

MINIMAL = "version: 1\nname: demo\nmodel: {source: org/model}\nnodes: [{name: a, address: 192.0.2.1, gpus: 1}]\n"


def diagnostics(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as printed."""
    try:
        valid = validate(load_text(text, "s.yaml"))
    except SpecError as exc:
        return [str(d) for d in exc.diagnostics if d.severity == "error"], []
    return [], [str(d) for d in valid.warnings if KEYLESS not in str(d)]


KEYLESS = "warning: no secrets.api_key"  # the front door's warning on keyless specs: tests/test_gateway.py


# Values the attacker tried (and more): each breaks a FROM line, a compose file or docker's argv.
HOSTILE_IMAGES = [
    "python:3.12-slim\nRUN id", "python:3.12-slim RUN id", "$(id)", "`id`", "--privileged", "-v/:/host",
    "python:3.12-slim;id", "python:3.12-slim&&id", "python:3.12-slim|sh", "python:${TAG}", "python:3.12 slim",
    "python:", ":3.12", "Python:3.12", "python@sha256:xyz", "python:3.12\\", "'python:3.12'", "python:-slim",
    "a" * 256, "python:3.12\x00", "python:3.12\t", "../python:3.12", "python//x:1", "python:3.12#x",
]


@pytest.mark.parametrize("value", HOSTILE_IMAGES, ids=range(len(HOSTILE_IMAGES)))
@pytest.mark.parametrize("field", ["router: {base_image: %s}", "monitoring: {prometheus_image: %s}",
                                   "monitoring: {grafana_image: %s}"])
def test_hostile_image_references_are_refused_with_their_position(field, value):
    errors, _ = diagnostics(MINIMAL + field % json.dumps(value) + "\n")
    path = field.split(":")[0] + "." + field.split("{")[1].split(":")[0]
    assert any(e.startswith(f"s.yaml:5:") and f" {path}: expected an image reference" in e for e in errors), errors


@pytest.mark.parametrize("value", ["python:3.12-slim", "localhost:5000/team/python:3.12", "registry.example.com/a__b/c--d:v1",
                                   "python@sha256:" + "a" * 64, "localhost/x:1", "ghcr.io/org/img:1.0"])
def test_valid_image_references_pass(value):
    errors, _ = diagnostics(MINIMAL + f"router: {{base_image: {json.dumps(value)}}}\n")
    assert errors == []


@pytest.mark.parametrize(("field", "path"), [
    ("router: {base_image: python}", "router.base_image"),
    ("router: {base_image: 'python:latest'}", "router.base_image"),
    ("monitoring: {prometheus_image: prom/prometheus}", "monitoring.prometheus_image"),
    ("monitoring: {grafana_image: 'grafana/grafana:latest'}", "monitoring.grafana_image"),
])
def test_a_floating_image_tag_warns_as_the_vllm_base_does(field, path):
    errors, warnings = diagnostics(MINIMAL + field + "\n")
    assert errors == []
    assert [w.split(": ", 1)[1] for w in warnings] == [
        f"{path}: warning: unpinned image ('latest' moves): pin a release tag such as "
        + {"router.base_image": "python:3.12-slim", "monitoring.prometheus_image": "prom/prometheus:v3.5.0",
           "monitoring.grafana_image": "grafana/grafana:12.1.1"}[path]]


def test_a_pinned_digest_does_not_float():
    assert not floating_image("python@sha256:" + "a" * 64)
    assert floating_image("python") and floating_image("python:latest") and not floating_image("python:3.12")


@pytest.mark.parametrize("text", [
    "hf_" + "A1b2" * 9, "sk-proj-" + "Ab3" * 10, "ghp_" + "a1B2" * 9, "github_pat_11ABCDEFG0" + "x_y1" * 15,
    "glpat-" + "xY1_" * 5, "npm_" + "a1B2" * 9, "AKIA" + "ABCDEFGHIJ123456", "AIza" + "x1_" * 12 + "y",
    "xoxb-1234-5678-abcdefgh", "-----BEGIN OPENSSH PRIVATE KEY-----", "pypi-AgEIcHlwaS5vcmc" + "x" * 50,
    "https://ghp_" + "a1B2" * 9 + "@github.com/o/r.git",
])
def test_known_token_shapes_are_found(text):
    assert token_kind(text) is not None


@pytest.mark.parametrize("text", [
    "Qwen/Qwen3-8B", "deepseek_r1", "hf_transfer", "ghp_short", "sk-learn", "disk-" + "a" * 30, "TOKENIZERS_PARALLELISM",
    "https://hf-mirror.com", "git+ssh://git@github.com/org/repo.git@v1", "AKIAlower", "glpat-short",
    "vllm/vllm-openai:v0.32.0", "http://[fd00::1]:8000/v1", "unix:///var/run/docker.sock",
])
def test_ordinary_text_is_no_token(text):
    assert token_kind(text) is None and url_credentials(text) is None


@pytest.mark.parametrize(("text", "what"), [
    ("https://u:p@pypi.example.com/simple", "password"),
    ("https://:p@pypi.example.com/simple", "password"),
    ("http://proxy.example.com:3128 and https://a:b@x.example.com", "password"),
    ("https://0123456789abcdef0123456789abcdef01234567@github.com/o/r", "token"),
    ("ssh://me:pw@192.0.2.2", "password"),
])
def test_credentials_in_urls_are_found(text, what):
    assert what in (url_credentials(text) or "")


@pytest.mark.parametrize(("name", "secret"), [
    ("VLLM_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("GITHUB_TOKEN", True), ("DB_PASSWORD", True),
    ("OPENAI_APIKEY", True), ("GOOGLE_APPLICATION_CREDENTIALS", True), ("my_secret", True),
    ("TOKENIZERS_PARALLELISM", False), ("KEYBOARD", False), ("NCCL_IB_GID_INDEX", False), ("PWD", False),
    ("HF_HUB_ENABLE_HF_TRANSFER", False), ("MONKEY", False), ("VLLM_USE_V1", False),
])
def test_secret_like_names(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize("where", ["runtime: {env: {%s: %s}}", "router: {extra_env: {%s: %s}}"])
def test_a_credential_name_with_a_path_value_or_an_ordinary_name_passes(where):
    errors, _ = diagnostics(MINIMAL + where % ("HF_TOKEN_PATH", "/run/secrets/hf") + "\n"
                            + ("" if where.startswith("runtime") else "runtime: {env: {TOKENIZERS_PARALLELISM: 'false'}}\n"))
    assert errors == []


def test_vllm_api_key_in_the_routers_environment_is_refused_even_empty():
    errors, _ = diagnostics(MINIMAL + "router: {extra_env: {VLLM_API_KEY: ''}}\n")
    assert [e.split(": ", 2)[1] for e in errors] == ["router.extra_env.VLLM_API_KEY"]


@pytest.mark.parametrize("args", [["--hf-token", "x"], ["--hf-token=x"], ["--hf_token", "x"], ["--hf-token"],
                                  ["--api-key", "x"], ["--api-key=x"], ["--api_key=x"]])
def test_secret_flags_in_extra_args_are_refused(args):
    errors, _ = diagnostics(MINIMAL + f"serve: {{extra_args: {json.dumps(args)}}}\n")
    assert len(errors) == 1 and "serve.extra_args[0]: --" in errors[0] and "{env: " in errors[0], errors


def test_tcp_docker_host_is_refused_with_the_alternative():
    errors, _ = diagnostics(MINIMAL.replace("gpus: 1}", "gpus: 1, docker_host: 'tcp://192.0.2.1:2376'}"))
    assert len(errors) == 1 and "nodes[0].docker_host: tcp:// is refused" in errors[0] and "ssh://" in errors[0]


@pytest.mark.parametrize(("daemon", "refused"), [
    ("{hosts: ['tcp://0.0.0.0:2375']}", True),
    ("{hosts: ['unix:///var/run/docker.sock', 'TCP://10.0.0.1:2376'], tls: true}", True),
    ("{hosts: ['tcp://10.0.0.1:2376'], tlsverify: true, tlscacert: /ca.pem, tlscert: /c.pem, tlskey: /k.pem}", False),
    ("{hosts: ['unix:///var/run/docker.sock']}", False),
])
def test_a_daemon_listening_on_tcp_without_client_verification_is_refused(daemon, refused):
    errors, _ = diagnostics(MINIMAL + f"docker: {{daemon: {daemon}}}\n")
    assert bool([e for e in errors if "docker.daemon.hosts[" in e and "tlsverify: true" in e]) is refused, errors
