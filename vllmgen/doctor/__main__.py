"""`python -m vllmgen.doctor`: host checks from plain flags, before `vllmgen doctor SPEC` fills them in.

Exit status: 0 when no check failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vllmgen.doctor import fit, report
from vllmgen.doctor.checks import exit_code
from vllmgen.doctor.gpu import format_inventory
from vllmgen.doctor.host import HostExpectation, docker_checks, gpu_facts, network_checks, storage_checks
from vllmgen.doctor.probe import LiveProbe, Probe, RecordedProbe
from vllmgen.doctor.storage import parse_size


def _disk(value: str) -> tuple[str, int, str]:
    path, _, size = value.rpartition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"expected PATH=SIZE, got {value!r}")
    return path, parse_size(size), ""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vllmgen.doctor", description=__doc__)
    p.add_argument("--gpus", type=int, help="GPUs this node should have")
    p.add_argument("--gpu-model", help="substring of the GPU name, e.g. H100")
    p.add_argument("--util", type=float, help="gpu_memory_utilization")
    p.add_argument("--image-cuda", help="CUDA major.minor of the image, e.g. 12.8")
    p.add_argument("--address", help="this node's address in the spec")
    p.add_argument("--nic", help="data NIC (GLOO/NCCL_SOCKET_IFNAME)")
    p.add_argument("--subnet", help="CIDR the data NIC should hold")
    p.add_argument("--port", type=int, action="append", default=[], help="port that must be free (repeat)")
    p.add_argument("--hca", action="append", default=[], help="NCCL_IB_HCA entry (repeat)")
    p.add_argument("--shm", type=parse_size, help="required /dev/shm size, e.g. 10.24g")
    p.add_argument("--disk", type=_disk, action="append", default=[], help="PATH=SIZE of free disk (repeat)")
    p.add_argument("--model-path", help="host directory holding config.json and weights")
    p.add_argument("--no-docker", action="store_true", help="skip the Docker checks")
    p.add_argument("--docker-image", help="image for the --gpus all smoke run")
    p.add_argument("--mirror", action="append", default=[], help="registry mirror that must be configured")
    p.add_argument("--config", type=Path, help="config.json for the model-fit estimate")
    p.add_argument("--tp", type=int, default=1, help="tensor parallel size (model fit)")
    p.add_argument("--world", type=int, help="GPUs over all nodes (model fit; default --gpus)")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--replay", type=Path, help="read recorded outputs from this folder instead of the host")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    probe: Probe = RecordedProbe(args.replay) if args.replay else LiveProbe()
    expect = HostExpectation(
        gpus=args.gpus,
        gpu_model=args.gpu_model,
        gpu_memory_utilization=args.util,
        image_cuda=args.image_cuda,
        address=args.address,
        data_nic=args.nic,
        subnet=args.subnet,
        ports=tuple(args.port),
        hcas=tuple(args.hca),
        shm_bytes=args.shm,
        disk=tuple(args.disk),
        model_path=args.model_path,
        docker=not args.no_docker,
        docker_image=args.docker_image,
        registry_mirrors=tuple(args.mirror),
    )
    facts = gpu_facts(probe, expect)
    results = [*facts.results, *network_checks(probe, expect), *storage_checks(probe, expect)]
    results += docker_checks(probe, expect)
    if args.config:
        config = json.loads(args.config.read_text())
        mem = facts.gpus[0].memory_total_gib if facts.gpus else 80.0
        world = args.world or args.gpus or len(facts.gpus) or 1
        results.append(fit.check_tp(config, args.tp))
        results.append(fit.check_fit(fit.fit(config, world, mem, args.util or 0.9, args.tp, args.max_model_len)))
    if args.json:
        inventory = [g.__dict__ for g in facts.gpus]
        sys.stdout.write(report.render_json(results, gpus=inventory, cuda_version=facts.cuda_version))
    else:
        if facts.gpus:
            sys.stdout.write(format_inventory(facts.gpus, facts.cuda_version) + "\n\n")
        sys.stdout.write(report.render_table(results))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
