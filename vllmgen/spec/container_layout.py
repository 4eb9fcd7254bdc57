"""Where vllmgen's own mounts and cache variables sit inside the engine's container.

Fixed by vllmgen, not by the spec: the rules check the user's mounts and variables against them
(vllmgen.spec.rules), the plan mounts and sets them (vllmgen.plan).
"""

CONFIG_IN_CONTAINER = "/etc/vllmgen/serve-config.yaml"
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
CACHE_IN_CONTAINER = "/var/cache/vllmgen"  # the engine caches kept between starts (caches.keep)
# each cache's own variable, relative to the mounted folder
CACHE_ENV = {
    "VLLM_CACHE_ROOT": "vllm",  # torch.compile artefacts, vLLM's own caches
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",  # FlashInfer keeps .cache/flashinfer under it
    "CUDA_CACHE_PATH": "cuda",
    "CUDA_CACHE_MAXSIZE": "",  # set by vllmgen.plan.engine: the default 1 GiB evicts a large model's kernels
}
