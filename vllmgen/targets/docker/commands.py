"""The Docker target's verbs as the ``docker`` CLI lines that do the same (``runner.executor.Commands``): what
``apply --dry-run`` prints for a Docker node. ``run`` prints ``dockerargs.run_words``, the words the engine
turns into the docker CLI's create request; the host's part (daemon.json, the restart, the deployment folder)
runs on the host, directly or through ssh."""

from __future__ import annotations

import shlex
from pathlib import Path

from vllmgen.plan import label_names
from vllmgen.plan.words import Word
from vllmgen.render.shell import join_words
from vllmgen.runner import host as hosts
from vllmgen.runner.executor import FROM_LINE, RAY_PROBE, SERVING_PROBE, EngineError, RunRequest
from vllmgen.spec import endpoints
from vllmgen.targets.docker import dockerargs


class DockerCli:
    """``docker [--host ENDPOINT] ...`` for a node's engine; its host's commands through ssh where it has one."""

    def __init__(self, endpoint: str | None, host: hosts.Host):
        self.endpoint = endpoint
        self.host = host
        self.where = endpoint or f"local {hosts.default_endpoint()}"

    def _docker(self, *words: Word) -> str:
        host = ("--host", self.endpoint) if self.endpoint else ()
        return join_words(["docker", *host, *words])

    def _on_host(self, argv: list[str] | tuple[str, ...]) -> str:
        """A command run on the node's host: directly, or through ssh."""
        if isinstance(self.host, hosts.SshHost):
            return shlex.join(self.host.ssh_argv(list(argv)))
        return shlex.join(argv)

    def ping(self) -> str:
        why = endpoints.refused(self.endpoint or hosts.default_endpoint())
        if why:  # as the SDK engine: refused before anything is sent there
            raise EngineError(why)
        return self._docker("version")

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> str | None:
        if not isinstance(self.host, hosts.SshHost):  # the local folder is mounted as it is
            return None
        argv = self.host.ssh_argv(["sh", "-c", hosts.PUT_SCRIPT, "vllmgen", remote])
        return shlex.join(["tar", "-C", str(local), "-c", "-f", "-", *sorted(files)]) + " | " + shlex.join(argv)

    def run(self, request: RunRequest) -> str:
        words = dockerargs.run_words(request)
        if self.endpoint:
            words[1:1] = ["--host", self.endpoint]
        return join_words(words)

    def remove(self, name: str, stop_timeout: int) -> str:
        return self._docker("stop", "--time", str(stop_timeout), name) + " && " + self._docker("rm", name)

    def exec(self, name: str, argv: tuple[str, ...], detach: bool, env: tuple[str, ...]) -> str:
        names = [w for key in env for w in ("--env", key)]  # docker exec --env NAME: the value from its environment
        return self._docker("exec", *(("--detach",) if detach else ()), *names, name, *argv)

    def list_containers(self, deployment: str) -> str:
        return self._docker("ps", "--all", "--filter", f"label={label_names.DEPLOYMENT}={deployment}")

    def started_at(self, name: str) -> str:
        return self._docker("inspect", "--format", "{{.State.StartedAt}}", name)

    def serving(self, name: str) -> str:
        return self._docker("exec", name, "python3", "-c", SERVING_PROBE)

    def cluster_view(self, name: str) -> str:
        return self._docker("exec", name, "python3", "-c", RAY_PROBE)

    def build_image(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str]) -> str:
        label_words = [w for key, value in sorted(labels.items()) for w in ("--label", f"{key}={value}")]
        own = (context / "Dockerfile").read_text(encoding="utf-8") if (context / "Dockerfile").exists() else None
        if own == dockerfile:
            return self._docker("build", "--network", "host", "--tag", tag, *label_words, str(context))
        # the FROM line was swapped: feed the changed Dockerfile on stdin
        base = FROM_LINE.search(dockerfile)
        original = shlex.quote(str(context / "Dockerfile"))
        swap = f"sed '0,/^FROM /s|^FROM .*|{base.group(0) if base else ''}|' {original}"
        return swap + " | " + self._docker("build", "--network", "host", "--tag", tag, *label_words,
                                           "--file", "-", str(context))

    def write_daemon_json(self, path: str, text: str, backup: str | None) -> str:
        copy = f"cp -p {shlex.quote(path)} {shlex.quote(backup)}\n" if backup else ""
        return f"{copy}cat > {shlex.quote(path)} <<'EOF'\n{text.rstrip()}\nEOF"

    def validate_daemon_json(self) -> str:
        return (f"# the merged file is checked first: {self._on_host(['dockerd', '--validate', '--config-file', 'FILE'])}"
                " (Docker >= 23; else vllmgen checks the keys it writes)")

    def restore_daemon_json(self, path: str, original: str | None) -> str:
        return (f"rm -f {shlex.quote(path)}" if original is None
                else f"cat > {shlex.quote(path)} <<'EOF'\n{original.rstrip()}\nEOF")

    def restart_daemon(self, command: tuple[str, ...]) -> str:
        return self._on_host(command)
