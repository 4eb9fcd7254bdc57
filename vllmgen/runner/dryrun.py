"""``DryRunExecutor``: prints the ``docker`` commands equivalent to each operation, records every
call for the tests, and answers probes as a healthy deployment would; changes nothing.

Container starts print ``dockerargs.run_words``, the words the SDK executor runs.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vllmgen.plan import label_names
from vllmgen.plan.plan import SecretEnv
from vllmgen.plan.words import Anchored, Word
from vllmgen.render.shell import curl_with_key, join_words, quote_word, secret_expression
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import (
    FROM_LINE,
    RAY_PROBE,
    SERVING_PROBE,
    ClusterView,
    ContainerState,
    EngineError,
    EngineInfo,
    ExecResult,
    HttpResult,
    RunRequest,
)
from vllmgen.runner.secrets import placeholders
from vllmgen.spec import endpoints
from vllmgen.targets.docker import dockerargs
from vllmgen.targets.process.process import KEEP_ENVIRON, MARKER_ENV, launch, marker


@dataclass(frozen=True)
class Call:
    node: str
    op: str
    detail: str = ""


@dataclass
class Recorder:
    """The calls of every DryRunExecutor that shares it, in order; and where their commands go."""

    stream: TextIO | None = None
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_node: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)  # node -> where its commands go, for the headers

    def record(self, node: str, op: str, detail: str = "", command: str | None = None) -> None:
        with self._lock:
            self.calls.append(Call(node, op, detail))
            if command is None:
                return
            stream = self.stream or sys.stdout
            if node != self._last_node:
                where = self.endpoints.get(node)
                print(f"\n# --- node {node}" + (f" ({where})" if where else ""), file=stream)
                self._last_node = node
            print(command, file=stream, flush=True)


class DryHost:
    """The node's host as the dry run sees it: its paths and commands, but nothing that reaches it.
    ``$HOME`` of a remote host is unknown without asking it, so it prints as ``~``."""

    def __init__(self, host: hosts.Host, record: Callable[[str, str, str | None], None]):
        self._host = host
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def home(self) -> str:
        return self._host.home() if hosts.is_local(self._host) else "~"

    def gpu_count(self) -> int | None:
        argv = list(hosts.GPU_QUERY)
        self._record("gpu-count", "", shlex.join(self.ssh_argv(argv)) if isinstance(self._host, hosts.SshHost)
                     else shlex.join(argv))
        return None


class DryRunExecutor:
    """Prints the ``docker`` commands equivalent to each operation and records them; changes nothing.

    Probes are answered as a healthy deployment would answer them (``assume_*``), so the whole
    step sequence prints. ``containers`` and ``images`` seed what already exists (for tests of
    the unchanged/replaced decisions).
    """

    concurrent = False  # one node after another: the printed script reads top to bottom

    def __init__(self, node: str, endpoint: str | None, recorder: Recorder, *, host: hosts.Host | None = None,
                 assume_cluster: ClusterView | None = None, assume_served: str = "",
                 assume_api_key: bool = False, containers: dict[str, ContainerState] | None = None,
                 images: dict[str, dict[str, str]] | None = None, process: bool = False,
                 secrets: tuple[SecretEnv, ...] = ()):
        self.node = node
        self.secrets = secrets  # where each secret is read: printed commands read it from there
        self.process = process  # runtime.kind: process: no docker, stop by the recorded PID
        self.endpoint = endpoint
        self.real_host = host or hosts.for_endpoint(endpoint)
        self.host = DryHost(self.real_host, self._record)
        self.recorder = recorder
        self.assume_cluster = assume_cluster
        self.assume_served = assume_served
        self.assume_api_key = assume_api_key
        self.containers = dict(containers or {})
        self.images = dict(images or {})
        self.served: set[str] = set()  # containers where a dry-run `vllm serve` was started
        recorder.endpoints[node] = endpoint or f"local {hosts.default_endpoint()}"

    def _on_host(self, argv: list[str] | tuple[str, ...]) -> str:
        """A command run on the node's host: directly, or through ssh."""
        if isinstance(self.real_host, hosts.SshHost):
            return shlex.join(self.host.ssh_argv(list(argv)))
        return shlex.join(argv)

    def _docker(self, *words: Word) -> str:
        host = ("--host", self.endpoint) if self.endpoint else ()
        return join_words(["docker", *host, *words])

    def _record(self, op: str, detail: str = "", command: str | None = None) -> None:
        self.recorder.record(self.node, op, detail, command)

    def close(self) -> None:
        pass

    def ping(self) -> EngineInfo:
        why = endpoints.refused(self.endpoint or hosts.default_endpoint())
        if why:  # as the real executor: refused before anything is printed to run there
            raise EngineError(why)
        self._record("ping", command=self._docker("version"))
        return EngineInfo("dry-run", "dry-run")

    def read_daemon_json(self) -> str | None:
        self._record("read-daemon-json", self.host.daemon_json_path)
        if hosts.is_local(self.real_host):  # reading changes nothing: show the real merge
            return self.host.read_text(self.host.daemon_json_path)
        return None

    def write_daemon_json(self, text: str, backup: str | None) -> None:
        path = self.host.daemon_json_path
        copy = f"cp -p {shlex.quote(path)} {shlex.quote(backup)}\n" if backup else ""
        self._record("write-daemon-json", path,
                     f"{copy}cat > {shlex.quote(path)} <<'EOF'\n{text.rstrip()}\nEOF")

    def validate_daemon_json(self, text: str) -> tuple[bool | None, str]:
        self._record("validate-daemon-json", self.host.daemon_json_path,
                     f"# the merged file is checked first: {self._on_host(['dockerd', '--validate', '--config-file', 'FILE'])}"
                     " (Docker >= 23; else vllmgen checks the keys it writes)")
        return None, ""

    def restore_daemon_json(self, original: str | None) -> None:
        path = self.host.daemon_json_path
        self._record("restore-daemon-json", path, f"rm -f {shlex.quote(path)}" if original is None
                     else f"cat > {shlex.quote(path)} <<'EOF'\n{original.rstrip()}\nEOF")

    def restart_daemon(self) -> None:
        self._record("restart-daemon", command=self._on_host(self.host.restart_command))


    def image_labels(self, tag: str) -> dict[str, str] | None:
        self._record("image-inspect", tag)
        return self.images.get(tag)

    def image_id(self, tag: str) -> str | None:
        return f"sha256:(the ID of {tag})" if tag in self.images else None

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str],
                    on_line: Callable[[str], None]) -> None:
        label_words = [w for key, value in sorted(labels.items()) for w in ("--label", f"{key}={value}")]
        own = (context / "Dockerfile").read_text(encoding="utf-8") if (context / "Dockerfile").exists() else None
        if own == dockerfile:
            command = self._docker("build", "--network", "host", "--tag", tag, *label_words, str(context))
        else:  # the FROM line was swapped: feed the changed Dockerfile on stdin
            base = FROM_LINE.search(dockerfile)
            original = shlex.quote(str(context / "Dockerfile"))
            swap = f"sed '0,/^FROM /s|^FROM .*|{base.group(0) if base else ''}|' {original}"
            command = swap + " | " + self._docker("build", "--network", "host", "--tag", tag, *label_words,
                                                  "--file", "-", str(context))
        self._record("build", tag, command)
        self.images[tag] = dict(labels)

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str:
        if hosts.is_local(self.real_host):
            return str(local.resolve())
        if not isinstance(self.real_host, hosts.SshHost):
            raise hosts.NoHostAccess(f"copying the deployment folder needs the host itself, and {self.endpoint} "
                                     "reaches only its Docker API; give the node an ssh:// docker_host")
        argv = self.host.ssh_argv(["sh", "-c", hosts.PUT_SCRIPT, "vllmgen", remote])
        pack = shlex.join(["tar", "-C", str(local), "-c", "-f", "-", *sorted(files)])
        self._record("put-files", f"{remote}: {', '.join(sorted(files))}", f"{pack} | {shlex.join(argv)}")
        return remote

    def inspect(self, name: str) -> ContainerState | None:
        self._record("inspect", name)
        return self.containers.get(name)

    def run(self, request: RunRequest) -> None:
        container = request.planned()
        if not container.image:  # runtime.kind: process: what nodes/<node>/run.sh runs, detached
            self._record("run", container.name, passes_note(container.secrets) + process_line(request))
            self.containers[container.name] = ContainerState(container.name, "running", None, request.labels, "")
            return
        words = dockerargs.run_words(request)
        if self.endpoint:
            words[1:1] = ["--host", self.endpoint]
        self._record("run", container.name, passes_note(container.secrets) + assignments(container.secrets)
                     + join_words(words))
        self.containers[container.name] = ContainerState(container.name, "running", None, request.labels,
                                                         container.image)

    def remove(self, name: str, stop_timeout: int = 10) -> None:
        if self.process:
            self._record("remove", name, "kill -TERM <the recorded PID, if proven ours> "
                                         "(then SIGKILL to its group's proven members)")
            self.containers.pop(name, None)
            return
        self._record("remove", name, self._docker("stop", "--time", str(stop_timeout), name) + " && "
                     + self._docker("rm", name))
        self.containers.pop(name, None)

    def logs(self, name: str, tail: int | None = 30, timestamps: bool = False) -> str:
        self._record("logs", name + (" --timestamps" if timestamps else ""))
        return ""

    def follow(self, name: str) -> None:
        """Recorded, not printed (``docker logs --follow`` would not return): nothing runs, so the waits poll."""
        self._record("follow", name)
        return None

    def started_at(self, name: str) -> None:
        self._record("started-at", name, self._docker("inspect", "--format", "{{.State.StartedAt}}", name))
        return None

    def exec(self, name: str, argv: tuple[str, ...], *, detach: bool = False,
             env: Mapping[str, str] | None = None) -> ExecResult:
        names = [w for key in sorted(env or {}) for w in ("--env", key)]  # docker exec --env NAME: by name only
        words = ["exec", *(("--detach",) if detach else ()), *names, name, *argv]
        # a value the run holds stands for one of the spec's secrets: read the variable from where that one is
        sources = {value: secret for secret, value in zip(self.secrets, placeholders(self.secrets).values())}
        passed = tuple(SecretEnv(key, sources[value].from_env or sources[value].name, sources[value].from_file)
                       if value in sources else SecretEnv(key) for key, value in sorted((env or {}).items()))
        # a process has no container to enter: the command runs on its host, beside it (ProcessExecutor.exec)
        command = self._on_host(list(argv)) if self.process else self._docker(*words)
        self._record("exec-detached" if detach else "exec", f"{name}: {argv[0]}",
                     passes_note(passed) + assignments(passed) + command)
        if detach and "vllm" in argv and "serve" in argv:
            self.served.add(name)
        return ExecResult(None if detach else 0, "")

    def list_containers(self, deployment: str) -> list[ContainerState]:
        command = self._docker("ps", "--all", "--filter", f"label={label_names.DEPLOYMENT}={deployment}")
        self._record("list", deployment, command)
        return [state for state in self.containers.values() if state.labels.get(label_names.DEPLOYMENT) == deployment]

    def cluster_view(self, name: str) -> ClusterView | None:
        self._record("cluster-view", name, self._docker("exec", name, "python3", "-c", RAY_PROBE))
        return self.assume_cluster

    def serving(self, name: str) -> bool:
        self._record("serving", name, self._docker("exec", name, "python3", "-c", SERVING_PROBE))
        return name in self.served

    def http(self, method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None,
             timeout: float = 10) -> HttpResult:
        words = ["-sS", "-X", method]
        authorized = any(key.lower() == "authorization" for key in (headers or {}))
        if body is not None:
            words += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        if authorized:  # the key is a secret: curl reads the header from stdin, the key from where the spec says
            key = next((s for s in self.secrets if s.name == "VLLM_API_KEY"), SecretEnv("VLLM_API_KEY"))
            command = curl_with_key(secret_expression(key.name, key.from_env, key.from_file), [*words, url])
        else:
            command = shlex.join(["curl", *words, url])
        path = url.split("/", 3)[-1] if url.count("/") >= 3 else ""
        unauthenticated = " (no key)" if self.assume_api_key and not authorized else ""
        self._record("http", f"{method} /{path}{unauthenticated}", command)
        if self.assume_api_key and not authorized and path != "health":  # as through the front door
            return HttpResult(401, '{"error": "Unauthorized"}')
        if path == "v1/models":
            return HttpResult(200, json.dumps({"data": [{"id": self.assume_served}]}))
        if path.startswith("v1/chat"):
            return HttpResult(200, json.dumps({"choices": [{"message": {"content": "(dry run)"}}]}))
        if path.startswith("v1/completions"):
            return HttpResult(200, json.dumps({"choices": [{"text": "(dry run)"}]}))
        return HttpResult(200, "")


