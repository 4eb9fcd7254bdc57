"""Throughput of `vllmgen bundle` and `bundle load` for a model folder against `tar` by hand, same disk.

A folder of random data (incompressible, as weights are) in a few large files and some small ones,
then, in alternating rounds so that background load hits both alike:

  tar write     `tar -c -f OUT -C FOLDER .`                      (what a person would do by hand)
  bundle write  vllmgen's writer: the same folder as a tar stream cut into parts, a SHA-256 per part,
                a journal line per part (the model item of `vllmgen bundle`): each file's bytes copied
                into the part by copy_file_range and hashed from a mapping in a thread beside it
  tar read      `tar -x -f OUT -C DEST`
  bundle load   what `bundle load` does for a model on this machine (load.place_model): every part's
                size checked, the tar headers read from the parts and each file's bytes copied out
                by copy_file_range (bundle.unpack) while a thread hashes every part, renamed into
                place once all match (load.NAMES/CLEAR/COMMIT); to an ssh node the parts are
                spliced into `tar -x` instead (load.PLACE), which this bench does not time
  before ...    with --baseline REV: the same two operations by the code of REV (`git archive`), in
                the same rounds, for a before/after side by side

With --docker ENDPOINT --image REF, the same rounds for one image of that engine (after the folder's,
or alone with --size-gib 0):

  docker save   `docker -H ENDPOINT save -o OUT ID`
  bundle save   vllmgen's writer on the image's `docker save` stream (DockerEngine.save: on a unix
                socket the Engine API's GET /images/ID/get read by http.client into 1 MiB buffers),
                cut into parts, each buffer written (32 KiB at a time) and hashed in a thread beside
  before save   with --baseline REV: the same by the code of REV, in the same rounds
  docker load   `docker -H ENDPOINT load -i OUT` (the image removed first, so that it really loads)
  bundle load   what `bundle load` does for an image (the image removed first): every part hashed
                (load.check_needed), then the parts streamed into the engine's load (DockerEngine.load),
                each checked to be the same file as was hashed (archive.read_item)

The daemon does the same work for both sides of a pair; its CPU seconds (from /proc/PID/stat, with
--dockerd-pid) are shown apart from the client's (the `docker` CLI's, or vllmgen's process).

Each bundle operation runs in a fresh interpreter and is timed inside it (imports excluded).
The page cache is not dropped (that needs privileges over the whole machine): the folder was just
written, so reads come mostly from memory for both.

    python bench/bench_bundle.py [--size-gib 2] [--rounds 2] [--part-size 1G] [--dir /var/tmp]
                                 [--baseline REV] [--json]
                                 [--docker unix:///PATH/docker.sock --image REF [--dockerd-pid PID]
                                  [--save-only]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vllmgen.bundle.cli import parse_size  # noqa: E402

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


def timed(fn) -> tuple[float, float, float]:  # noqa: ANN001
    """(wall seconds, CPU seconds of the children it ran: tar's user and system time, user time alone)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    fn()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    return wall, user + (after.ru_stime - before.ru_stime), user


def tar_write(folder: Path, out: Path) -> None:
    subprocess.run(["tar", "-c", "-f", str(out), "-C", str(folder), "."], check=True)


def tar_read(archive_file: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "-x", "-f", str(archive_file), "-C", str(dest)], check=True)


# One operation, timed inside a fresh interpreter on the tree given (this one, or --baseline's), so
# that the code before and after a change runs side by side in one run on the same folder.
ONE = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from vllmgen.bundle import archive, load, make
from vllmgen.runner.host import LocalHost
op, folder, out, part_size = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
import os
cpu = lambda: sum(os.times()[:4])  # user and system, this process and the children it waited for (tar)
started, cpu_started, user_started = time.monotonic(), cpu(), os.times()[0] + os.times()[2]
if op in ("image-write", "image-load"):
    from vllmgen.bundle.docker import DockerEngine
    engine = DockerEngine("bench", sys.argv[6])
