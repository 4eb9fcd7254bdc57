"""Throughput of `vllmgen bundle` and `bundle load` for a model folder against `tar` by hand, same disk.

A folder of random data (incompressible, as weights are) in a few large files and some small ones,
then, in alternating rounds so that background load hits both alike:

  tar write     `tar -c -f OUT -C FOLDER .`                      (what a person would do by hand)
  bundle write  vllmgen's writer: the same folder as a tar stream cut into parts, a SHA-256 per part,
                a journal line per part (the model item of `vllmgen bundle`)
  tar read      `tar -x -f OUT -C DEST`
  bundle load   what `bundle load` does for a model: every part checked (read, SHA-256), then the
                parts read again, each checked as read, piped into `tar -x` beside the place and
                renamed into place (load.PLACE, on this machine)

The page cache is not dropped (that needs privileges over the whole machine): the folder was just
written, so reads come mostly from memory for both. `docker save` by hand is not in this run (it
needs a Docker engine with a multi-GB image; the slow test compares nothing against it).

    python bench/bench_bundle.py [--size-gib 2] [--rounds 2] [--part-size 1G] [--dir /var/tmp] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vllmgen.bundle import archive, load, make  # noqa: E402
from vllmgen.bundle.cli import parse_size  # noqa: E402
from vllmgen.runner.host import LocalHost  # noqa: E402

MIB = 1 << 20


def make_folder(folder: Path, size: int) -> None:
    """Four large shards and 20 small files, random."""
    folder.mkdir(parents=True)
    small = 20 * 64 * 1024
    shard = (size - small) // 4
    for index in range(4):
        with open(folder / f"model-{index:05d}-of-00004.safetensors", "wb") as handle:
            left = shard
            while left:
                data = os.urandom(min(16 * MIB, left))
                handle.write(data)
                left -= len(data)
    for index in range(20):
        (folder / f"extra-{index}.json").write_bytes(os.urandom(64 * 1024))


def timed(fn) -> float:  # noqa: ANN001
    started = time.monotonic()
    fn()
    return time.monotonic() - started


def tar_write(folder: Path, out: Path) -> None:
    subprocess.run(["tar", "-c", "-f", str(out), "-C", str(folder), "."], check=True)


def tar_read(archive_file: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "-x", "-f", str(archive_file), "-C", str(dest)], check=True)


def bundle_write(folder: Path, out: Path, part_size: int) -> None:
    writer = archive.Writer(out, part_size, archive.Progress(lambda line: None))
    source = make.model_source(folder, "/models/m")
    writer.write(source)
    writer.finish({"name": "bench"}, [source.item])


def bundle_load(out: Path, dest: Path) -> None:
    manifest = archive.read_manifest(out)
    item = manifest["items"][0]
    problems = archive.check_parts(out, [item])
    assert not problems, problems
    result = load.pipe(LocalHost(), ["sh", "-c", load.PLACE, "vllmgen", str(dest), load.item_digest(item)],
                        archive.read_item(out, item))
    assert result.rc == 0, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part-size", default="1G")
    parser.add_argument("--dir", default="/var/tmp", help="where the folder and outputs go (one disk for all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="vllmgen-bench-bundle-", dir=args.dir))
    try:
        folder = work / "model"
        make_folder(folder, size)
        total = sum(p.stat().st_size for p in folder.iterdir())
        times: dict[str, list[float]] = {"tar write": [], "bundle write": [], "tar read": [], "bundle load": []}
        for round_ in range(args.rounds):
            order = [("tar", "bundle"), ("bundle", "tar")][round_ % 2]
            for kind in order:
                out = work / f"{kind}-out"
                dest = work / f"{kind}-dest"
                if kind == "tar":
                    times["tar write"].append(timed(lambda: tar_write(folder, out.with_suffix(".tar"))))
                    times["tar read"].append(timed(lambda: tar_read(out.with_suffix(".tar"), dest)))
                    out.with_suffix(".tar").unlink()
                else:
                    times["bundle write"].append(timed(lambda: bundle_write(folder, out, parse_size(args.part_size))))
                    times["bundle load"].append(timed(lambda: bundle_load(out, dest)))
                    shutil.rmtree(out)
                shutil.rmtree(dest)
        result = {"bytes": total, "part_size": args.part_size, "rounds": args.rounds,
                  **{name: {"median_s": round(statistics.median(ts), 3),
                            "mib_per_s": round(total / MIB / statistics.median(ts), 1),
                            "all_s": [round(t, 3) for t in ts]} for name, ts in times.items()}}
        result["write vs tar"] = round(result["bundle write"]["median_s"] / result["tar write"]["median_s"], 3)
        result["load vs tar"] = round(result["bundle load"]["median_s"] / result["tar read"]["median_s"], 3)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"{total / (1 << 30):.2f} GiB of random data, part size {args.part_size}, {args.rounds} round(s)")
            for name in times:
                entry = result[name]
                print(f"  {name:<13} {entry['median_s']:7.2f} s  {entry['mib_per_s']:8.1f} MiB/s  {entry['all_s']}")
            print(f"  bundle write / tar write: {result['write vs tar']:.3f}; "
                  f"bundle load / tar read: {result['load vs tar']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
