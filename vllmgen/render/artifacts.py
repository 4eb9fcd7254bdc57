"""Stage 4, render: a ``Plan`` -> the bytes of every artifact, in memory, deterministically.

Shell and Dockerfile templates are rendered with ``finalize=quote``: every ``{{ value }}`` is
shell-quoted unless a filter marked it as already-safe shell text, so a template cannot forget
to quote. Structured files (JSON, YAML) are serialised, never templated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from vllmgen import __version__
from vllmgen.render import fingerprint, monitoring, yamlout
from vllmgen.targets.docker.dockercli import mount_word
from vllmgen.plan.plan import SERVE_CONFIG_FILE, Container, NodePlan, Plan, SecretEnv
from vllmgen.targets import registry
from vllmgen.targets.kit import RenderKit
from vllmgen.render.shell import Anchored, Word, curl_with_key, host_word, join_words, quote_word, secret_expression

MANIFEST = "manifest.json"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the deployment directory, '/'-separated
    content: str
    executable: bool = False

    @property
    def data(self) -> bytes:
        return self.content.encode("utf-8")


class ShellText(str):
    """Text that is already valid, quoted shell: ``finalize`` passes it through."""


def templates_dir() -> Path:
    packaged = Path(__file__).parent.parent / "templates"  # inside a built wheel
    return packaged if packaged.is_dir() else Path(__file__).parent.parent.parent / "templates"


def _finalize_shell(value: Any) -> str:
    if isinstance(value, ShellText):
        return value
    if isinstance(value, (list, tuple)):
        raise TypeError("render a list of words with the 'words' filter")
    return quote_word(value if isinstance(value, Anchored) else str(value))


def _words(words: list[Word] | tuple[Word, ...]) -> ShellText:
    return ShellText(join_words(list(words)))


def _var(name: str) -> ShellText:
    """An environment variable name, for use inside ``${...}``; checked, never quoted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a shell variable name: {name!r}")
    return ShellText(name)


def _env_value(value: str) -> ShellText:
    """A Dockerfile ENV value: read by Docker's own lexer, not a shell (nor shellcheck), which takes
    single-quoted text literally; the shell forms of ``quote_word`` are for RUN lines."""
    return ShellText(shlex.quote(str(value)))


def _safe_text(value: str) -> ShellText:
    """Text for a comment line: control characters could end the comment, so they go."""
    return ShellText(re.sub(r"[\x00-\x1f\x7f]", "?", str(value)))


def _curl_check(url: str, key: SecretEnv | None) -> str:
    """The runbook's check: ``curl URL``, with the API key read from where the spec keeps it and sent
    through curl's stdin (never its argv)."""
    if key is None:
        return shlex.join(["curl", "-sS", url])
    return curl_with_key(secret_expression(key.name, key.from_env, key.from_file), ["-sS", url])


@functools.cache
def _environment(shell: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_finalize_shell if shell else None,
        auto_reload=False,  # templates do not change while we run: no stat() per node and template
    )
    env.filters.update(words=_words, var=_var, host_path=host_word, safe_text=_safe_text, env_value=_env_value,
                       curl_check=_curl_check)
    env.bytecode_cache = _bytecode_cache(env)
    return env


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, like __pycache__: compiling them is most of a small
    render's time. Keyed by template path and source checksum (jinja2) and by the environment's
    compile options (the file name pattern); an unreadable or unwritable cache is only a miss."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache(env: jinja2.Environment) -> _TemplateCache | None:
    root = os.environ.get("VLLMGEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vllmgen"
    )
    directory = os.path.join(root, "templates")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return None
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return None  # code is loaded from it: it must be ours alone
    # everything that changes the code jinja2 generates for the same template source
    options = (
        jinja2.__version__, env.block_start_string, env.block_end_string, env.variable_start_string,
        env.variable_end_string, env.comment_start_string, env.comment_end_string, env.line_statement_prefix,
        env.line_comment_prefix, env.trim_blocks, env.lstrip_blocks, env.newline_sequence,
        env.keep_trailing_newline, sorted(env.extensions), env.optimized, env.is_async, env.autoescape,
        getattr(env.finalize, "__qualname__", None),
    )
    fingerprint = hashlib.sha256(repr(options).encode()).hexdigest()[:12]
    return _TemplateCache(directory, f"{fingerprint}-%s.cache")


def _template(name: str, **context: Any) -> str:
    # secrets.env.example is shell too: users `source` it; process.service.j2 is not shell
    shell = name.endswith((".sh.j2", "Dockerfile.j2", ".env.example.j2"))
    return _environment(shell).get_template(name).render(**context)


def header(plan: Plan) -> str:
    return f"generated by vllmgen from {plan.spec_file}; do not edit"


def render(plan: Plan, made_from: dict[str, Any] | None = None) -> list[Artifact]:
    """Every artifact of one deployment, sorted by path, the manifest last."""
    from vllmgen.render.gateway_artifacts import open_ports

    context = {"plan": plan, "header": header(plan), "secrets": _secret_sources(plan), "ports": open_ports(plan)}
    serve_config = _serve_config(plan)
    kit = RenderKit(context=context, template=_template, serve_config=serve_config, compose=_compose,
                    compose_file=compose_file)
    target = registry.target(plan.runtime)
    own = [Artifact(path, text, executable) for path, text, executable in target.artifacts(plan, kit)]
    if not target.host_files:  # the target's files are the whole folder (Kubernetes: manifests only)
        own.sort(key=lambda artifact: artifact.path)
        return [*own, Artifact(MANIFEST, _manifest(plan, own, made_from))]
    shared = [
        Artifact(SERVE_CONFIG_FILE, serve_config),
        Artifact("secrets.env.example", _template("secrets.env.example.j2", **context)),
        Artifact("README.md", _template("README.md.j2", **context)),
    ]
    return _finish(plan, shared + own, made_from)


