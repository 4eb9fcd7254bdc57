"""GPU inventory: parse `nvidia-smi` output and check it against what the deployment expects."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vllmgen.doctor.checks import CheckResult, fail, ok, skip, warn

QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "driver_version",
    "compute_cap",
    "pci.bus_id",
)
QUERY_ARGV: tuple[str, ...] = (
    "nvidia-smi",
    "--query-gpu=" + ",".join(QUERY_FIELDS),
    "--format=csv,noheader,nounits",
)

DRIVER_FIX = "install the NVIDIA driver on the host (nvidia-smi must run), then reboot or reload the nvidia modules"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str
    memory_total_mib: int
    memory_used_mib: int
    driver_version: str
    compute_cap: str
    pci_bus_id: str

    @property
    def memory_total_gib(self) -> float:
        return self.memory_total_mib / 1024


def _int(value: str) -> int:
    # nvidia-smi prints "[N/A]" for fields a board or a MIG slice does not report.
    return int(value) if value.strip().isdigit() else 0


def parse_gpu_query(text: str, fields: Sequence[str] = QUERY_FIELDS) -> list[Gpu]:
    """Parse `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`; blank lines are skipped."""
    gpus = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(fields):
            raise ValueError(f"expected {len(fields)} fields ({','.join(fields)}), got {len(row)}: {row}")
        value = dict(zip(fields, (cell.strip() for cell in row), strict=True))
        gpus.append(
            Gpu(
                index=_int(value.get("index", "0")),
                name=value.get("name", ""),
                uuid=value.get("uuid", ""),
                memory_total_mib=_int(value.get("memory.total", "0")),
                memory_used_mib=_int(value.get("memory.used", "0")),
                driver_version=value.get("driver_version", ""),
                compute_cap=value.get("compute_cap", ""),
                pci_bus_id=value.get("pci.bus_id", ""),
            )
        )
    return gpus


_CUDA_LINE = re.compile(r"CUDA Version\s*:\s*([0-9]+\.[0-9]+)")


def parse_cuda_version(text: str) -> str | None:
    """The highest CUDA the driver supports, from plain `nvidia-smi` or `nvidia-smi -q`."""
    m = _CUDA_LINE.search(text)
    return m.group(1) if m else None


def check_nvidia_smi(returncode: int, stderr: str, stdout: str = "") -> CheckResult:
    """Did nvidia-smi run at all? Its failure is the first thing to fix on a GPU host."""
    name = "gpu.nvidia_smi"
    if returncode == 0:
        return ok(name, "nvidia-smi runs")
    text = (stderr or stdout).strip().splitlines()
    first = text[0] if text else f"exit status {returncode}"
    if returncode == 127:
        return fail(name, f"nvidia-smi not found ({first})", DRIVER_FIX)
    return fail(name, f"nvidia-smi failed: {first}", DRIVER_FIX)


def check_gpu_count(gpus: Sequence[Gpu], expected: int) -> CheckResult:
    name = "gpu.count"
    seen = len(gpus)
    if seen == expected:
        return ok(name, f"{seen} GPU(s), as expected")
    if seen < expected:
        return fail(
            name,
            f"{seen} GPU(s) visible, the spec expects {expected}",
            "check `nvidia-smi -L`, CUDA_VISIBLE_DEVICES and the node's gpus in the spec",
        )
    return warn(
        name,
        f"{seen} GPU(s) visible, the spec uses {expected}",
        "set the node's gpus in the spec to the real count, or pin devices with CUDA_VISIBLE_DEVICES",
    )


def check_gpu_model(gpus: Sequence[Gpu], expected: str | None) -> CheckResult:
    """Every GPU's name contains `expected` (case-insensitive), e.g. 'H100'."""
    name = "gpu.model"
    if not gpus:
        return skip(name, "no GPUs")
    names = sorted({g.name for g in gpus})
    if expected is None:
        return ok(name, ", ".join(names))
    wrong = [g for g in gpus if expected.lower() not in g.name.lower()]
    if wrong:
        return fail(name, f"expected {expected}, found {', '.join(names)}", "fix the node's gpu model in the spec")
    return ok(name, ", ".join(names))


def check_gpu_uniform(gpus: Sequence[Gpu]) -> CheckResult:
    """Tensor parallelism wants identical GPUs and one driver on a node."""
    name = "gpu.uniform"
    if not gpus:
        return skip(name, "no GPUs")
    models = sorted({g.name for g in gpus})
    mems = sorted({g.memory_total_mib for g in gpus})
    drivers = sorted({g.driver_version for g in gpus})
    if len(models) > 1 or len(mems) > 1:
        return warn(
            name,
            f"mixed GPUs on one node: {', '.join(models)} ({', '.join(map(str, mems))} MiB)",
            "use identical GPUs for one tensor-parallel group (CUDA_VISIBLE_DEVICES)",
        )
    return ok(name, f"{len(gpus)} x {models[0]}, {mems[0]} MiB, driver {', '.join(drivers)}")


def check_gpu_free_memory(gpus: Sequence[Gpu], utilization: float) -> CheckResult:
    """vLLM refuses to start when memory already in use leaves less than utilization x total."""
    name = "gpu.free_memory"
    if not gpus:
        return skip(name, "no GPUs")
    short = [g for g in gpus if g.memory_total_mib - g.memory_used_mib < utilization * g.memory_total_mib]
    if short:
        busy = ", ".join(f"GPU {g.index}: {g.memory_used_mib} of {g.memory_total_mib} MiB used" for g in short)
        return fail(
            name,
            f"less free than gpu_memory_utilization {utilization:g} asks for ({busy})",
            "stop the processes holding GPU memory (nvidia-smi lists them) or lower gpu_memory_utilization",
        )
    worst = max(gpus, key=lambda g: g.memory_used_mib)
    return ok(name, f"at most {worst.memory_used_mib} MiB in use (GPU {worst.index}); {utilization:g} is available")


def check_nodes_consistent(inventories: Mapping[str, Sequence[Gpu]]) -> CheckResult:
    """Across nodes: one GPU model and one driver version (NCCL and vLLM expect a homogeneous cluster)."""
    name = "gpu.nodes_consistent"
    seen = {node: gpus for node, gpus in inventories.items() if gpus}
    if len(seen) < 2:
        return skip(name, "fewer than two nodes with GPUs to compare")
    models = {node: sorted({g.name for g in gpus}) for node, gpus in seen.items()}
    drivers = {node: sorted({g.driver_version for g in gpus}) for node, gpus in seen.items()}
    problems = []
    if len({tuple(v) for v in models.values()}) > 1:
        problems.append("models " + "; ".join(f"{n}: {', '.join(v)}" for n, v in models.items()))
    if len({tuple(v) for v in drivers.values()}) > 1:
        problems.append("drivers " + "; ".join(f"{n}: {', '.join(v)}" for n, v in drivers.items()))
    if problems:
        return fail(name, " / ".join(problems), "install the same GPU model and driver version on every node")
    first = next(iter(seen))
    return ok(name, f"{len(seen)} nodes: {', '.join(models[first])}, driver {', '.join(drivers[first])}")


def format_inventory(gpus: Sequence[Gpu], cuda_version: str | None = None) -> str:
    """Human-readable inventory, one line per GPU."""
    lines = [
        f"GPU {g.index}: {g.name}, {g.memory_total_mib} MiB ({g.memory_used_mib} used), driver {g.driver_version}, "
        f"compute capability {g.compute_cap}, bus {g.pci_bus_id}"
        for g in gpus
    ]
    if cuda_version:
        lines.append(f"driver supports CUDA up to {cuda_version}")
    return "\n".join(lines)
