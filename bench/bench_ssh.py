"""Wall time of `vllmgen apply --all` over ssh against starting the same containers by hand over ssh.

Needs root and the slow tier's cache (tests/infra/setup.sh all): it builds the ssh test bed (a
control namespace and two node namespaces, each node with its own dockerd and sshd), then, from
the control host, on a CPU vLLM mp deployment (support.cpu_vllm_tp_spec) across the two hosts:

  warm-up   apply --all once (builds the image on both nodes, copies the deployment folder), down
  apply     `vllmgen apply --all` from nothing: containers created, followers joined, /health 200,
            /v1/models, one chat completion (verify) -- the whole command, process start to exit
  no-op     `vllmgen apply --all` again on the running deployment: "nothing changed"
  by hand   the same two containers (dockerargs.run_words: the words apply runs) started with
            `docker --host ssh://root@ADDR run ...`, head then worker, then `/health` polled every
            second until 200, then one chat completion -- what a person would script

Rounds alternate apply and by hand, so background load hits both alike. Also reported: the time
until both containers were started (apply: when its `cluster` step began, from its progress
lines; by hand: when the second `docker run` returned), which excludes vLLM's own start-up.

    python bench/bench_ssh.py [--rounds 2] [--json]

`--noop` measures only what issue 19 targets (<= 1.0 s each), on the same bed and a two-host mp
deployment with the runner tests' stand-in vLLM instead of the real one (no start-up to wait for):
after one apply, N rounds of a no-op `apply --all`, `plan --all` and `status --all`, each the whole
command from process start to exit, run from the control host; medians reported.

    python bench/bench_ssh.py --noop [--rounds 7] [--json] [--baseline DIR]

`--baseline DIR` (a checkout of another revision, e.g. `git worktree add DIR REV`) runs that revision's
commands too, alternating with this checkout's in every round, on the same bed and deployment.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from infra import cache  # noqa: E402
from infra.images import write_fake_vllm  # noqa: E402
from runner.support import PATH, SshCluster, apply_args, command_env, make_ssh_cluster, write_spec  # noqa: E402
from runner.support import cpu_vllm_tp_spec as _spec  # noqa: E402

from vllmgen.render.compile import compile_file  # noqa: E402
from vllmgen.targets.docker import dockerargs  # noqa: E402
from vllmgen.runner.executor import RunRequest  # noqa: E402
from vllmgen.plan.words import Anchored  # noqa: E402

NAME = "vg-bench"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


CPU: list[float] = []  # each _run's CPU seconds (user + system of vllmgen and the ssh sessions it waited for)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cluster: SshCluster, *args: str, tree: Path | None = None) -> tuple[float, str]:
    """`vllmgen ARGS` on the control host, from this checkout or from ``tree`` (another revision's)."""
    cpu = _cpu()
    started = time.monotonic()
    if tree is None:
        result = cluster.vllmgen(*args, timeout=900)
    else:  # its own folder first on sys.path (python -m puts the working directory there)
        env = {**command_env(), **cluster.bed.env(), "PYTHONPATH": str(tree),
               "VLLMGEN_FINGERPRINT_KEY": "vllmgen-tests-fingerprint-key"}
        result = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", sys.executable, "-m", "vllmgen", *args],
                                capture_output=True, text=True, timeout=900, env=env, cwd=tree, check=False)
    took = time.monotonic() - started
    CPU.append(_cpu() - cpu)
    if result.returncode != 0:
        raise SystemExit(f"vllmgen {' '.join(args[:1])} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return took, result.stderr


def _steps(log: str) -> dict[str, float]:
    """When each step began, from apply's progress lines: '[  12.3s] == cluster: ...'."""
    return {m.group(2): float(m.group(1)) for m in re.finditer(r"^\[\s*([0-9.]+)s\] == ([a-z-]+):", log, re.M)}


def _by_hand(cluster: SshCluster, spec: Path) -> tuple[float, float]:
    """Start the plan's containers with the docker CLI over ssh, then wait for /health and one chat."""
    plan = compile_file(spec).plan
    env = {**__import__("os").environ, **cluster.bed.env()}
    started = time.monotonic()
    for node, server in zip(plan.nodes, cluster.servers, strict=True):
        deploy = str(server.home / ".vllmgen" / "deployments" / plan.name)
        words = dockerargs.run_words(RunRequest(node.container, deploy, {}, gpus=False))
        argv = [w.resolve(str(server.home), deploy) if isinstance(w, Anchored) else w for w in words]
        argv[1:1] = ["--host", server.endpoint]
        subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *argv], env=env, check=True,
                       capture_output=True, timeout=120)
    containers_started = time.monotonic() - started
    url = f"http://{plan.nodes[0].address}:{plan.endpoint.port}"
    probe = [sys.executable, "-c", (
        "import json, sys, time, urllib.request as u\n"
        "o = u.build_opener(u.ProxyHandler({}))\n"
        "while True:\n"
        "    try:\n"
        f"        if o.open('{url}/health', timeout=5).status == 200: break\n"
        "    except OSError: pass\n"
        "    time.sleep(1)\n"
        f"r = u.Request('{url}/v1/chat/completions', method='POST', headers={{'Content-Type': 'application/json'}},"
        " data=json.dumps({'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Say hello.'}],"
        " 'max_tokens': 8}).encode())\n"
        "assert o.open(r, timeout=120).status == 200\n")]
    subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *probe], check=True, timeout=600)
    return time.monotonic() - started, containers_started