if op == "image-write":  # folder: the image ID; what `vllmgen bundle` does for one image
    writer = archive.Writer(out, part_size, archive.Progress(lambda line: None))
    item = archive.Item("image", "image", str(folder), None, {"id": str(folder)})
    if "stream" in archive.Source.__dataclass_fields__:  # read into the writer's buffers
        source = archive.Source(item, stream=lambda: engine.save(str(folder)))
    else:  # before: an iterator of the SDK's chunks
        source = archive.Source(item, lambda offset: engine.save(str(folder)), seekable=False)
    writer.write(source)
    writer.finish({"name": "bench"}, [source.item])
elif op == "image-load":  # what `bundle load` does for an image missing on the node
    item = archive.read_manifest(folder)["items"][0]
    checked = {}
    assert not archive.check_parts(folder, [item], checked=checked)
    loaded = engine.load(archive.read_item(folder, item, checked=checked))
    assert loaded == item["id"], loaded
elif op == "write":
    writer = archive.Writer(out, part_size, archive.Progress(lambda line: None))
    source = make.model_source(folder, "/models/m")
    writer.write(source)
    writer.finish({"name": "bench"}, [source.item])
else:  # load: what `bundle load` does for a model on this machine
    item = archive.read_manifest(folder)["items"][0]
    if hasattr(load, "place_model"):  # parts hashed while copied out (or, before, spliced into tar -x)
        assert not archive.check_sizes(folder, item)
        result = load.place_model(LocalHost(), folder, item, str(out))
    else:  # before: every part checked, then read again into the pipe
        assert not archive.check_parts(folder, [item])
        result = load.pipe(LocalHost(), ["sh", "-c", load.PLACE, "vllmgen", str(out), load.item_digest(item)],
                           archive.read_item(folder, item))
    assert result.rc == 0, result.stderr
print(time.monotonic() - started, cpu() - cpu_started, os.times()[0] + os.times()[2] - user_started)
"""


def bundle_op(tree: Path, op: str, source: Path | str, out: Path, part_size: int, endpoint: str = ""
              ) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, user CPU seconds) of one operation."""
    done = subprocess.run([sys.executable, "-c", ONE, str(tree), op, str(source), str(out), str(part_size), endpoint],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bundle {op} failed:\n{done.stderr}")
    wall, cpu, user = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), float(user)


