"""How the engine starts: caches kept on the host between starts, and how long it may take to be ready.

A vLLM start repeats work a second start can skip: torch.compile and Inductor output, Triton and
FlashInfer JIT kernels, CUDA's PTX cache. All of them go under one host folder per deployment,
mounted at one place, each tool pointed there by its own variable.

The ready timeout (``VLLM_ENGINE_READY_TIMEOUT_S``, 600 s by default in vLLM) kills engines during
long loads and warm-ups. vllmgen derives it from what it knows of the model and the layout, never
below vLLM's default; ``serve.ready_timeout`` overrides it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vllmgen.spec.model import Spec

CACHE_IN_CONTAINER = "/var/cache/vllmgen"
# each cache's own variable, relative to the mounted folder
CACHE_ENV = {
    "VLLM_CACHE_ROOT": "vllm",  # torch.compile artefacts, vLLM's own caches
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",  # FlashInfer keeps .cache/flashinfer under it
    "CUDA_CACHE_PATH": "cuda",
    "CUDA_CACHE_MAXSIZE": "",  # set below: the default 1 GiB evicts a large model's kernels
}
CUDA_CACHE_BYTES = str(4 * 1024**3)

VLLM_DEFAULT_READY_S = 600
BASE_S = 300  # imports, engine processes, profiling: measured 54-94 s for a tiny model on an H100
LOAD_GIB_PER_S = 0.5  # a conservative read rate for weights from local disk or NFS
COMPILE_S = 300  # torch.compile + CUDA graphs + JIT kernels, cold; DeepGEMM-heavy models take more
PER_EXTRA_NODE_S = 120  # distributed start-up across hosts
EP_WARMUP_S = 600  # expert parallel: DeepGEMM/all2all warm-up, cold; over 10 minutes at DP16
EP_WARMUP_PER_RANK_S = 30
DEFAULT_PARAMS_B = 8.0
_PARAMS = re.compile(r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)\s*[Bb](?![A-Za-z0-9])")
_BYTES_PER_PARAM = {"fp8": 1.0, "int8": 1.0, "awq": 0.5, "gptq": 0.5, "int4": 0.5, "bitsandbytes": 0.5}


def cache_env() -> tuple[tuple[str, str], ...]:
    env = {name: f"{CACHE_IN_CONTAINER}/{sub}" for name, sub in CACHE_ENV.items() if sub}
    env["CUDA_CACHE_MAXSIZE"] = CUDA_CACHE_BYTES
    return tuple(sorted(env.items()))


def cache_host_path(spec: Spec) -> str:
    return f"{spec.caches.host_path.rstrip('/')}/{spec.name}"


@dataclass(frozen=True)
class ReadyTimeout:
    seconds: int
    why: str


def ready_timeout(spec: Spec) -> ReadyTimeout:
    if spec.serve.ready_timeout is not None:
        return ReadyTimeout(spec.serve.ready_timeout, "serve.ready_timeout")
    params, known = model_params_b(spec)
    weights_gib = params * 1e9 * _BYTES_PER_PARAM.get(spec.model.quantization or "", 2.0) / 2**30
    nodes, dp, ep = len(spec.nodes), spec.serve.data_parallel_size, spec.serve.expert_parallel.enabled
    if spec.cluster.backend == "replicas":  # each node loads and starts a whole copy on its own
        nodes, read_gib = 1, weights_gib
    elif dp > 1 and not ep:  # every DP rank holds the whole model: a node reads one copy per local rank
        read_gib = weights_gib * max(1, dp // nodes)
    else:
        read_gib = weights_gib / nodes
    load = read_gib / LOAD_GIB_PER_S
    compile_s = 0 if spec.serve.enforce_eager else COMPILE_S
    warmup = EP_WARMUP_S + EP_WARMUP_PER_RANK_S * dp if ep and not spec.serve.enforce_eager else 0
    total = BASE_S + load + compile_s + warmup + PER_EXTRA_NODE_S * (nodes - 1)
    seconds = max(VLLM_DEFAULT_READY_S, 60 * math.ceil(total / 60))
    size = f"{params:g}B parameters" + ("" if known else " (assumed: no size in the model's name)")
    why = (f"{size}, {weights_gib:.0f} GiB of weights, {read_gib:.0f} GiB read per node at {LOAD_GIB_PER_S} GiB/s: "
           f"{BASE_S} s start + {load:.0f} s load + {compile_s} s compile"
           + (f" + {warmup} s expert-parallel warm-up" if warmup else "")
           + f" + {PER_EXTRA_NODE_S * (nodes - 1)} s multi-node, rounded up, at least vLLM's {VLLM_DEFAULT_READY_S} s")
    return ReadyTimeout(seconds, why)


def model_params_b(spec: Spec) -> tuple[float, bool]:
    """The parameter count in billions as the model's name says it ('Qwen3-Next-80B-A3B' -> 80)."""
    for text in (spec.model.source, spec.model.served_name or ""):
        found = _PARAMS.search(text.rsplit("/", 1)[-1])
        if found:
            return float(found.group(1)), True
    return DEFAULT_PARAMS_B, False
