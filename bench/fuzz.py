"""Fuzz the compiler's input side for a while (issue 10) and print what it found.

    python bench/fuzz.py                 # ten minutes
    python bench/fuzz.py --seconds 60 --seed 7 --save /tmp/fuzz-failures

Mutated example specs (tests/fuzzing.py: aliases, tags, depth, control bytes, type swaps, huge
scalars, key/value swaps...) go through `vllmgen validate` and, when valid, `vllmgen render` into
a temporary folder, in this process as the console script runs them. Every 50th input is a very
deep one (up to 300,000 levels) run in a subprocess, where a stack overflow would show as a signal.
Targets: no exit 123, no traceback, no signal; at most 1 s and 200 MB per input (time is wall
time of the CLI's main() (in a subprocess, after the interpreter starts); memory is tracemalloc's peak, taken on every other input, or a subprocess's
max RSS). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
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


# the console script's main(), timed from after the interpreter and vllmgen.cli are loaded
CHILD = """import sys, time
from vllmgen.cli import main
start = time.perf_counter()
try:
    main()
finally:
    print(f"\\nSECONDS {time.perf_counter() - start}", file=sys.stderr)
"""


def run_subprocess(spec: Path) -> tuple[int, float, float, str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "validate", str(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate()
    _, status, usage = 0, proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN)
    output, _, seconds = (stdout + stderr).decode().rpartition("\nSECONDS ")
    return status, float(seconds or "inf"), usage.ru_maxrss / 1024, output


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
    failures: list[tuple[str, str | bytes]] = []
    slowest: list[tuple[float, int, str | bytes]] = []
    max_mb = max_deep_mb = max_deep_s = 0.0
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
                code, seconds, mb, output = run_subprocess(spec)
                max_deep_mb, max_deep_s = max(max_deep_mb, mb), max(max_deep_s, seconds)
                codes[f"deep (subprocess) exit {code}"] += 1
                if code != 3 or "Traceback" in output or seconds > MAX_SECONDS or mb > MAX_MB:
                    failures.append((f"deep: exit {code}, {seconds:.2f} s, {mb:.0f} MB: {output[-500:]}", data))
                continue
            data = mutator.mutate(rng.choice(seeds))
            write_input(spec, data)
            measure = tried % 2 == 0
            if measure:
                tracemalloc.start()
            start = time.perf_counter()
            outcome = run_cli(["validate", str(spec)])
            if outcome.code == 0:
                codes["validate exit 0"] += 1
                outcome = run_cli(["render", str(spec), "-o", str(out)])
            seconds = time.perf_counter() - start
            if measure:
                mb = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                max_mb = max(max_mb, mb)
                if mb > MAX_MB:
                    failures.append((f"{mb:.0f} MB", data))
            codes[f"{outcome.command} exit {outcome.code}"] += 1
            problem = check(outcome)
            if problem:
                failures.append((problem, data))
            slowest = sorted([*slowest, (seconds, tried, data)], key=lambda item: -item[0])[:5]
    late = [item for item in slowest if item[0] > MAX_SECONDS]
    print(f"seed {args.seed}; {args.seconds:.0f} s; Python {sys.version.split()[0]}")
    print(f"inputs tried: {tried:,} ({deep} deep ones in a subprocess)")
    for name, count in sorted(codes.items()):
        print(f"  {name}: {count:,}")
    print(f"crashes (exit 123, traceback, signal, other exit): {sum(1 for f in failures if 'MB' not in f[0])}")
    print(f"max time per input: {slowest[0][0] * 1000:.0f} ms in-process; {max_deep_s * 1000:.0f} ms deep (subprocess)")
    print(f"max memory per input: {max_mb:.1f} MB (tracemalloc peak); {max_deep_mb:.0f} MB max RSS deep (subprocess)")
    print(f"inputs over {MAX_SECONDS:g} s: {len(late)}; over {MAX_MB:g} MB: {sum(1 for f in failures if f[0].endswith('MB'))}")
    for problem, _ in failures[:5]:
        print("FAIL", problem[:1000])
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for number, (_, data) in enumerate(failures[:50]):
            write_input(args.save / f"failure-{number}.yaml", data)
        for seconds, number, data in slowest:
            write_input(args.save / f"slow-{number}-{seconds * 1000:.0f}ms.yaml", data)
    return 1 if failures or late else 0


if __name__ == "__main__":
    sys.exit(main())