def daemon_cpu(pid: int | None) -> float:
    """The daemon's own CPU seconds so far (user + system), 0 without --dockerd-pid."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def image_rounds(args: argparse.Namespace, work: Path, part_size: int, trees: dict[str, Path]) -> dict:
    """docker save/load by hand against bundle's image write and load (and --baseline's save), each going
    first in turn; (wall, CPU, daemon CPU)."""
    docker = ["docker", "-H", args.docker]
    image_id = subprocess.run([*docker, "image", "inspect", "-f", "{{.Id}}", args.image], check=True,
                              capture_output=True, text=True).stdout.strip()
    size = int(subprocess.run([*docker, "image", "inspect", "-f", "{{.Size}}", args.image], check=True,
                              capture_output=True, text=True).stdout.strip())
    names = ["docker save", *(f"{k} save" for k in trees)]
    if not args.save_only:
        names += ["docker load", "bundle load"]
    times: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in names}

    def remove() -> None:  # untagged and removed, so that a load loads it all again
        subprocess.run([*docker, "image", "rm", "-f", image_id], check=True, capture_output=True)

    def measure(name: str, fn) -> None:  # noqa: ANN001
        before = daemon_cpu(args.dockerd_pid)
        wall, cpu, user = fn()
        times[name].append((wall, cpu, daemon_cpu(args.dockerd_pid) - before, user))

    saved, bundled = work / "image.tar", work / "image-bundle"
    kinds = ["docker", *trees]
    for round_ in range(args.rounds):
        for kind in kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]:  # each goes first in turn
            if kind == "docker":
                measure("docker save", lambda: timed(lambda: subprocess.run([*docker, "save", "-o", str(saved), image_id],
                                                                            check=True)))
                if not args.save_only:
                    remove()
                    measure("docker load", lambda: timed(lambda: subprocess.run(
                        [*docker, "load", "-q", "-i", str(saved)], check=True, capture_output=True)))
                saved.unlink()
            else:
                measure(f"{kind} save", lambda: bundle_op(trees[kind], "image-write", image_id, bundled, part_size,
                                                          args.docker))
                if kind == "bundle" and not args.save_only:
                    remove()
                    measure("bundle load", lambda: bundle_op(trees[kind], "image-load", bundled, bundled, part_size,
                                                             args.docker))
                shutil.rmtree(bundled)
    subprocess.run([*docker, "tag", image_id, args.image], check=True)
    result: dict = {"image": args.image, "id": image_id, "image_bytes": size}
    for name, runs in times.items():
        wall = statistics.median(w for w, _, _, _ in runs)
        result[name] = {"median_s": round(wall, 3), "mib_per_s": round(size / MIB / wall, 1),
                        "cpu_s": round(statistics.median(c for _, c, _, _ in runs), 3),
                        "user_cpu_s": round(statistics.median(u for _, _, _, u in runs), 3),
                        "all_cpu_s": [round(c, 3) for _, c, _, _ in runs],
                        "daemon_cpu_s": round(statistics.median(d for _, _, d, _ in runs), 3),
                        "all_s": [round(w, 3) for w, _, _, _ in runs]}
    for op, by_hand in (("save", "docker save"), ("load", "docker load")):
        for kind in trees:
            if f"{kind} {op}" in result:
                result[f"{kind} {op} vs docker"] = round(result[f"{kind} {op}"]["median_s"] / result[by_hand]["median_s"], 3)
                result[f"{kind} {op} cpu vs docker"] = round(result[f"{kind} {op}"]["cpu_s"] / result[by_hand]["cpu_s"], 3)
    result["trees"] = list(trees)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--part-size", default="1G")
    parser.add_argument("--dir", default="/var/tmp", help="where the folder and outputs go (one disk for all)")
    parser.add_argument("--baseline", metavar="REV", help="also time the bundle code of this git revision")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--docker", metavar="ENDPOINT", help="also compare docker save/load of --image on this engine")
    parser.add_argument("--image", help="the image for --docker (a multi-GB one)")
    parser.add_argument("--dockerd-pid", type=int, help="that engine's dockerd, to show its CPU seconds")
    parser.add_argument("--save-only", action="store_true", help="with --docker: time the saves, not the loads")
    args = parser.parse_args()
    if args.docker and not args.image:
        parser.error("--docker needs --image")
    started_load = os.getloadavg()
    size, part_size = int(args.size_gib * (1 << 30)), parse_size(args.part_size)
    work = Path(tempfile.mkdtemp(prefix="vllmgen-bench-bundle-", dir=args.dir))
    root = Path(__file__).resolve().parents[1]
    try:
        trees = {"bundle": root}
        if args.baseline:
            trees["before"] = work / "baseline"
            trees["before"].mkdir()  # the revision's files only: no worktree registered in the repository
            archived = subprocess.run(["git", "-C", str(root), "archive", args.baseline, "vllmgen"], check=True,
                                      capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(trees["before"])], input=archived, check=True)
        result: dict = {"load_average_start": [round(x, 2) for x in started_load]}
        if size:
            result["folder"] = folder_rounds(args, work, size, part_size, trees)
        if args.docker:
            result["image"] = image_rounds(args, work, part_size, trees)
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            report(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sha256_alone(folder: Path) -> None:
    """The hash floor: OpenSSL's SHA-256 (SHA-NI where the CPU has it) over the same files, nothing written.
    (coreutils' sha256sum does not use SHA-NI: several times slower here.)"""
    subprocess.run(["openssl", "dgst", "-sha256", *sorted(str(p) for p in folder.iterdir())], check=True,
                   capture_output=True)


def folder_rounds(args: argparse.Namespace, work: Path, size: int, part_size: int, trees: dict[str, Path]) -> dict:
    folder = work / "model"
    make_folder(folder, size)
    total = sum(p.stat().st_size for p in folder.iterdir())
    names = ["sha256 alone", "tar write", *(f"{k} write" for k in trees), "tar read", *(f"{k} load" for k in trees)]
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    kinds = ["tar", *trees]
    for round_ in range(args.rounds):
        times["sha256 alone"].append(timed(lambda: sha256_alone(folder)))
        for kind in kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]:  # each goes first in turn
            out, dest = work / f"{kind}-out", work / f"{kind}-dest"
            if kind == "tar":
                times["tar write"].append(timed(lambda: tar_write(folder, out.with_suffix(".tar"))))
                times["tar read"].append(timed(lambda: tar_read(out.with_suffix(".tar"), dest)))
                out.with_suffix(".tar").unlink()
            else:
                times[f"{kind} write"].append(bundle_op(trees[kind], "write", folder, out, part_size))
                times[f"{kind} load"].append(bundle_op(trees[kind], "load", out, dest, part_size))
                shutil.rmtree(out)
            shutil.rmtree(dest)
    shutil.rmtree(folder)
    result: dict = {"bytes": total, "part_size": args.part_size, "rounds": args.rounds, "baseline": args.baseline}
    for name, runs in times.items():
        wall, cpu = statistics.median(w for w, _, _ in runs), statistics.median(c for _, c, _ in runs)
        result[name] = {"median_s": round(wall, 3), "mib_per_s": round(total / MIB / wall, 1),
                        "cpu_s": round(cpu, 3), "all_s": [round(w, 3) for w, _, _ in runs],
                        "all_cpu_s": [round(c, 3) for _, c, _ in runs]}
    for kind in trees:
        for op, tar in (("write", "tar write"), ("load", "tar read")):
            result[f"{kind} {op} vs tar"] = round(result[f"{kind} {op}"]["median_s"] / result[tar]["median_s"], 3)
            result[f"{kind} {op} cpu vs tar"] = round(result[f"{kind} {op}"]["cpu_s"] / result[tar]["cpu_s"], 3)
    result["trees"] = list(trees)
    return result


