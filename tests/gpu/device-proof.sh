#!/usr/bin/env bash
# On the lent GPU machine, from the repo root, after the GPU kit staged vLLM into /tmp/site
# (../shared/gpu/README.md): vllmgen's process runtime, proven end to end.
#   bash tests/gpu/device-proof.sh STEP...
#   probe  where we are (branch, files), nvidia-smi
#   setup  vllmgen's own wheels (.whl-vg: ruamel.yaml) into /tmp/vgsite; the tiny model to /tmp/tiny-llama
#   doctor vllmgen doctor on the one-GPU spec (table and JSON)
#   one    apply -> status -> down of tests/fixtures/gpu/specs/h100-one.yaml (1 GPU)
#   tp2    the same for h100-tp2.yaml (TP=2 in one process, GPUs 0,1)
#   mp2    the same for h100-mp2.yaml (two mp nodes sharing the host: GPU 0 and GPU 1)
#   keyed  issue 19 on one H200: h200-keyed.yaml (compile on, kept caches, an API key, the gateway from the
#          carried nginx): apply (cold) -> status -> down -> apply (warm, caches kept) -> status -> down,
#          with no process left; transcripts to $OUT/h200-*
# Transcripts go to $OUT (they come back; tests/fixtures/gpu/ keeps them).
set -uo pipefail
OUT=${OUT:-/tmp/vg-out}
mkdir -p "$OUT"
ROOT="$(pwd)"
SPECS="$ROOT/tests/fixtures/gpu/specs"
# shellcheck disable=SC1091
[ -f .gpu-kit/env.sh ] && source .gpu-kit/env.sh
export PYTHONPATH="/tmp/site:/tmp/vgsite:$ROOT"
vg() { python3 -m vllmgen "$@"; }

left() {  # vLLM processes still there (zombies are not processes that run)
  ps -eo pid,pgid,stat,cmd | awk 'NR > 1 && $3 !~ /^Z/ && /vllm|VLLM/ && !/awk/ && !/device-proof/'
}

step_probe() {
  git rev-parse --abbrev-ref HEAD 2>&1; ls vllmgen/targets/process/procexec.py 2>&1
  nvidia-smi -L; nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  python3 -V
}

step_setup() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vgsite .whl-vg/*.whl || return 1
  rm -rf /tmp/tiny-llama && cp -r .gpu-kit/tiny-llama /tmp/tiny-llama
  python3 -c 'import vllmgen, ruamel.yaml, pydantic, jinja2, click; print("vllmgen imports ok")'
}

step_doctor() {
  vg render "$SPECS/h100-one.yaml" -o /tmp/gbuild
  { echo "\$ vllmgen doctor h100-one.yaml --node h100"; vg doctor "$SPECS/h100-one.yaml" --node h100; echo "rc=$?"; } 2>&1 | tee "$OUT/doctor-h100.txt"
  vg doctor "$SPECS/h100-one.yaml" --node h100 --output json > "$OUT/doctor-h100.json" 2>&1
  return 0
}

prove() {  # prove NAME SPEC SCOPE...
  local name=$1 spec=$2; shift 2
  local dep; dep=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$spec")
  vg render "$spec" -o /tmp/gbuild >/dev/null
  {
    echo "### vllmgen apply $(basename "$spec") $* (process runtime, $(date -u +%FT%TZ))"
    nvidia-smi --query-gpu=index,name,memory.used --format=csv,noheader
    vg apply "$spec" "$@" --build-dir /tmp/gbuild --timeout 480; echo "apply rc=$?"
    echo "### nvidia-smi while serving"
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
    nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
    echo "### vllmgen status"
    vg status "$spec" "$@"; echo "status rc=$?"
    vg status "$spec" "$@" --output json > "$OUT/status-$name.json"
    echo "### second apply (idempotent)"
    vg apply "$spec" "$@" --build-dir /tmp/gbuild --timeout 60 2>&1 | tail -2
    echo "### vllmgen down"
    vg down "$spec" "$@"; echo "down rc=$?"
    sleep 3
    echo "### processes left (vllm, not zombies):"
    left; echo "(end)"
    echo "### nvidia-smi after down"
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; echo "(end)"
  } 2>&1 | tee "$OUT/apply-$name.txt"
  for log in "$HOME/.vllmgen/deployments/$dep/run/"*.log; do
    cp "$log" "$OUT/engine-$name-$(basename "$log")"
  done
}

step_keyed() {
  local spec="$SPECS/h200-keyed.yaml" run
  export VG_GPU_KEY=gpu-proof-key-0123456789abcdef
  mkdir -p /tmp/vg-nginx && cp .whl-vg/nginx/nginx /tmp/vg-nginx/nginx && chmod 755 /tmp/vg-nginx/nginx
  ldd /tmp/vg-nginx/nginx | grep -i "not found" && { echo "nginx lacks a library here"; return 1; }
  rm -rf "$HOME/.cache/vllmgen-engine/gpu-keyed"  # the first start is cold
  vg render "$spec" -o /tmp/gbuild >/dev/null
  for run in cold warm; do
    {
      echo "### vllmgen apply h200-keyed.yaml --node h200 ($run start, process runtime, $(date -u +%FT%TZ))"
      local began=$SECONDS
      vg apply "$spec" --node h200 --build-dir /tmp/gbuild --timeout 900; echo "apply rc=$? in $((SECONDS - began)) s"
      echo "### vllmgen status"
      vg status "$spec" --node h200; echo "status rc=$?"
      vg status "$spec" --node h200 --output json > "$OUT/h200-status-$run.json"
      echo "### vllmgen down"
      vg down "$spec" --node h200; echo "down rc=$?"
      sleep 2
      echo "### processes left (vllm or nginx, not zombies):"
      ps -eo pid,pgid,stat,cmd | awk 'NR > 1 && $3 !~ /^Z/ && /vllm|VLLM|nginx/ && !/awk/ && !/device-proof/'; echo "(end)"
      echo "### nvidia-smi after down"
      nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; echo "(end)"
    } 2>&1 | tee "$OUT/h200-apply-$run.txt"
    cp "$HOME/.vllmgen/deployments/gpu-keyed/run/h200.log" "$OUT/h200-engine-$run.log" 2>/dev/null
  done
  ls -la "$HOME/.cache/vllmgen-engine/gpu-keyed" > "$OUT/h200-caches.txt" 2>&1
  du -sh "$HOME/.cache/vllmgen-engine/gpu-keyed"/* >> "$OUT/h200-caches.txt" 2>&1
}

step_one() { prove one "$SPECS/h100-one.yaml" --node h100; }
step_tp2() { prove tp2 "$SPECS/h100-tp2.yaml" --node h100; }
step_mp2() { prove mp2 "$SPECS/h100-mp2.yaml" --all; }

for step in "$@"; do
  echo "=== $step"
  "step_$step" || { echo "step $step failed"; exit 1; }
done