def _finish(plan: Plan, artifacts: list[Artifact], made_from: dict[str, Any] | None) -> list[Artifact]:
    if plan.gateway:
        from vllmgen.render.gateway_artifacts import artifacts as gateway_files

        context = {"plan": plan, "header": header(plan)}
        artifacts += [Artifact(path, text, executable)
                      for path, text, executable in gateway_files(plan, context, _template, compose_file)]
    if plan.monitoring:
        artifacts += [Artifact(path, text) for path, text in monitoring.artifacts(plan.monitoring, header(plan)).items()]
    artifacts.sort(key=lambda artifact: artifact.path)
    artifacts.append(Artifact(MANIFEST, _manifest(plan, artifacts, made_from)))
    return artifacts


def _secret_sources(plan: Plan) -> list[tuple[SecretEnv, str]]:
    return [(secret, secret.from_env or secret.name) for secret in plan.secrets]


def _serve_config(plan: Plan) -> str:
    text = (
        f"{header(plan)}\n"
        f"Options shared by every node of '{plan.name}' (vllm serve --config).\n"
        "Per-node flags (node rank, --headless) are on each node's command line."
    )
    return yamlout.dump(plan.serve_config, text)


def _compose_escape(value: str) -> str:
    return value.replace("$", "$$")  # compose interpolates $VAR in every value


def _compose_volume(word: Word) -> str:
    if isinstance(word, Anchored):
        base = "${HOME}" if word.anchor == "home" else "../.."  # compose resolves relative to this file
        return f"{base}/{_compose_escape(word.rest)}"
    return _compose_escape(word)


def _compose(plan: Plan, node: NodePlan) -> str:
    text = f"{header(plan)}\nNode {node.name} ({node.role}) of '{plan.name}': docker compose -f compose.yaml up -d"
    return compose_file(node.container, node.name, text, node.gpu_ids)


def compose_file(container: Container, service_name: str, text: str, gpu_ids: tuple[int, ...] | None = None) -> str:
    service: dict[str, Any] = {
        "image": container.image,
        "container_name": container.name,
        "entrypoint": [container.entrypoint],
        "command": [_compose_escape(arg) for arg in container.command],
        "network_mode": container.network_mode,
    }
    if container.ports:
        service["ports"] = [f"{host}:{inner}" for host, inner in container.ports]
    if container.ipc_host:
        service["ipc"] = "host"
    if container.shm_size:
        service["shm_size"] = container.shm_size
    service["restart"] = container.restart
    env = [f"{key}={_compose_escape(value)}" for key, value in container.env]
    env += [f"{secret.name}={_compose_secret(secret)}" for secret in container.secrets]
    if env:
        service["environment"] = env
    service["volumes"] = [_compose_volume(mount_word(mount)) for mount in container.mounts]
    if container.devices:
        service["devices"] = list(container.devices)
    if container.cap_add:
        service["cap_add"] = list(container.cap_add)
    if container.ulimits:
        service["ulimits"] = {name: {"soft": soft, "hard": hard} for name, soft, hard in container.ulimits}
    if container.healthcheck:
        check = container.healthcheck
        service["healthcheck"] = {
            "test": ["CMD-SHELL", _compose_escape(check.command)],
            "interval": f"{check.interval_s}s",
            "timeout": f"{check.timeout_s}s",
            "retries": check.retries,
            "start_period": f"{check.start_period_s}s",
        }
    service["labels"] = {key: value for key, value in container.labels}
    if container.gpus:  # the router runs without GPUs
        gpu_request: dict[str, Any] = {"count": "all", "capabilities": ["gpu"]}
        if gpu_ids is not None:
            gpu_request = {"device_ids": [str(gpu) for gpu in gpu_ids], "capabilities": ["gpu"]}
        service["deploy"] = {"resources": {"reservations": {"devices": [gpu_request]}}}
    document = {"name": container.name, "services": {service_name: service}}
    for secret in container.secrets:
        text += "\n" + _compose_secret_note(secret)
    return yamlout.dump(document, text)


def _compose_secret(secret: SecretEnv) -> str:
    """The container variable vLLM reads, from the variable the spec names; compose refuses to start
    without it (``:?``) rather than start vLLM with an empty key. Compose cannot read a file into a
    variable, so a file secret is taken from the environment under its container name."""
    source = secret.from_env or secret.name
    if secret.from_file:
        why = "compose cannot read the file it comes from; export it as this file's header says, or use start.sh"
    else:
        why = "see ../../secrets.env.example"
    return f"${{{_var(source)}:?{source} is not set ({why})}}"


def _compose_secret_note(secret: SecretEnv) -> str:
    if secret.from_file:
        read = f"$(cat -- {quote_word(host_word(secret.from_file))})"
        return _safe_text(f"{secret.name} comes from a file; first: export {secret.name}=\"{read}\"")
    source = secret.from_env or secret.name
    return f"{secret.name} is read from ${source}: export it first (see ../../secrets.env.example)."


def _manifest(plan: Plan, artifacts: list[Artifact], made_from: dict[str, Any] | None) -> str:
    files = {artifact.path: hashlib.sha256(artifact.data).hexdigest() for artifact in artifacts}
    manifest = {
        "generated_by": f"vllmgen {__version__}",
        "spec": plan.spec_file,
        "deployment": plan.name,
        "files": files,
    }
    if made_from is not None:
        manifest["inputs"] = {**made_from, "outputs_sha256": fingerprint.outputs_sha256(files)}
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"
