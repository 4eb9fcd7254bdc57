#!/usr/bin/env bash
# On the lent GPU machine (one H200), from the repo root, after the GPU kit staged vLLM into /tmp/site
# (../shared/gpu/README.md): does `vllmgen down` stop a failed start's engine core? Spec:
# tests/fixtures/gpu/specs/h200-failed-start.yaml (process runtime, tiny model, eager).
#   killed-before  vllmgen from OLD_SRC (default: the checkout, before the fix): apply; once the engine core
#                  holds GPU memory the API server is killed (SIGKILL, as a crash or the OOM killer would);
#                  apply fails; down; what is left
#   killed-after   the same with vllmgen from NEW_SRC (default .fixes-carry: the fixed branch)
#   memory-after   NEW_SRC, another process holding most of the GPU: the engine core fails to start
#                  (not enough free memory); apply fails; down; what is left
# Anything an old vllmgen leaves is killed afterwards by its PID (this script started it). Transcripts to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/fs-out}
mkdir -p "$OUT"
ROOT="$(pwd)"
OLD_SRC=${OLD_SRC:-$ROOT}
NEW_SRC=${NEW_SRC:-$ROOT/.fixes-carry}
SPEC="$NEW_SRC/tests/fixtures/gpu/specs/h200-failed-start.yaml"
RUN="$HOME/.vllmgen/deployments/gpu-failed/run"
# shellcheck disable=SC1091
[ -f .gpu-kit/env.sh ] && source .gpu-kit/env.sh
vg() { local src=$1; shift; PYTHONPATH="$src:/tmp/vgsite:/tmp/site" python3 -P -m vllmgen "$@"; }
left() {  # vLLM processes still there (zombies are not processes that run)
  ps -eo pid,sid,stat,cmd | awk 'NR > 1 && $3 !~ /^Z/ && /vllm|VLLM/ && !/-m vllmgen/ && !/awk/ && !/failed-start-proof/'
}
session() { ps -eo pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ {print $1}'; }
record_pid() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' "$RUN/h200.json" 2>/dev/null; }

setup() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vgsite .whl-vg/*.whl || return 1
  rm -rf /tmp/tiny-llama && cp -r .gpu-kit/tiny-llama /tmp/tiny-llama
}

down_and_left() {  # down_and_left SRC NOTE: vllmgen down, then what is left of vLLM and on the GPU
  echo "### vllmgen down"
  vg "$1" down "$SPEC" --node h200; echo "down rc=$?"
  sleep 3
  echo "### processes left (vllm, not zombies):"
  left; echo "(end)"
  echo "### nvidia-smi after down$2"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; echo "(end)"
}

killed() {  # killed NAME SRC
  local name=$1 src=$2 build="/tmp/fs-build-$1" pid="" core="" apply
  vg "$src" render "$SPEC" -o "$build" >/dev/null || return 1
  {
    echo "### $name: vllmgen apply h200-failed-start.yaml --node h200 (vllmgen from $src, $(date -u +%FT%TZ))"
    vg "$src" apply "$SPEC" --node h200 --build-dir "$build" --timeout 300 &
    apply=$!
    for _ in $(seq 240); do  # the engine core has loaded the model: it holds GPU memory
      pid=$(record_pid)
      if [ -n "$pid" ] && grep -q "Model loading took" "$RUN/h200.log" 2>/dev/null; then
        core=$(ps -eo pid=,sid=,cmd= | awk -v s="$pid" '$2 == s && /VLLM::EngineCore/ {print $1}')
        [ -n "$core" ] && break
      fi
      sleep 0.5
    done
    echo "### the server's session while the engine core loads (recorded PID $pid)"
    ps -o pid,sid,pgid,stat,cmd --sid "$pid" | cut -c1-100
    if tr '\0' '\n' < "/proc/$core/environ" 2>/dev/null | grep -qx "VLLMGEN_NODE=gpu-failed/h200"; then
      echo "engine core $core: marker VLLMGEN_NODE in /proc/$core/environ: yes"
    else
      echo "engine core $core: marker VLLMGEN_NODE in /proc/$core/environ: no"
    fi
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
    echo "### the API server (PID $pid) is killed with SIGKILL"
    kill -KILL "$pid"
    wait "$apply"; echo "apply rc=$?"
    down_and_left "$src" ""
  } 2>&1 | tee "$OUT/$name.txt"
  pid=$(grep -o 'recorded PID [0-9]*' "$OUT/$name.txt" | head -1 | awk '{print $3}')
  for member in $(session "$pid"); do kill -KILL "$member"; done  # what this script started and down left
  cp "$RUN/h200.log" "$OUT/$name-engine.log" 2>/dev/null
  sleep 2
}

memory() {  # memory NAME SRC
  local name=$1 src=$2 build="/tmp/fs-build-$1" blocker
  vg "$src" render "$SPEC" -o "$build" >/dev/null || return 1
  python3 -c 'import time, torch; x = torch.empty(110 * 2**30, dtype=torch.uint8, device="cuda"); print("holding 110 GiB", flush=True); time.sleep(900)' &
  blocker=$!
  for _ in $(seq 60); do nvidia-smi --query-compute-apps=pid --format=csv,noheader | grep -q . && break; sleep 0.5; done
  {
    echo "### $name: another process (PID $blocker) holds 110 GiB; vllmgen apply h200-failed-start.yaml --node h200 (vllmgen from $src, $(date -u +%FT%TZ))"
    nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader
    vg "$src" apply "$SPEC" --node h200 --build-dir "$build" --timeout 300; echo "apply rc=$?"
    down_and_left "$src" " (the other process, PID $blocker, only)"
  } 2>&1 | tee "$OUT/$name.txt"
  kill -KILL "$blocker"
  cp "$RUN/h200.log" "$OUT/$name-engine.log" 2>/dev/null
}

setup || { echo "setup failed"; exit 1; }
for step in "$@"; do
  echo "=== $step"
  case "$step" in
    killed-before) killed killed-before "$OLD_SRC" ;;
    killed-after) killed killed-after "$NEW_SRC" ;;
    memory-after) memory memory-after "$NEW_SRC" ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
exit 0
