"""Fuzz the compiler's input side for a while (issue 10) and print what it found.

    python bench/fuzz.py                 # ten minutes
    python bench/fuzz.py --seconds 60 --seed 7 --save /tmp/fuzz-failures

Mutated example specs (tests/fuzzing.py: aliases, tags, depth, control bytes, type swaps, huge
scalars, key/value swaps...) go through `vllmgen validate` and, when valid, `vllmgen render` into
a temporary folder, in this process as the console script runs them. Every 50th input is a very
deep one (up to 300,000 levels) run in a subprocess, where a stack overflow would show as a signal.
Targets: no exit 123, no traceback, no signal; at most 1 s and 200 MB per input. Time is CPU time
(on a shared machine wall time measures the neighbours; both are printed) of validate + render in
this process, or of the CLI's main() in the subprocess (after the interpreter starts); memory is
tracemalloc's peak, or the subprocess's peak RSS (VmHWM). Inputs alternate: one timed, the next
traced for memory (tracemalloc slows it down). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fuzzing import SEEDS, Mutator, check, run_cli, write_input  # noqa: E402

MAX_SECONDS, MAX_MB = 1.0, 200.0


def deep_input(rng: random.Random) -> str:
    depth = rng.choice([30_000, 100_000, 300_000])
    opener = rng.choice(["[", "{a: ", "- ", "[{a: "])
    return "version: 1\nname: deep\nnodes:\n  " + opener * depth + "x\n"


# the console script's main(), timed from after the interpreter and vllmgen.cli.commands are loaded
CHILD = """import sys, time
from vllmgen.cli.commands import main
wall, cpu = time.perf_counter(), time.process_time()
try:
    main()
finally:
    # VmHWM starts afresh at exec; ru_maxrss would carry the forking parent's peak
    mb = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] / 1024
    print(f"\\nMEASURED {time.perf_counter() - wall} {time.process_time() - cpu} {mb}", file=sys.stderr)
"""


def run_subprocess(spec: Path) -> tuple[int, float, float, float, str]:
    """(exit code, wall s, CPU s, max RSS MB, output) of `vllmgen validate SPEC` in a child."""
    proc = subprocess.run([sys.executable, "-c", CHILD, "validate", str(spec)], capture_output=True)
    output, _, measured = (proc.stdout + proc.stderr).decode().rpartition("\nMEASURED ")
    wall, cpu, mb = (float(x) for x in measured.split()) if measured else (float("inf"),) * 3
    return proc.returncode, wall, cpu, mb, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--save", type=Path, help="folder for failing and slowest inputs")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    mutator = Mutator(rng, max_depth=5000)
    seeds = [path.read_text() for path in SEEDS]
    codes: collections.Counter = collections.Counter()
    crashes: list[tuple[str, str | bytes]] = []
    over: list[tuple[str, str | bytes]] = []  # over the time or memory target
    slowest: list[tuple[float, int, str | bytes]] = []  # by CPU time
    worst = {"wall": 0.0, "cpu": 0.0, "mb": 0.0, "deep wall": 0.0, "deep cpu": 0.0, "deep mb": 0.0}
    tried = deep = 0
    deadline = time.monotonic() + args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.yaml", Path(tmp) / "out"
        while time.monotonic() < deadline:
            tried += 1
            if tried % 50 == 0:
                deep += 1
                data = deep_input(rng)
                write_input(spec, data)
                code, wall, cpu, mb, output = run_subprocess(spec)
                for name, value in (("deep wall", wall), ("deep cpu", cpu), ("deep mb", mb)):
                    worst[name] = max(worst[name], value)
                codes[f"deep (subprocess) exit {code}"] += 1
                if code != 3 or "Traceback" in output:
                    crashes.append((f"deep: exit {code}: {output[-500:]}", data))
                if cpu > MAX_SECONDS or mb > MAX_MB:
                    over.append((f"deep: {cpu:.2f} s CPU, {mb:.0f} MB", data))
                continue
            data = mutator.mutate(rng.choice(seeds))
            write_input(spec, data)
            measure = tried % 2 == 0
            gc.collect()  # the harness's own garbage is not the input's time
            if measure:
                tracemalloc.start()
            wall, cpu = time.perf_counter(), time.process_time()
            outcome = run_cli(["validate", str(spec)])
            if outcome.code == 0:
                codes["validate exit 0"] += 1
                outcome = run_cli(["render", str(spec), "-o", str(out)])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            mb = 0.0
            if measure:
                mb = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            for name, value in ((("mb", mb),) if measure else (("wall", wall), ("cpu", cpu))):
                worst[name] = max(worst[name], value)
            codes[f"{outcome.command} exit {outcome.code}"] += 1
            problem = check(outcome)
            if problem:
                crashes.append((problem, data))
            if (not measure and cpu > MAX_SECONDS) or mb > MAX_MB:
                over.append((f"{cpu:.2f} s CPU, {mb:.0f} MB", data))
            if not measure:
                slowest = sorted([*slowest, (cpu, tried, data)], key=lambda item: -item[0])[:5]
    print(f"seed {args.seed}; {args.seconds:.0f} s; Python {sys.version.split()[0]}; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"inputs tried: {tried:,} ({deep} deep ones in a subprocess)")
    for name, count in sorted(codes.items()):
        print(f"  {name}: {count:,}")
    print(f"crashes (exit 123, a traceback, a signal, another exit code): {len(crashes)}")
    print(f"max per input, in-process: {worst['cpu'] * 1000:.0f} ms CPU ({worst['wall'] * 1000:.0f} ms wall), "
          f"{worst['mb']:.1f} MB (tracemalloc peak)")
    print(f"max per input, deep in a subprocess: {worst['deep cpu'] * 1000:.0f} ms CPU "
          f"({worst['deep wall'] * 1000:.0f} ms wall) in main(), {worst['deep mb']:.0f} MB max RSS of the process")
    print(f"inputs over {MAX_SECONDS:g} s CPU or {MAX_MB:g} MB: {len(over)}")
    for problem, _ in [*crashes, *over][:5]:
        print("FAIL", problem[:1000])
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for number, (_, data) in enumerate([*crashes, *over][:50]):
            write_input(args.save / f"failure-{number}.yaml", data)
        for cpu, number, data in slowest:
            write_input(args.save / f"slow-{number}-{cpu * 1000:.0f}ms.yaml", data)
    return 1 if crashes or over else 0


if __name__ == "__main__":
    sys.exit(main())
