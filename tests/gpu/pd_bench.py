"""Time to first token and total latency through prefill/decode disaggregation (vllm-router in P/D mode in
front of a prefill and a decode instance) against one combined instance on the same GPU, side by side in one
run (tests/gpu/pd-proof.sh). Not a test: numbers for README and bench/README.md.

Method: the same requests to both, alternating target per round so drift hits both alike: streaming
/v1/completions with a prompt of PROMPT_TOKENS token ids and exactly MAX_TOKENS output tokens (ignore_eos),
one request at a time; 3 warm-up rounds, then ROUNDS measured. TTFT: request sent -> first streamed text;
total: -> the stream's end. Medians and p90 per target.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import urllib.request

PROMPT_TOKENS, MAX_TOKENS, ROUNDS, WARMUP = 512, 32, 20, 3


def one(url: str, key: str | None, prompt: list[int]) -> tuple[float, float]:
    body = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": MAX_TOKENS, "ignore_eos": True,
                       "temperature": 0, "stream": True}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"{url}/v1/completions", body, headers)
    start = time.perf_counter()
    first = None
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=120) as answer:
        for raw in answer:
            line = raw.decode().strip()
            if first is None and line.startswith("data: {") and '"text"' in line:
                first = time.perf_counter() - start
    return (first if first is not None else float("nan")), time.perf_counter() - start


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_s": round(statistics.median(ordered), 4),
            "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 4), "min_s": round(ordered[0], 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pd", required=True)
    parser.add_argument("--combined", required=True)
    parser.add_argument("--key")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    deadline = time.time() + 300  # the combined instance was started beside the deployment: wait for it
    while time.time() < deadline:
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{args.combined}/health", timeout=3)
            break
        except OSError:
            time.sleep(2)
    rng = random.Random(22)
    targets = {"pd": (args.pd, args.key), "combined": (args.combined, None)}
    times: dict[str, dict[str, list[float]]] = {name: {"ttft": [], "total": []} for name in targets}
    for round_ in range(WARMUP + ROUNDS):
        prompt = [rng.randrange(3, 500) for _ in range(PROMPT_TOKENS)]  # a new prompt: no prefix-cache hit
        for name in (list(targets) if round_ % 2 == 0 else list(reversed(targets))):
            ttft, total = one(*targets[name], prompt)
            if round_ >= WARMUP:
                times[name]["ttft"].append(ttft)
                times[name]["total"].append(total)
    result = {"method": __doc__.split("Method: ")[1].strip(), "prompt_tokens": PROMPT_TOKENS,
              "max_tokens": MAX_TOKENS, "rounds": ROUNDS,
              "results": {name: {k: summary(v) for k, v in got.items()} for name, got in times.items()},
              "raw": times}
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)
    for name, got in result["results"].items():
        print(f"{name:9s} TTFT median {got['ttft']['median_s'] * 1000:.1f} ms (p90 {got['ttft']['p90_s'] * 1000:.1f}),"
              f" total median {got['total']['median_s'] * 1000:.1f} ms (p90 {got['total']['p90_s'] * 1000:.1f})")


if __name__ == "__main__":
    main()
