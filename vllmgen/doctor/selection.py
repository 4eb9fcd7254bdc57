"""Doctor checks for a node that names its GPUs (``nodes[].gpu_ids``) or runs as a process
(``runtime.kind: process``): the GPUs it names exist on this host, and its vllm executable is there."""

from __future__ import annotations

import os
from collections.abc import Sequence

from vllmgen.doctor.checks import CheckResult, fail, ok
from vllmgen.doctor.gpu import Gpu


def check_gpu_ids(gpus: Sequence[Gpu], ids: Sequence[int]) -> CheckResult:
    """Replaces gpu.count when the node selects GPUs: other GPUs on the host are expected."""
    name = "gpu.selection"
    present = {gpu.index for gpu in gpus}
    missing = [i for i in ids if i not in present]
    chosen = ",".join(str(i) for i in ids)
    if missing:
        return fail(name, f"gpu_ids {chosen}: this host has no GPU {', '.join(map(str, missing))} "
                          f"({len(gpus)} GPU(s): {', '.join(str(g.index) for g in gpus) or 'none'})",
                    "fix nodes[].gpu_ids in the spec (indices as `nvidia-smi -L` lists them)")
    return ok(name, f"GPU(s) {chosen} of {len(gpus)} on this host, as gpu_ids selects")


def check_vllm_executable(path: str) -> CheckResult:
    name = "process.vllm"
    if not os.path.exists(path):
        return fail(name, f"{path} does not exist",
                    "install vLLM into the environment the spec names (runtime.python_env / nodes[].vllm)")
    if not os.access(path, os.X_OK):
        return fail(name, f"{path} is not executable", f"chmod +x {path}, or point the spec at the right file")
    return ok(name, f"{path} is there")