def passes_note(secrets: tuple[SecretEnv, ...]) -> str:
    """``# passes NAME (from $VAR), ...``: which secrets a printed command hands on, and from where."""
    if not secrets:
        return ""
    sources = ", ".join(f"{s.name} (from {'file ' + s.from_file if s.from_file else '$' + (s.from_env or s.name)})"
                        for s in secrets)
    return f"# passes {sources} by name; values are never printed or put on a command line\n"


def assignments(secrets: tuple[SecretEnv, ...]) -> str:
    """``export NAME="${VAR}"`` lines, as start.sh has them, for each secret read from another variable or
    a file: the next command (docker run --env NAME, setsid env ...) finds it in its environment, not on
    its argv."""
    return "".join(f"export {s.name}={secret_expression(s.name, s.from_env, s.from_file)}\n" for s in secrets
                   if s.from_file or (s.from_env and s.from_env != s.name))


def process_line(request: RunRequest) -> str:
    """``setsid env NAME=VALUE ... vllm serve ...``: the process runtime's start (nodes/<node>/run.sh), as
    one shell line. Secrets are passed by name; their values are never printed."""
    plan = launch(request.container)

    def fill(word: Word) -> Word:
        return word.resolve("", request.deploy_dir) if isinstance(word, Anchored) and word.anchor == "deploy_dir" else word

    labels = dict(request.container.labels)
    mark = marker(labels.get(label_names.DEPLOYMENT, ""), labels.get(label_names.NODE, ""))
    env = sorted([f"{MARKER_ENV}={quote_word(mark)}", "=".join(KEEP_ENVIRON),
                  *(f"{name}={quote_word(fill(value))}" for name, value in plan.env)])
    return assignments(plan.secrets) + " ".join(["setsid", "env", *env, join_words([fill(word) for word in plan.argv])])