def _noop(rounds: int, baseline: Path | None) -> dict[str, list[float]]:
    """No-op apply, plan and status of a running two-host deployment (stand-in vLLM), ``rounds`` each;
    with ``baseline``, that checkout's commands too, alternating with this one's in every round."""
    python = cache.python_prefix()
    cluster = make_ssh_cluster(2, "n")
    folder = Path(tempfile.mkdtemp(prefix="vgbench-"))
    kinds = ("noop_apply", "plan", "status")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    if baseline is not None:
        results |= {f"{kind} (baseline)": [] for kind in kinds}
    # CPU seconds beside the wall time: on a machine shared with other work, wall time is mostly the neighbours'
    results |= {f"{kind} cpu": [] for kind in list(results)}
    try:
        fake = write_fake_vllm(folder / "fake", python / "bin" / "python3")
        fake.chmod(0o755)
        nodes = [{"name": f"node-{i}", "role": "head" if i == 0 else "worker", "address": s.address, "gpus": 1,
                  "docker_host": s.endpoint} for i, s in enumerate(cluster.servers)]
        data = _spec(NAME, (str(fake), str(folder)), str(python), folder, nodes, ipc_host=False, backend="mp",
                     nic="vg0")
        data["runtime"]["volumes"][1] = {"host": str(fake), "container": "/opt/fake", "read_only": True}
        data["runtime"]["env"]["PATH"] = f"/opt/fake/bin:{PATH}"
        spec = write_spec(folder, data)
        apply = apply_args(spec, "--all", "--no-gpus", "--timeout", "120")
        plan = ("plan", str(spec), "--all", *apply[2:6], "--no-gpus")
        status = ("status", str(spec), "--all")
        commands = {None: (apply, plan)}
        if baseline is not None:  # its own build folder: apply refuses one rendered by another compiler
            built = folder / "build-baseline"
            _run(cluster, "render", str(spec), "-o", str(built), tree=baseline)
            commands[baseline] = tuple([str(built) if word == str(folder / "build") else word for word in argv]
                                       for argv in (apply, plan))
        warm, _ = _run(cluster, *apply)
        print(f"first apply (image build, folder copy): {warm:.1f}s", file=sys.stderr)
        for round_ in range(rounds):
            for tree, suffix in ((None, ""), *(((baseline, " (baseline)"),) if baseline else ())):
                tree_apply, tree_plan = commands[tree]
                took, log = _run(cluster, *tree_apply, tree=tree)
                assert "nothing changed" in log, log[-2000:]
                results["noop_apply" + suffix].append(took)
                results["noop_apply" + suffix + " cpu"].append(CPU[-1])
                for kind, argv in (("plan", tree_plan), ("status", status)):
                    results[kind + suffix].append(_run(cluster, *argv, tree=tree)[0])
                    results[kind + suffix + " cpu"].append(CPU[-1])
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), file=sys.stderr)
        _run(cluster, "down", str(spec), "--all")
    finally:
        cluster.remove()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--noop", action="store_true", help="only no-op apply, plan and status (stand-in vLLM)")
    parser.add_argument("--baseline", type=Path, help="with --noop: a checkout of another revision, run alternately")
    args = parser.parse_args()
    if args.noop:
        found = _noop(args.rounds, args.baseline.resolve() if args.baseline else None)
        summary = {key: {"runs": [round(v, 2) for v in values], "median": round(statistics.median(values), 2)}
                   for key, values in found.items()}
        if args.json:
            print(json.dumps(summary, indent=2))
        for key, value in summary.items():
            target = "" if key.endswith(" cpu") else f"  target <= 1.0 s: {'PASS' if value['median'] <= 1.0 else 'MISS'}"
            print(f"{key:12} median {value['median']:5.2f}s  runs {value['runs']}{target}",
                  file=sys.stderr if args.json else sys.stdout)
        return 0 if all(v["median"] <= 1.0 for k, v in summary.items() if "baseline" not in k and "cpu" not in k) else 1

    venv = cache.vllm_venv()
    model = cache.tiny_model(venv / "bin" / "python")
    python = str(cache.python_prefix())
    cluster = make_ssh_cluster(2, "b")
    folder = Path(tempfile.mkdtemp(prefix="vgbench-"))
    results: dict[str, list[float]] = {"apply": [], "noop": [], "by_hand": [], "apply_containers_started": [],
                                       "by_hand_containers_started": []}
    steps: list[dict[str, float]] = []
    try:
        nodes = [{"name": f"node-{i}", "role": "head" if i == 0 else "worker", "address": s.address, "gpus": 1,
                  "docker_host": s.endpoint} for i, s in enumerate(cluster.servers)]
        spec = write_spec(folder, _spec(NAME, (str(venv), str(model)), python, folder, nodes, ipc_host=False,
                                        backend="mp", nic="vg0"))
        apply = apply_args(spec, "--all", "--no-gpus", "--timeout", "600")
        down = ("down", str(spec), "--all")
        warm, _ = _run(cluster, *apply)
        _run(cluster, *down)
        print(f"warm-up apply (image build, folder copy): {warm:.1f}s", file=sys.stderr)
        for round_ in range(args.rounds):
            took, log = _run(cluster, *apply)
            results["apply"].append(took)
            steps.append(_steps(log))
            results["apply_containers_started"].append(steps[-1]["cluster"])
            noop, log = _run(cluster, *apply)
            assert "nothing changed" in log, log[-2000:]
            results["noop"].append(noop)
            _run(cluster, *down)
            hand, hand_started = _by_hand(cluster, spec)
            results["by_hand"].append(hand)
            results["by_hand_containers_started"].append(hand_started)
            _run(cluster, *down)
            print(f"round {round_ + 1}: apply {took:.1f}s, no-op {noop:.1f}s, by hand {hand:.1f}s", file=sys.stderr)
    finally:
        cluster.remove()
    summary = {key: {"runs": [round(v, 2) for v in values], "median": round(statistics.median(values), 2)}
               for key, values in results.items()}
    summary["apply_steps_started_at"] = steps
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in results:
            print(f"{key:26} median {summary[key]['median']:6.1f}s  runs {summary[key]['runs']}")
        print(f"apply step start times (s): {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
