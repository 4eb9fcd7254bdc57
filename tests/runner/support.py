"""Helpers of the runner's slow tier: namespace clusters, spec files, the CLI inside a namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from infra import cache
from infra.dockerd import Dockerd
from infra.images import NGINX_IMAGE, TESTBASE, ensure_base_images, ensure_nginx_image
from infra.netns import Hosts, make_hosts
from infra.sshd import Sshd, SshBed, make_bed

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
# How long a real CPU vLLM may take to serve (apply's --timeout in those tests): 40-90 s on a quiet 2-core
# machine, but past 300 s for two data-parallel hosts on a loaded one (the CI run of 2026-12-03, load 8-11,
# timed out at 300 and 400 s with vLLM still importing). A deadline, not a speed target: those are in bench/.
VLLM_READY_S = 900
COMMAND_S = VLLM_READY_S + 300  # a whole vllmgen command around such a wait
# vllmgen as installed runs from cached bytecode (pip compiles it at install). Where PYTHONDONTWRITEBYTECODE
# is set (this machine's shells set it), every command compiled vllmgen's ~70 modules again: ~0.25 s of CPU
# per command, hundreds of commands in the slow tier, and a cost no user pays in the benchmarks.
PYCACHE = Path(tempfile.gettempdir()) / "vllmgen-tests-pycache"


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a vllmgen command the tests and benchmarks run: no DOCKER_HOST, bytecode cached."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE), **(extra or {})}
    environment.pop("DOCKER_HOST", None)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def group_left(pgid: int) -> list[str]:
    """`ps` lines of the living (not zombie) processes in process group ``pgid``: what `down` must have ended."""
    out = subprocess.run(["ps", "-eo", "pid,pgid,stat,cmd"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [line for line in out if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


def session_members(sid: int) -> list[int]:
    """The living processes of session ``sid``: a process-runtime server and everything it started."""
    out = subprocess.run(["ps", "-eo", "pid,sid,stat"], capture_output=True, text=True).stdout.splitlines()[1:]
    return [int(line.split()[0]) for line in out if line.split()[1] == str(sid) and not line.split()[2].startswith("Z")]


def with_home(home: Path) -> list[int]:
    """Processes working in ``home`` or with HOME=home in their environment: what a test's vllmgen started (the
    folder is the test's own), found without trusting a pid file a failure may have left unwritten."""
    wanted = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                inside = os.readlink(entry / "cwd").startswith(f"{home}/")
                if inside or wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def debian_tool(name: str, package: str) -> str:
    """The path of a program from a Debian package that tests/infra/setup.sh installs (an assert saying so if not)."""
    found = shutil.which(name)
    assert found, f"{name} (Debian package {package}) is needed: tests/infra/setup.sh installs it"
    return found


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], *, timeout: float, every: float = 0.5) -> T:
    """Ask ``probe`` until ``done`` says its answer is the awaited one, or ``timeout`` seconds passed;
    return the last answer either way (the test's assert then shows what was seen). For state that
    moves after the command that set it returned: Ray's `ray status`, a router's health checks."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if done(answer) or time.monotonic() >= deadline:
            return answer
        time.sleep(every)


class Cluster:
    """Namespace hosts, one private dockerd each, with the test base image loaded."""

    def __init__(self, hosts: Hosts, daemons: list[Dockerd]):
        self.hosts = hosts
        self.daemons = daemons
        self.configs: list[str] = []  # each daemon's daemon.json as the cluster was made: what clear() restores

    def remember_configs(self) -> None:
        self.configs = [daemon.config.read_text() for daemon in self.daemons]

    def clear(self) -> None:
        """Back to how the cluster was made, whatever a test left: every container removed (the daemons
        are private, so each one is a test's), each daemon.json as it was (the daemon restarted onto it)."""
        for daemon, config in zip(self.daemons, self.configs or [None] * len(self.daemons), strict=True):
            if config is not None and (daemon.config.is_symlink() or not daemon.config.is_file()
                                       or daemon.config.read_text() != config):
                daemon.config.unlink(missing_ok=True)
                daemon.config.write_text(config)
                daemon.ctl("restart")
            daemon.ctl("start")  # a test may have stopped or killed it
            daemon.remove_containers()
            for backup in daemon.dir.glob("daemon.json.vllmgen-backup-*"):
                backup.unlink()

    def vllmgen(self, *args: str, host: int = 0, timeout: float = COMMAND_S, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
        """`vllmgen ARGS` run inside host ``host``'s namespace (its view of the network)."""
        argv = ["nsenter", f"--net={self.hosts.path(host)}", sys.executable, "-m", "vllmgen", *args]
        # a fixed fingerprint key: no key file made in this machine's ~/.config by the tests
        environment = command_env({"VLLMGEN_FINGERPRINT_KEY": "vllmgen-tests-fingerprint-key", **(env or {})})
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT,
                              check=False)

    def remove(self) -> None:
        for daemon in self.daemons:
            daemon.remove()
        self.hosts.remove()


class SshCluster(Cluster):
    """A control host (namespace 0, no Docker) and node hosts 1..n, each with its dockerd and sshd.

    ``vllmgen`` runs on the control host, reaching nodes only over ssh (``ssh://root@ADDR``)."""

    def __init__(self, hosts: Hosts, daemons: list[Dockerd], bed: SshBed):
        super().__init__(hosts, daemons)
        self.bed = bed

    @property
    def servers(self) -> list[Sshd]:
        return self.bed.servers

    @property
    def node_addresses(self) -> list[str]:
        return self.hosts.addresses[1:]

    def vllmgen(self, *args: str, host: int = 0, timeout: float = COMMAND_S, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess:
        return super().vllmgen(*args, host=host, timeout=timeout, env={**self.bed.env(), **(env or {})})

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`vllmgen ARGS` on the control host, running: stderr line by line for the test to follow."""
        argv = ["nsenter", f"--net={self.hosts.path(0)}", sys.executable, "-m", "vllmgen", *args]
        environment = command_env({**self.bed.env(), **(env or {})})
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                                cwd=ROOT)

    def remove(self) -> None:
        self.bed.remove()
        super().remove()

    def clear(self) -> None:
        for server in self.servers:
            server.start()  # a test may have stopped one
        super().clear()


def make_ssh_cluster(nodes: int, tag: str) -> SshCluster:
    hosts = make_hosts(nodes + 1, tag=tag)
    daemons: list[Dockerd] = []
    cluster = SshCluster(hosts, daemons, make_bed())
    try:
        for index in range(1, nodes + 1):
            daemons.append(Dockerd.start(netns=hosts.path(index)))
            ensure_base_images(daemons[-1].client())
            ensure_nginx_image(daemons[-1].client())  # the gateway of every keyed spec (GATEWAY)
            cluster.bed.add(hosts.path(index), hosts.addresses[index], daemons[-1].endpoint)
    except BaseException:
        cluster.remove()
        raise
    cluster.remember_configs()
    return cluster


def make_cluster(count: int, tag: str, config: dict | None = None) -> Cluster:
    hosts = make_hosts(count, tag=tag)
    daemons: list[Dockerd] = []
    try:
        for index in range(count):
            daemons.append(Dockerd.start(netns=hosts.path(index), config=config))
            ensure_base_images(daemons[-1].client())
            ensure_nginx_image(daemons[-1].client())  # the gateway of every keyed spec (GATEWAY)
    except BaseException:
        Cluster(hosts, daemons).remove()
        raise
    cluster = Cluster(hosts, daemons)
    cluster.remember_configs()
    return cluster


def write_spec(folder: Path, spec: dict) -> Path:
    """Write SPEC and render it into folder/build, as a person would before `apply`."""
    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import write

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    compiled = compile_file(path)
    write(compiled.artifacts, folder / "build" / compiled.plan.name)
    return path


def ok_stderr(result: subprocess.CompletedProcess) -> str:
    """Assert the command exited 0 (showing everything it said if not); return its stderr, where
    vllmgen reports progress."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stderr


def ok_stdout(result: subprocess.CompletedProcess) -> str:
    """As ok_stderr, returning stdout (a command's answer: JSON, a report)."""
    ok_stderr(result)
    return result.stdout


def ok_output(result: subprocess.CompletedProcess) -> str:
    """As ok_stderr, returning stdout and stderr together."""
    ok_stderr(result)
    return result.stdout + result.stderr


def seed_kept_caches(name: str, homes: Iterable[Path], vllm: tuple[str, str]) -> None:
    """vLLM's model-class inspection in the kept engine caches of deployment ``name`` (caches.keep, the default
    host_path under ~) in each of ``homes``, as an earlier start there leaves it: the ssh hosts' homes are
    made per session, so their `vllm serve` would inspect the class in a subprocess of its own on every run
    (tests/infra/cache.py, vllm_cache_root)."""
    from vllmgen.spec.container_layout import CACHE_ENV
    from vllmgen.spec.model import Caches

    venv, model = vllm
    relative = Caches().host_path.removeprefix("~/")
    for home in homes:
        cache.seed_vllm_cache(home / relative / name / CACHE_ENV["VLLM_CACHE_ROOT"], Path(venv) / "bin" / "python",
                              Path(model))


# What every test's CPU vLLM runs with. TORCH_COMPILE_DISABLE: with tensor parallelism a sampling op still goes
# through torch.compile, which needs g++ (absent from the test image) even with --enforce-eager.
# VLLM_CPU_OMP_THREADS_BIND=nobind: the CPU build pins its worker (the process and all its threads) to the first
# core, keeping the other for "the rest"; with tests side by side on a 2-core machine every worker of every
# deployment sat on core 0 (seen with taskset), and the scheduler spreads them better.
# VLLM_ENABLE_V1_MULTIPROCESSING=0: the CPU build runs even a one-rank model in a worker process of its own (it
# forces the mp executor for its OMP setup, which nobind skips); without that third process importing vLLM and
# torch again, a one-rank start takes ~35 CPU-s instead of ~50 and 32 s instead of 45 (measured here, alternating
# runs). The API server still runs its engine core in a process of its own; TP, PP and DP still use mp's workers.
CPU_VLLM_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1",
                "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def cpu_vllm_env_yaml(**extra: str) -> str:
    """CPU_VLLM_ENV (and ``extra``) as a YAML flow mapping, for the specs tests write as YAML text."""
    return json.dumps({**CPU_VLLM_ENV, **extra}, sort_keys=True)


def cpu_vllm_spec(name: str, venv: str, model: str, python_prefix: str, folder: Path, nodes: list[dict], *,
                  port: int, **sections: dict) -> dict:
    """A spec that serves the tiny model with the real CPU vLLM (tests/infra/cache.py) inside the test
    image: the venv and the Python it was made from mounted read-only, dummy weights, eager. Each of
    ``sections`` is merged into the spec's section of that name (runtime, serve, ...) or added."""
    spec: dict = {
        "version": 1,
        "name": name,
        "image": {"base": "vllm/vllm-openai:v0.32.0"},
        "model": {"source": "test/tiny", "host_path": model, "path": "/models/tiny", "served_name": "tiny",
                  "hf_cache": str(folder / "hf-cache")},
        "runtime": {
            "volumes": [{"host": python_prefix, "container": python_prefix, "read_only": True},
                        {"host": venv, "container": venv, "read_only": True}],
            "env": {"PATH": f"{venv}/bin:{PATH}", **CPU_VLLM_ENV},
        },
        "nodes": nodes,
        "serve": {"max_model_len": 256, "enforce_eager": True, "port": port, "extra_args": ["--load-format", "dummy"]},
    }
    for section, values in sections.items():
        spec[section] = {**spec[section], **values} if section in spec and isinstance(spec[section], dict) else values
    return spec


def cpu_vllm_tp_spec(name: str, vllm: tuple[str, str], python: str, folder: Path, nodes: list[dict], *,
                     ipc_host: bool = True, **cluster) -> dict:
    """cpu_vllm_spec with tensor parallelism across ``nodes`` (one rank per node), on the host network."""
    venv, model = vllm
    runtime = {"network": "host", **({} if ipc_host else {"ipc_host": False, "shm_size": "1g"})}
    spec = cpu_vllm_spec(name, venv, model, python, folder, nodes, port=18000, runtime=runtime,
                         serve={"tensor_parallel_size": len(nodes)})
    if cluster:
        spec["cluster"] = cluster
    return spec


def replicas_spec(name: str, vllm: tuple[str, str], python: str, folder: Path, cluster: Cluster, prefix: str,
                  **sections: Any) -> dict:
    """Two CPU vLLM replicas, ``{prefix}-a`` (head) and ``{prefix}-b``, one on each host of ``cluster``, each
    a whole server (cluster.backend: replicas); ``sections`` (router, secrets, gateway, ...) are added."""
    a, b = cluster.hosts.addresses
    nodes = [
        {"name": f"{prefix}-a", "role": "head", "address": a, "gpus": 1, "docker_host": cluster.daemons[0].endpoint},
        {"name": f"{prefix}-b", "role": "worker", "address": b, "gpus": 1, "docker_host": cluster.daemons[1].endpoint},
    ]
    spec = cpu_vllm_tp_spec(name, vllm, python, folder, nodes, ipc_host=False, backend="replicas")
    spec["serve"]["tensor_parallel_size"] = 1
    spec.update(sections)
    return spec


def router_section(python: str, router_venv: str, **settings: Any) -> dict:
    """spec.router running vllm-router from ``router_venv``, mounted with the Python it was made from."""
    return {**settings, "volumes": [{"host": python, "container": python}, {"host": router_venv, "container": router_venv}],
            "extra_env": {"PATH": f"{router_venv}/bin:{PATH}"}}


def apply_args(spec: Path, *extra: str, daemon: Dockerd | None = None) -> list[str]:
    """`vllmgen apply` of a rendered test spec; with ``daemon``, its daemon.json merged (and the daemon
    restarted through dockerd-ctl.sh) when the spec's keys are missing."""
    args = ["apply", str(spec), "--build-dir", str(spec.parent / "build"), "--base-image", TESTBASE, *extra]
    if daemon is not None:
        args += ["--daemon-json", str(daemon.config), "--docker-restart", daemon.restart_command, "--yes"]
    return args


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# a keyed spec gets the front door: nginx from the test rootfs and Debian's binary (no registry here)
GATEWAY = {"image": NGINX_IMAGE}


def single_spec(endpoint: str, python: str, fake: str, folder: Path, *, name: str = "vg-single",
                port: int = 18000) -> dict:
    """One node, the seed's image recipe, an API key, and the stand-in vLLM on PATH."""
    (folder / "model").mkdir(parents=True, exist_ok=True)
    return {
        "version": 1,
        "name": name,
        "image": {"base": "vllm/vllm-openai:v0.32.0",
                  "git_packages": ["git+https://github.com/huggingface/transformers.git@v4.57.1"]},
        "docker": {"registry_mirrors": ["https://mirror.vllmgen.invalid"],
                   "daemon": {"log-driver": "json-file", "log-opts": {"max-size": "10m"}}},
        "model": {"source": "test/tiny", "host_path": str(folder / "model"), "path": "/models/tiny",
                  "served_name": "tiny", "hf_cache": str(folder / "hf-cache")},
        "secrets": {"api_key": {"env": "VG_TEST_API_KEY"}},
        "gateway": GATEWAY,
        "runtime": {
            "network": "host",
            "volumes": [{"host": python, "container": python, "read_only": True},
                        {"host": fake, "container": "/opt/fake", "read_only": True}],
            "env": {"PATH": f"/opt/fake/bin:{PATH}"},
        },
        "nodes": [{"name": "solo", "address": "127.0.0.1", "gpus": 1, "docker_host": endpoint}],
        "serve": {"port": port},
    }


def ray_spec(cluster: Cluster, python: str, ray_venv: str, fake: str, folder: Path, *, name: str = "vg-ray",
             worker_address: str | None = None, gpus: int = 4) -> dict:
    """Two namespace hosts, Ray from the cached venv, `--num-gpus` as the spec says; the stand-in serves."""
    (folder / "model").mkdir(parents=True, exist_ok=True)
    addresses = cluster.hosts.addresses
    return {
        "version": 1,
        "name": name,
        "image": {"base": "vllm/vllm-openai:v0.32.0", "ray_version": "2.60.0"},
        "model": {"source": "test/tiny", "host_path": str(folder / "model"), "path": "/models/tiny",
                  "served_name": "tiny", "hf_cache": str(folder / "hf-cache")},
        "runtime": {
            "network": "host",
            "volumes": [{"host": python, "container": python, "read_only": True},
                        {"host": ray_venv, "container": ray_venv, "read_only": True},
                        {"host": fake, "container": "/opt/fake", "read_only": True}],
            "env": {"PATH": f"/opt/fake/bin:{ray_venv}/bin:{PATH}", "RAY_USAGE_STATS_ENABLED": "0"},
        },
        "cluster": {"backend": "ray", "nic": "vg0", "ray_port": 6379},
        "nodes": [
            {"name": "head", "role": "head", "address": addresses[0], "gpus": gpus,
             "docker_host": cluster.daemons[0].endpoint},
            {"name": "worker-1", "role": "worker", "address": worker_address or addresses[1], "gpus": gpus,
             "docker_host": cluster.daemons[1].endpoint},
        ],
        "serve": {"tensor_parallel_size": 2 * gpus, "port": 18000},
    }
