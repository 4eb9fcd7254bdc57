#!/usr/bin/env bash
# On the lent GPU machine (one H200), from the repo root, issue 22's proof: prefill/decode disaggregation with
# vLLM's NixlConnector, deployed by vllmgen's process runtime from tests/fixtures/gpu/specs/h200-pd.yaml.
# Before it (earlier calls of the same machine): the GPU kit staged vLLM into /tmp/site; nixl + nixl-cu13 are in
# /tmp/nixlsite; vllm-router 0.1.17 and vllmgen's wheels (.whl-vg) in /tmp/vgsite; nginx in /tmp/vg-nginx.
# vllmgen itself comes from $VG_SRC (default .pd-carry/src: the branch's vllmgen/ and templates/).
#   apply (decode, prefill, router, gateway, kv-transfer) -> a completion through the gateway -> the decode's
#   NIXL metrics -> status -> benchmark (P/D through the router against one combined instance on the same GPU,
#   side by side) -> down, with no process left. Transcripts to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/pd-out}
mkdir -p "$OUT"
ROOT="$(pwd)"
SRC=${VG_SRC:-$ROOT/.pd-carry/src}
SPEC="$SRC/tests/fixtures/gpu/specs/h200-pd.yaml"
# shellcheck disable=SC1091
[ -f .gpu-kit/env.sh ] && source .gpu-kit/env.sh
export PYTHONPATH="$SRC:/tmp/vgsite:/tmp/site"
export VG_GPU_KEY=gpu-pd-proof-key-0123456789abcdef
RUN="$HOME/.vllmgen/deployments/gpu-pd/run"
vg() { python3 -P -m vllmgen "$@"; }  # -P: not the checkout's own vllmgen in the current folder
left() {  # processes of the deployment still there (zombies are not processes that run)
  ps -eo pid,pgid,stat,cmd | awk 'NR > 1 && $3 !~ /^Z/ && /vllm|VLLM|nginx|router/ && !/awk/ && !/pd-proof/'
}
nixl_lines() { curl -s -m 5 http://127.0.0.1:8200/metrics | grep -E '^vllm:nixl_(xfer_time_seconds_count|bytes_transferred_sum|num_failed_transfers)' ; }

rm -rf /tmp/tiny-llama && cp -r .gpu-kit/tiny-llama /tmp/tiny-llama
ls /tmp/vg-nginx/nginx /tmp/vgsite/bin/vllm-router >/dev/null || { echo "staging missing (nginx, vllm-router)"; exit 3; }
python3 -c "import sys; sys.path[:0] = ['/tmp/site', '/tmp/nixlsite']; import nixl._api" || { echo "nixl missing"; exit 3; }

# the combined instance the benchmark compares with: same model and flags, no KV connector, 0.3 of the GPU
setsid /tmp/site/bin/vllm serve /tmp/tiny-llama --load-format dummy --served-model-name tiny --host 127.0.0.1 \
  --port 8300 --max-model-len 1024 --gpu-memory-utilization 0.3 --enforce-eager > /tmp/combined.log 2>&1 < /dev/null &
COMBINED=$!

{
  echo "### vllmgen validate / render h200-pd.yaml ($(date -u +%FT%TZ))"
  vg validate "$SPEC"; vg render "$SPEC" -o /tmp/pdbuild
  nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader
  echo "### vllmgen apply h200-pd.yaml --all (process runtime)"
  began=$SECONDS
  vg apply "$SPEC" --all --build-dir /tmp/pdbuild --timeout 900; echo "apply rc=$? in $((SECONDS - began)) s"
  echo "### nvidia-smi while serving"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
  echo "### decode's NIXL metrics before one more completion through the gateway"
  nixl_lines
  echo "### POST /v1/completions through the gateway, with the key"
  curl -s -m 60 -w ' http=%{http_code} %{time_total}s\n' http://127.0.0.1:8812/v1/completions \
    -H "Authorization: Bearer $VG_GPU_KEY" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":"The KV cache of this prompt is computed by the prefill instance and read by the decode instance over NIXL.","max_tokens":16}'
  echo "### the same without the key"
  curl -s -m 10 -o /dev/null -w 'http=%{http_code}\n' http://127.0.0.1:8812/v1/completions -H 'Content-Type: application/json' -d '{"model":"tiny","prompt":"x","max_tokens":1}'
  sleep 6
  echo "### decode's NIXL metrics after"
  nixl_lines
  echo "### vllmgen status"
  vg status "$SPEC" --all; echo "status rc=$?"
  vg status "$SPEC" --all --output json > "$OUT/pd-status.json"
  echo "### benchmark: P/D through the router vs one combined instance, same GPU, side by side"
  timeout 300 python3 "$SRC/tests/gpu/pd_bench.py" --pd http://127.0.0.1:8090 --combined http://127.0.0.1:8300 \
    --key "$VG_GPU_KEY" --out "$OUT/pd-bench.json"; echo "bench rc=$?"
  echo "### vllmgen down"
  vg down "$SPEC" --all; echo "down rc=$?"
  kill -TERM "$COMBINED" 2>/dev/null; sleep 5
  echo "### processes left (vllm, nginx, router; not zombies):"
  left; echo "(end)"
  echo "### nvidia-smi after down"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; echo "(end)"
} 2>&1 | tee "$OUT/pd-apply.txt"
curl -s -m 5 http://127.0.0.1:8200/metrics > /dev/null 2>&1  # (down: nothing answers)
cp "$RUN/decode-0.log" "$OUT/pd-decode.log" 2>/dev/null
cp "$RUN/prefill-0.log" "$OUT/pd-prefill.log" 2>/dev/null
cp "$RUN/decode-0.router.log" "$OUT/pd-router.log" 2>/dev/null
grep -E 'nixl|NIXL|KV|kv_transfer|Transfer plan|ERROR|Error' /tmp/combined.log "$RUN"/*.log 2>/dev/null | tail -200 > "$OUT/pd-grep.txt"
exit 0