def report(result: dict) -> None:
    print(f"load average at the start {result['load_average_start']}, at the end {result['load_average_end']}")
    if "folder" in result:
        folder = result["folder"]
        print(f"{folder['bytes'] / (1 << 30):.2f} GiB of random data, part size {folder['part_size']}, "
              f"{folder['rounds']} round(s)" + (f", before = {folder['baseline']}" if folder["baseline"] else ""))
        for name, entry in folder.items():
            if isinstance(entry, dict):
                print(f"  {name:<13} {entry['median_s']:7.2f} s  {entry['mib_per_s']:8.1f} MiB/s  "
                      f"CPU {entry['cpu_s']:6.2f} s  wall {entry['all_s']}  CPU {entry['all_cpu_s']}")
        for kind in folder["trees"]:
            print(f"  {kind}/tar: write {folder[f'{kind} write vs tar']:.3f} (CPU "
                  f"{folder[f'{kind} write cpu vs tar']:.3f}), load {folder[f'{kind} load vs tar']:.3f} "
                  f"(CPU {folder[f'{kind} load cpu vs tar']:.3f})")
    if "image" in result:
        image = result["image"]
        print(f"image {image['image']} ({image['id'][:19]}), {image['image_bytes'] / (1 << 30):.2f} GiB")
        for name, entry in image.items():
            if isinstance(entry, dict):
                print(f"  {name:<12} {entry['median_s']:7.2f} s  {entry['mib_per_s']:8.1f} MiB/s  "
                      f"client CPU {entry['cpu_s']:6.2f} s (user {entry['user_cpu_s']:5.2f} s)  "
                      f"dockerd CPU {entry['daemon_cpu_s']:6.2f} s  wall {entry['all_s']}  CPU {entry['all_cpu_s']}")
        for kind in image["trees"]:
            for op in ("save", "load"):
                if f"{kind} {op} vs docker" in image:
                    print(f"  {kind}/docker {op}: {image[f'{kind} {op} vs docker']:.3f} wall (client CPU "
                          f"{image[f'{kind} {op} cpu vs docker']:.3f})")

if __name__ == "__main__":
    main()
