"""Start-up costs of `vllmgen apply` on the CPU vLLM, one namespace host with its own dockerd, side by side.

  apply      `vllmgen apply --all` of the single-node CPU spec (eager, as the slow tier's specs),
             from nothing to a verified chat completion: the whole command, process start to exit
  by hand    the same container (dockerargs.run_words: the words apply runs) started with `docker run`,
             `/health` polled every second until 200, then one chat completion: what a person scripts
  no-op      `vllmgen apply --all` again on the running deployment: "nothing changed"
  cold/warm  the same spec without --enforce-eager (torch.compile runs; the image gets g++, copied from
             this host's packages: tests/infra/images.py), kept engine caches in a fresh folder: apply,
             down, apply again; the seconds from `docker run` to the first /health 200 (apply's own
             startup report), and vLLM's log from its first line to "listening"

Rounds alternate apply and by hand, so background load hits both alike. With --stand-in the container runs
the runner tests' stand-in vLLM (tests/runner/fake_vllm.py: it serves and logs Uvicorn's ready line within
~0.1 s of its start), so a round's difference is the two ways' own time, not vLLM's start-up spread; with
--baseline DIR another checkout's apply (a `git archive` of it, rendering its own build folder) runs in the
same rounds.

    python bench/bench_startup.py [--rounds 2] [--skip-compile] [--json]
    python bench/bench_startup.py --stand-in --rounds 9 --poll 0.05 --skip-compile [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from infra import cache  # noqa: E402
from infra.images import ensure_compiler_image  # noqa: E402
from runner.support import Cluster, apply_args, command_env, make_cluster, write_spec  # noqa: E402
from runner.support import cpu_vllm_tp_spec as _spec  # noqa: E402

from vllmgen.render.compile import compile_file  # noqa: E402
from vllmgen.targets.docker import dockerargs  # noqa: E402
from vllmgen.runner.executor import RunRequest  # noqa: E402
from vllmgen.plan.words import Anchored  # noqa: E402


def _run(cluster: Cluster, *args: str, code: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """`vllmgen ARGS` in the host's namespace, timed from process start to exit; ``code``: another checkout's."""
    started = time.monotonic()
    if code is None:
        result = cluster.vllmgen(*args, timeout=900)
    else:  # as Cluster.vllmgen, from the other checkout (`-m` puts the working folder first on the path)
        env = command_env({"VLLMGEN_FINGERPRINT_KEY": "vllmgen-tests-fingerprint-key", "PYTHONPATH": str(code)})
        result = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", sys.executable, "-m", "vllmgen", *args],
                                capture_output=True, text=True, timeout=900, env=env, cwd=code, check=False)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"vllmgen {args[0]} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return took, result


def _by_hand(cluster: Cluster, spec: Path, poll: float = 1.0) -> tuple[float, dict]:
    """`docker run` of the plan's container, then /health polled each ``poll`` seconds, then one chat completion;
    and when `docker run` returned and /health first answered 200, in seconds since the start."""
    plan = compile_file(spec).plan
    node = plan.nodes[0]
    deploy = str((spec.parent / "build" / plan.name).resolve())
    home = os.path.expanduser("~")
    started = time.monotonic()
    words = dockerargs.run_words(RunRequest(node.container, deploy, {}, gpus=False))
    argv = [w.resolve(home, deploy) if isinstance(w, Anchored) else w for w in words]
    argv[1:1] = ["--host", cluster.daemons[0].endpoint]
    subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *argv], check=True, capture_output=True, timeout=120)
    ran = time.monotonic() - started
    url = f"http://127.0.0.1:{plan.endpoint.port}"
    probe = [sys.executable, "-c", (
        "import json, time, urllib.request as u\n"
        "o = u.build_opener(u.ProxyHandler({}))\n"
        "deadline = time.monotonic() + 600\n"
        "while time.monotonic() < deadline:\n"
        "    try:\n"
        f"        if o.open('{url}/health', timeout=5).status == 200: break\n"
        "    except OSError: pass\n"
        f"    time.sleep({poll})\n"
        "else: raise SystemExit('no /health 200 within 600 s')\n"
        "print(time.monotonic(), flush=True)\n"
        f"r = u.Request('{url}/v1/chat/completions', method='POST', headers={{'Content-Type': 'application/json'}},"
        " data=json.dumps({'model': 'tiny', 'messages': [{'role': 'user', 'content': 'Say hello.'}],"
        " 'max_tokens': 8}).encode())\n"
        "assert o.open(r, timeout=120).status == 200\n")]
    out = subprocess.run(["nsenter", f"--net={cluster.hosts.path(0)}", *probe], check=True, timeout=600,
                         capture_output=True, text=True)
    healthy = float(out.stdout.split()[0]) - started  # CLOCK_MONOTONIC: one clock for every process here
    return time.monotonic() - started, {"container": round(ran, 2), "healthy": round(healthy, 2)}


def _marks(stderr: str, took: float) -> dict:
    """From apply's progress lines (seconds since its progress began, after its imports and the spec's
    compile): the container started, /health 200; and the whole process, for the time before the first line."""
    stamps = {}
    for line in stderr.splitlines():
        if line.startswith("[") and "]" in line:
            at = float(line[1:line.index("s]")])
            if "head: created" in line or "head: replaced" in line:
                stamps["container"] = at
            elif "(/health): ok after" in line:
                stamps["healthy"] = at
                stamps["by_log_line"] = float("asked when its log said it serves" in line)
            stamps["last"] = at
    return {key: round(value, 2) for key, value in stamps.items()} | {"process": round(took, 2)}


def _startup(result: subprocess.CompletedProcess) -> dict:
    entry = json.loads(result.stdout)["startup"][0]
    rows = {row["name"]: row["seconds"] for row in entry["phases"]}
    return {"first_healthy": rows.get("first healthy answer"), "log_ready": entry["ready_seconds"],
            "compile": rows.get("compile"), "engine_init": rows.get("engine init"),
            "compile_note": next(r["note"] for r in entry["phases"] if r["name"] == "compile")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="Also write the figures so far to this file after each run.")
    parser.add_argument("--stand-in", action="store_true",
                        help="The runner tests' stand-in vLLM instead of the CPU vLLM (no compile runs).")
    parser.add_argument("--poll", type=float, default=1.0, help="By hand: seconds between /health polls.")
    parser.add_argument("--baseline", type=Path, help="Another checkout's vllmgen, run in the same rounds.")
    args = parser.parse_args()

    python = str(cache.python_prefix())
    folder = Path(tempfile.mkdtemp(prefix="vgstart-"))
    if args.stand_in:
        venv = folder / "stand-in"  # mounted as the spec's venv: bin/vllm is the stand-in
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "vllm").write_text(f"#!{python}/bin/python3\n" + (ROOT / "tests/runner/fake_vllm.py").read_text())
        for path in (folder, venv, venv / "bin", venv / "bin" / "vllm"):
            path.chmod(0o755)
        model = folder / "model"
        model.mkdir()
        args.skip_compile = True
    else:
        venv = cache.vllm_venv()
        model = cache.tiny_model(venv / "bin" / "python")
    cluster = make_cluster(1, "t")
    daemon = cluster.daemons[0]
    results: dict[str, list[float]] = {"apply": [], "by_hand": [], "noop": [], **({"baseline": []} if args.baseline else {})}
    marks: list[dict] = []
    compile_runs: dict[str, dict] = {}
    try:
        nodes = [{"name": "solo", "address": "127.0.0.1", "gpus": 1, "docker_host": daemon.endpoint}]
        # a private /dev/shm per container (--shm-size, no --ipc host): with the machine's, other tests' clean-ups
        # of /dev/shm removed this vLLM's semaphores mid-start here (SemLock._rebuild: FileNotFoundError)
        data = _spec("vg-start", (str(venv), str(model)), python, folder, nodes, ipc_host=False)
        data["caches"] = {"host_path": str(folder / "caches-eager")}
        if args.stand_in:
            data["runtime"]["env"]["FAKE_VLLM_RECORD"] = "/tmp/stand-in.json"  # noqa: S108 - inside the container
        spec = write_spec(folder / "eager", data)
        apply = [*apply_args(spec, "--all", "--no-gpus", "--timeout", "600", daemon=daemon), "--output", "json"]
        down = ("down", str(spec), "--all")
        base_apply: list[str] = []
        if args.baseline:  # its own rendering (the manifest names its compiler), beside ours
            base_build = folder / "eager" / "build-baseline"
            _run(cluster, "render", str(spec), "-o", str(base_build), code=args.baseline)
            base_apply = [base_build.as_posix() if a == str(spec.parent / "build") else a for a in apply]
        if args.rounds:
            warm, _ = _run(cluster, *apply)
            _run(cluster, *down)
            print(f"warm-up apply (image build): {warm:.1f}s", file=sys.stderr)
        for round_ in range(args.rounds):
            took, applied = _run(cluster, *apply)
            noop, result = _run(cluster, *apply)
            assert "nothing changed" in result.stderr, result.stderr[-2000:]
            _run(cluster, *down)
            hand, hand_marks = _by_hand(cluster, spec, args.poll)
            _run(cluster, *down)
            results["apply"].append(took)
            results["noop"].append(noop)
            results["by_hand"].append(hand)
            marks.append({"apply": _marks(applied.stderr, took), "by_hand": hand_marks,
                          "startup": json.loads(applied.stdout)["startup"]})
            if args.baseline:
                base, based = _run(cluster, *base_apply, code=args.baseline)
                _run(cluster, *down)
                results["baseline"].append(base)
                marks[-1]["baseline"] = _marks(based.stderr, base)
            print(f"round {round_ + 1}: apply {took:.2f}s, no-op {noop:.2f}s, by hand {hand:.2f}s"
                  + (f", baseline {results['baseline'][-1]:.2f}s " if args.baseline else " ") +
                  f"{marks[-1]['apply']} {hand_marks}", file=sys.stderr)
            if args.save:
                args.save.write_text(json.dumps({"rounds": results, "marks": marks}, indent=2))
        if not args.skip_compile:
            base = ensure_compiler_image(daemon.client())
            data["serve"]["enforce_eager"] = False
            data["runtime"]["env"].pop("TORCH_COMPILE_DISABLE")
            data["caches"] = {"host_path": str(folder / "caches-compile")}
            spec = write_spec(folder / "compile", data)
            argv = [base if a == apply_args(spec)[5] else a
                    for a in apply_args(spec, "--all", "--no-gpus", "--timeout", "600", daemon=daemon)]
            for run in ("cold", "warm"):
                took, result = _run(cluster, *argv, "--output", "json")
                compile_runs[run] = {"apply": round(took, 2), **_startup(result)}
                _run(cluster, "down", str(spec), "--all")
                print(f"{run}: {compile_runs[run]}", file=sys.stderr)
                if args.save:
                    args.save.write_text(json.dumps({"rounds": results, "compile": compile_runs}, indent=2))
    finally:
        cluster.remove()
    summary: dict = {key: {"runs": [round(v, 2) for v in values], "median": round(statistics.median(values), 2)}
                     for key, values in results.items() if values}
    if results["apply"]:
        added = summary["apply"]["median"] - summary["by_hand"]["median"]
        summary["apply_added"] = {"seconds": round(added, 2),
                                  "percent": round(100 * added / summary["by_hand"]["median"], 1)}
    own: dict[str, list[float]] = {}
    for round_marks in marks:  # the whole process less the span vLLM's start decides (container start -> /health 200)
        for key in ("apply", "by_hand", "baseline"):
            m = round_marks.get(key)
            if m and "healthy" in m and "container" in m:
                whole = m["process"] if "process" in m else results["by_hand"][marks.index(round_marks)]
                own.setdefault(key, []).append(round(whole - (m["healthy"] - m["container"]), 2))
    summary["own"] = {key: {"runs": values, "median": round(statistics.median(values), 2)} for key, values in own.items()}
    summary["marks"] = marks
    summary["compile"] = compile_runs
    if "cold" in compile_runs and compile_runs["cold"]["first_healthy"]:
        cold, warm_ = compile_runs["cold"]["first_healthy"], compile_runs["warm"]["first_healthy"]
        summary["compile"]["warm_less_percent"] = round(100 * (cold - warm_) / cold, 1)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in summary:
            if key in results:
                print(f"{key:10} median {summary[key]['median']:6.1f}s  runs {summary[key]['runs']}")
        for key, figures in summary["own"].items():
            print(f"own time, {key:8} median {figures['median']:5.2f}s  runs {figures['runs']}")
        if "apply_added" in summary:
            print(f"apply adds {summary['apply_added']['seconds']:.1f}s ({summary['apply_added']['percent']:.1f}%) "
                  "over starting the container by hand")
        for run, figures in compile_runs.items():
            print(f"{run}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
