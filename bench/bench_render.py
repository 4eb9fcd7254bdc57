#!/usr/bin/env python3
"""Benchmark: how fast `vllmgen render` is, how it scales, and what it imports.

Not a test: it measures this machine and prints a table (``--json`` for machine output).

    python bench/bench_render.py            # full run (about a minute or two)
    python bench/bench_render.py --quick    # fewer repeats
    python bench/bench_render.py --json     # one JSON document on stdout

What it measures (targets from issue 6, each marked PASS or MISS):

1. cold ``vllmgen render specs/seed-two-node-ray.yaml -o <tmp>``, whole process, median of N,
   as a ratio to the floor ``python -c "import pydantic, jinja2, ruamel.yaml, click"``  (<= 2.0)
2. cold ``vllmgen render ... --check`` against an up-to-date tree, likewise            (<= 2.0)
3. in-process render of generated specs of 1, 10, 100 and 1,000 nodes: time per stage
   (load -> validate -> plan -> render, then write), peak Python memory (tracemalloc) and the
   growth factor between sizes. The target is on load..render, the compiler's own work
   (1,000 nodes <= 1 s; growth no worse than linear: every 10x step in nodes costs at most
   10x, with 20% for noise). Writing 3,000 files is shown beside it: it is the disk's time
   more than vllmgen's (--write-dir puts it on another file system, e.g. /dev/shm)
4. ``python -X importtime -c "import vllmgen.cli.commands"``: top five by cumulative time (and the same
   for the modules the render path imports lazily)
5. the docker SDK, vllmgen.runner and network modules are NOT imported by validate, render
   or render --check (checked in sys.modules of a process that ran all three)

Every timed run is a fresh interpreter started with this script's Python; the floor and the
commands are run interleaved, round by round, so background load hits them alike.
Only the standard library is used here; vllmgen is imported only in worker subprocesses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "specs" / "seed-two-node-ray.yaml"
FLOOR_CODE = "import pydantic, jinja2, ruamel.yaml, click"
SIZES = (1, 10, 100, 1000)

RATIO_TARGET = 2.0
UNCHANGED_TARGET = 0.5  # render --check of an unchanged tree, decided from the manifest (issue 12)
BIG_TARGET_S = 1.0
GROWTH_SLACK = 1.2  # a 10x step in nodes may cost at most 10 x 1.2 (timer noise), i.e. ~linear

# Modules that must never be imported by validate/render/check, whatever else imported them.
FORBIDDEN = (
    "docker", "vllmgen.runner", "vllmgen.doctor", "requests", "urllib3", "http.client",
    "urllib.request", "httpx", "aiohttp", "paramiko", "websocket", "websockets", "socketserver",
    "http.server", "ftplib", "smtplib", "xmlrpc.client",
)
# Network-capable modules that are tolerated only if the floor (the four libraries alone)
# already imports them: jinja2 imports asyncio, which imports socket, ssl and selectors.
NETWORKISH = ("socket", "ssl", "selectors", "asyncio", "_socket", "_ssl")


# --- machine ---------------------------------------------------------------------------------


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- running processes -----------------------------------------------------------------------


def vllmgen_command() -> tuple[list[str], str]:
    """How to start vllmgen like a user does, without a pyenv/asdf shim in front of it."""
    script = Path(sys.executable).with_name("vllmgen")
    if script.is_file():
        # the console script, run by the same interpreter as the floor (no shim's own start-up)
        return [sys.executable, str(script)], f"{Path(sys.executable).name} {script}"
    # what the console script does, for an interpreter that has none (a venv with vllmgen on its path)
    code = "import sys; from vllmgen.cli.entry import main; sys.argv[0] = 'vllmgen'; sys.exit(main())"
    return [sys.executable, "-c", code], f"{Path(sys.executable).name} -c 'vllmgen.cli.entry:main'"


# Every timed process runs with bytecode caches, as after any install: PYTHONDONTWRITEBYTECODE (set in
# some shells) would make vllmgen recompile its ~35 modules from source on every run, while the floor's
# libraries, compiled by pip, would not be affected: a comparison of unlike things.
BASE_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
CPU_SECONDS: list[float] = []  # user + system seconds of each timed process, in the order they ran


def timed_run(argv: list[str], *, cwd: Path = ROOT, expect: int = 0, env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one whole process (its CPU seconds go to CPU_SECONDS)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**BASE_ENV, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr and proc.stderr.close()
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode} (expected {expect}):\n{stderr}")
    return elapsed, usage.ru_maxrss


def worker(mode: str, *args: str) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, *args]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"worker {mode} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _summary(samples: list[float]) -> dict:
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "n": len(samples),
    }


# --- 1 and 2: cold whole-process runs --------------------------------------------------------


def bench_cold(repeats: int, tmp: Path) -> dict:
    base, shown = vllmgen_command()
    out = tmp / "cold-build"
    render = [*base, "render", str(SEED), "-o", str(out)]
    check = [*base, "render", str(SEED), "-o", str(out), "--check"]
    floor = [sys.executable, "-c", FLOOR_CODE]
    full = {"VLLMGEN_NO_FASTCHECK": "1"}  # the whole pipeline, as on a changed tree
    timed_run(render)  # warm the page cache and leave an up-to-date tree for --check
    timed_run(check)
    timed_run(floor)
    runs: dict[str, list[tuple[float, int]]] = {"floor": [], "render": [], "check": [], "check_unchanged": []}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so background load hits all alike
        for name, argv, env in (("floor", floor, None), ("render", render, full), ("check", check, full),
                                ("check_unchanged", check, None)):
            runs[name].append(timed_run(argv, env=env))
            cpu[name].append(CPU_SECONDS[-1])
    result = {"command": shown, "repeats": repeats,
              "bytecode": "PYTHONDONTWRITEBYTECODE unset for the runs" if "PYTHONDONTWRITEBYTECODE" in os.environ
              else "as the environment has it (bytecode caches written and used)"}
    for name, samples in runs.items():
        result[name] = _summary([s for s, _ in samples]) | {
            "max_rss_mib": round(statistics.median(r for _, r in samples) / 1024, 1),
            "cpu_median_s": statistics.median(cpu[name]),
        }
    floor_median = result["floor"]["median_s"]
    for name, target in (("render", RATIO_TARGET), ("check", RATIO_TARGET), ("check_unchanged", UNCHANGED_TARGET)):
        ratio = result[name]["median_s"] / floor_median
        # CPU seconds move less than wall time under load: shown beside it, the target is on wall time
        result[name]["cpu_ratio"] = result[name]["cpu_median_s"] / result["floor"]["cpu_median_s"]
        result[name]["ratio"] = ratio
        result[name]["ratio_of_minimums"] = result[name]["min_s"] / result["floor"]["min_s"]
        result[name]["target"] = target
        result[name]["pass"] = ratio <= target
    return result


# --- 3: scale --------------------------------------------------------------------------------


def generated_spec(nodes: int, backend: str = "ray") -> str:
    """A valid spec of ``nodes`` hosts, written the way a person would (block style).

    Multi-node specs need a backend, one head, the same GPU count on every node and
    tensor x pipeline = all GPUs: 8 GPUs a node, TP 8 inside a node, one pipeline stage per node.
    """
    lines = [
        "# generated by bench/bench_render.py",
        "version: 1",
        f"name: bench-{nodes}",
        "image:",
        "  base: vllm/vllm-openai:v0.32.0",
        "model:",
        "  source: Qwen/Qwen3-8B",
        "  served_name: qwen3-8b",
        "secrets:",
        "  hf_token: {env: HF_TOKEN}",
        "runtime:",
        "  network: host",
        "cluster:",
        f"  backend: {backend}",
        "  nic: eth0",
        "  ib_hcas: [mlx5_0]",
        "nodes:",
    ]
    for i in range(nodes):
        lines += [
            f"  - name: node-{i}",
            f"    address: 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            f"    role: {'head' if i == 0 else 'worker'}",
            "    gpus: 8",
        ]
    lines += [
        "serve:",
        "  tensor_parallel_size: 8",
        f"  pipeline_parallel_size: {nodes}",
        "  gpu_memory_utilization: 0.9",
        "  port: 8000",
    ]
    return "\n".join(lines) + "\n"


STAGES = ("load", "validate", "plan", "render", "write")


def bench_scale(sizes: tuple[int, ...], repeats: int, tmp: Path, backend: str, write_dir: Path) -> dict:
    rows = []
    for nodes in sizes:
        spec = tmp / f"bench-{nodes}.yaml"
        spec.write_text(generated_spec(nodes, backend), encoding="utf-8")
        timing = worker("scale", str(spec), str(write_dir / f"out-{nodes}"), str(repeats))
        memory = worker("memory", str(spec), str(write_dir / f"mem-{nodes}"))
        rows.append({"nodes": nodes, "spec_lines": spec.read_text().count("\n"), **timing, **memory})
    for previous, row in itertools.pairwise(rows):
        step = row["nodes"] / previous["nodes"]
        row["time_growth"] = row["total_s"] / previous["total_s"]
        row["memory_growth"] = row["peak_py_mib"] / previous["peak_py_mib"]
        row["size_growth"] = step
    biggest = rows[-1]
    linear = all(row["time_growth"] <= row["size_growth"] * GROWTH_SLACK for row in rows[1:])
    memory_linear = all(row["memory_growth"] <= row["size_growth"] * GROWTH_SLACK for row in rows[1:])
    return {
        "backend": backend,
        "repeats": repeats,
        "write_dir": str(write_dir),
        "yaml_parser": rows[0]["yaml_parser"],
        "rows": rows,
        "largest": {"nodes": biggest["nodes"], "total_s": biggest["total_s"],
                    "pass": biggest["total_s"] <= BIG_TARGET_S} if biggest["nodes"] >= 1000 else None,
        "growth_linear": {"pass": linear, "memory_pass": memory_linear},
    }


def _worker_scale(spec: str, out: str, repeats: str) -> dict:
    """Timed in one warm process: imports are done before the clock starts."""
    from vllmgen.spec import load
    from vllmgen.spec.load import load_file
    from vllmgen.plan.plan import build_plan
    from vllmgen.render.artifacts import render
    from vllmgen.spec.validate import validate
    from vllmgen.render.write import write

    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total", "with_write")}
    first: dict[str, float] = {}
    files = 0
    for index in range(int(repeats) + 1):
        target = Path(out) / f"run-{index}" / "deployment"
        clock = time.perf_counter
        t0 = clock()
        loaded = load_file(spec)
        t1 = clock()
        valid = validate(loaded)
        t2 = clock()
        plan = build_plan(valid.spec, Path(spec).name)
        t3 = clock()
        artifacts = render(plan)
        t4 = clock()
        write(artifacts, target)
        t5 = clock()
        files = len(artifacts)
        times = dict(zip((*STAGES, "total", "with_write"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t4 - t0, t5 - t0)))
        if index == 0:
            first = times  # first call in the process: templates are compiled here
        else:
            for stage, value in times.items():
                samples[stage].append(value)
        shutil.rmtree(target.parent)
    medians = {f"{stage}_s": statistics.median(values) for stage, values in samples.items()}
    parser = "libyaml" if getattr(load, "CParser", None) is not None else "pure Python"
    return {"files": files, "first_total_s": first["total"], "yaml_parser": parser, **medians}


def _worker_memory(spec: str, out: str) -> dict:
    """Peak memory of one render (load -> write) in a fresh process: tracemalloc and RSS."""
    import resource
    import tracemalloc

    from vllmgen.render.compile import compile_file
    from vllmgen.render.write import write

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    compiled = compile_file(spec)
    write(compiled.artifacts, Path(out) / compiled.plan.name)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_py_mib": peak / 2**20,
        "max_rss_mib": rss_after / 1024,
        "rss_growth_mib": (rss_after - rss_before) / 1024,
    }


# --- 4: import time --------------------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def importtime(code: str, runs: int) -> list[dict]:
    """Modules imported by ``code`` (interpreter start-up excluded), median over ``runs``."""
    seen: dict[str, dict] = {}
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        rows = []
        for line in result.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                self_us, cumulative_us, indent, name = match.groups()
                rows.append((name, int(self_us), int(cumulative_us), (len(indent) - 1) // 2))
        # start-up imports (site and what .pth files pull in) come first and end with 'site'
        last_site = max((i for i, row in enumerate(rows) if row[0] == "site" and row[3] == 0), default=-1)
        for name, self_us, cumulative_us, level in rows[last_site + 1:]:
            entry = seen.setdefault(name, {"module": name, "level": level, "self": [], "cumulative": []})
            entry["self"].append(self_us)
            entry["cumulative"].append(cumulative_us)
    table = [
        {
            "module": entry["module"],
            "level": entry["level"],
            "self_ms": statistics.median(entry["self"]) / 1000,
            "cumulative_ms": statistics.median(entry["cumulative"]) / 1000,
        }
        for entry in seen.values()
    ]
    table.sort(key=lambda row: -row["cumulative_ms"])
    return table


def bench_imports(runs: int) -> dict:
    cli = importtime("import vllmgen.cli.commands", runs)
    render_path = importtime("import vllmgen.cli.commands, vllmgen.render.compile, vllmgen.render.write", runs)
    floor = importtime(FLOOR_CODE, runs)
    floor_total = sum(row["cumulative_ms"] for row in floor if row["level"] == 0)
    return {
        "runs": runs,
        "cli_top5": cli[:5],
        "render_path_top5": [row for row in render_path if row["level"] > 0 or row["module"] != "vllmgen.cli.commands"][:5],
        "render_path_top5_self": sorted(render_path, key=lambda row: -row["self_ms"])[:5],
        "cli_total_ms": sum(row["cumulative_ms"] for row in cli if row["level"] == 0),
        "render_path_total_ms": sum(row["cumulative_ms"] for row in render_path if row["level"] == 0),
        "floor_total_ms": floor_total,
    }


# --- 5: import boundaries --------------------------------------------------------------------


def _worker_modules(spec: str, out: str) -> dict:
    """Run validate, render and render --check through the CLI, then report sys.modules."""
    from vllmgen.cli.commands import main

    codes = {}
    for name, argv in {
        "validate": ["validate", spec],
        "render": ["render", spec, "-o", out],
        "check": ["render", spec, "-o", out, "--check"],
    }.items():
        sys.argv = ["vllmgen", *argv]
        try:
            main()
            codes[name] = 0
        except SystemExit as exc:
            codes[name] = exc.code if isinstance(exc.code, int) else 1
    return {"exit_codes": codes, "modules": sorted(sys.modules)}


def _worker_floor_modules() -> dict:
    exec(FLOOR_CODE)  # noqa: S102 - the floor's four imports, nothing else
    return {"modules": sorted(sys.modules)}


def bench_boundaries(tmp: Path) -> dict:
    ran = worker("modules", str(SEED), str(tmp / "modules-build"))
    floor = set(worker("floor-modules")["modules"])
    modules = set(ran["modules"])

    def present(name: str) -> list[str]:
        return sorted(m for m in modules if m == name or m.startswith(name + "."))

    forbidden = {name: present(name) for name in FORBIDDEN if present(name)}
    networkish_extra = sorted(m for m in NETWORKISH if m in modules and m not in floor)
    networkish_floor = sorted(m for m in NETWORKISH if m in modules and m in floor)
    ok_codes = all(code == 0 for code in ran["exit_codes"].values())
    return {
        "exit_codes": ran["exit_codes"],
        "forbidden_imported": forbidden,
        "network_beyond_floor": networkish_extra,
        "network_in_floor_too": networkish_floor,
        "modules_total": len(modules),
        "modules_beyond_floor": len(modules - floor),
        "vllmgen_modules": sorted(m for m in modules if m.split(".")[0] == "vllmgen"),
        "pass": ok_codes and not forbidden and not networkish_extra,
    }


# --- report ----------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(report: dict) -> None:
    m = report["machine"]
    print(f"vllmgen render benchmark  ({'quick' if report['quick'] else 'full'} run)")
    print(f"machine: {m['nproc']} CPU(s), {m['cpu']}, {m['implementation']} {m['python']}, {m['platform']}")
    print(f"load average: start {m['loadavg_start']}, end {m.get('loadavg_end')}")
    print()

    if "cold" in report:
        _print_cold(report["cold"])
    if "scale" in report:
        _print_scale(report["scale"])
    if "imports" in report:
        _print_imports(report["imports"])
    if "boundaries" in report:
        _print_boundaries(report["boundaries"])
    print("summary: " + ", ".join(f"{name} {_mark(ok)}" for name, ok in report["targets"].items()))


def _print_cold(cold: dict) -> None:
    print(f"1-2. cold whole-process runs, {cold['repeats']} interleaved rounds; vllmgen = {cold['command']};"
          f" bytecode: {cold.get('bytecode', '?')}")
    print(f"   {'':28} {'median':>9} {'min':>9} {'max':>9} {'RSS':>8} {'ratio':>6} {'(min)':>6}  target"
          f"{'':21}cpu ratio")
    for name, label in (("floor", "floor: import 4 libraries"), ("render", "render seed -o tmp"),
                        ("check", "render seed --check (full)"), ("check_unchanged", "--check, unchanged tree")):
        row = cold[name]
        tail = ""
        if name != "floor":
            tail = f" {row['ratio']:6.2f} {row['ratio_of_minimums']:6.2f}  <= {row['target']}: {_mark(row['pass'])}"
        if name != "floor" and "cpu_ratio" in row:
            tail += f"  {row['cpu_ratio']:6.2f}"
        print(f"   {label:28} {row['median_s']*1000:7.0f}ms {row['min_s']*1000:7.0f}ms {row['max_s']*1000:7.0f}ms"
              f" {row['max_rss_mib']:5.0f}MiB{tail}")
    print()


def _print_scale(scale: dict) -> None:
    print(f"3. in-process render of generated specs (backend {scale['backend']}, YAML parser {scale['yaml_parser']};"
          f" median of {scale['repeats']} in a warm process; write into {scale['write_dir']})")
    header = (f"   {'nodes':>5} {'files':>5} {'load':>7} {'valid.':>7} {'plan':>7} {'render':>7} {'= total':>8}"
              f" {'x time':>6} {'1st':>8} {'+ write':>8} {'peak py':>8} {'x mem':>5} {'RSS':>6}")
    print(header)
    for row in scale["rows"]:
        growth = f"{row['time_growth']:6.1f}" if "time_growth" in row else f"{'':6}"
        mem_growth = f"{row['memory_growth']:5.1f}" if "memory_growth" in row else f"{'':5}"
        print(f"   {row['nodes']:5} {row['files']:5}"
              + "".join(f" {row[f'{stage}_s']*1000:5.0f}ms" for stage in STAGES[:-1])
              + f" {row['total_s']*1000:6.0f}ms {growth} {row['first_total_s']*1000:6.0f}ms"
              f" {row['write_s']*1000:6.0f}ms {row['peak_py_mib']:5.1f}MiB {mem_growth} {row['max_rss_mib']:4.0f}Mi")
    print("   (total = load..render; 1st = the first render in the process, which also loads the compiled"
          " templates; peak py = tracemalloc peak of one render + write in a fresh process)")
    if scale["largest"]:
        big = scale["largest"]
        print(f"   {big['nodes']} nodes: {big['total_s']:.3f} s  target <= {BIG_TARGET_S} s: {_mark(big['pass'])}")
    growth = scale["growth_linear"]
    print(f"   growth per 10x nodes <= {10 * GROWTH_SLACK:.0f}x (linear): time {_mark(growth['pass'])},"
          f" memory {_mark(growth['memory_pass'])}")
    print()


def _print_imports(imports: dict) -> None:
    print(f"4. python -X importtime (median of {imports['runs']}; start-up/site excluded)")
    print(f"   import vllmgen.cli.commands: {imports['cli_total_ms']:.0f} ms in all"
          f" (the floor's four libraries: {imports['floor_total_ms']:.0f} ms)")
    for row in imports["cli_top5"]:
        print(f"     {row['cumulative_ms']:7.1f} ms cumulative {row['self_ms']:7.1f} ms self   "
              f"{'  ' * row['level']}{row['module']}")
    print(f"   + what render imports lazily (vllmgen.render.compile, vllmgen.render.write): "
          f"{imports['render_path_total_ms']:.0f} ms in all")
    for row in imports["render_path_top5"]:
        print(f"     {row['cumulative_ms']:7.1f} ms cumulative {row['self_ms']:7.1f} ms self   "
              f"{'  ' * row['level']}{row['module']}")
    print("   the same, top five by self time (the module's own body: pydantic models, dataclasses, regexes):")
    for row in imports["render_path_top5_self"]:
        print(f"     {row['self_ms']:7.1f} ms self {row['cumulative_ms']:7.1f} ms cumulative   {row['module']}")
    print()


def _print_boundaries(bounds: dict) -> None:
    print("5. import boundaries after validate + render + render --check in one process"
          f" (exit codes {bounds['exit_codes']})")
    print(f"   forbidden modules imported: {bounds['forbidden_imported'] or 'none'}"
          f"  ({', '.join(FORBIDDEN)})")
    print(f"   socket/ssl/asyncio beyond the floor: {bounds['network_beyond_floor'] or 'none'}"
          f"  (already imported by the floor itself: {', '.join(bounds['network_in_floor_too']) or 'none'})")
    print(f"   {bounds['modules_total']} modules loaded, {bounds['modules_beyond_floor']} beyond the floor;"
          f" vllmgen: {', '.join(bounds['vllmgen_modules'])}")
    print(f"   no docker SDK, runner or network module: {_mark(bounds['pass'])}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 4x faster, noisier)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--repeats", type=int, help="whole-process rounds for 1-2 (default 21, quick 7)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="node counts for 3 (default 1,10,100,1000)")
    parser.add_argument("--backend", choices=("ray", "mp"), default="ray", help="backend of the generated specs")
    parser.add_argument("--only", help="comma-separated subset of: cold,scale,imports,boundaries")
    parser.add_argument("--write-dir", type=Path, help="where 3 writes its trees (default: a temporary directory)")
    parser.add_argument("--save", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        mode, *rest = args.worker
        fn = {"scale": _worker_scale, "memory": _worker_memory, "modules": _worker_modules,
              "floor-modules": _worker_floor_modules}[mode]
        print(json.dumps(fn(*rest)))
        return 0

    repeats = args.repeats or (7 if args.quick else 21)
    scale_repeats = 3 if args.quick else 7
    import_runs = 3 if args.quick else 9
    sizes = tuple(int(s) for s in args.sizes.split(","))
    only = set(args.only.split(",")) if args.only else {"cold", "scale", "imports", "boundaries"}

    report: dict = {"quick": args.quick, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="vllmgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "boundaries" in only:
            report["boundaries"] = bench_boundaries(tmp)
        if "cold" in only:
            report["cold"] = bench_cold(repeats, tmp)
        if "scale" in only:
            write_dir = Path(tempfile.mkdtemp(prefix="vllmgen-bench-", dir=args.write_dir)) if args.write_dir else tmp
            try:
                report["scale"] = bench_scale(sizes, scale_repeats, tmp, args.backend, write_dir)
            finally:
                if write_dir != tmp:
                    shutil.rmtree(write_dir, ignore_errors=True)
        if "imports" in only:
            report["imports"] = bench_imports(import_runs)
    report["machine"]["loadavg_end"] = _loadavg()

    targets = {}
    if "cold" in report:
        targets["render ratio"] = report["cold"]["render"]["pass"]
        targets["check ratio"] = report["cold"]["check"]["pass"]
        targets["unchanged check ratio"] = report["cold"]["check_unchanged"]["pass"]
    if "scale" in report:
        if report["scale"]["largest"]:
            targets["1000 nodes"] = report["scale"]["largest"]["pass"]
        targets["linear growth"] = report["scale"]["growth_linear"]["pass"]
    if "boundaries" in report:
        targets["import boundaries"] = report["boundaries"]["pass"]
    report["targets"] = targets

    if args.save:
        args.save.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
