#!/usr/bin/env python3
"""Benchmark: the latency the gateway (nginx, as vllmgen renders and starts it) adds to a chat completion.

Not a test: it measures this machine and prints a table (``--json`` for machine output).

    python bench/bench_gateway.py              # 400 requests each way, 20 bursts of 32
    python bench/bench_gateway.py --quick

Method. The upstream is a fixed-latency stand-in on loopback (a threaded HTTP/1.1 server that answers
POST /v1/chat/completions with a small completion body after ``--delay-ms``), not a CPU vLLM: vLLM's own
run-to-run spread on this shared 2-core machine (milliseconds) would hide a sub-millisecond difference.
The gateway is a real nginx started by the rendered gateway/entrypoint.sh with the rendered nginx.conf
(its listen address and upstream pointed at loopback). Each round sends one request direct and one
through the gateway, alternating which goes first, over kept-alive connections (as an OpenAI client
does), so background load hits both alike; reported: p50 and p99 of each and of the per-round
difference. The burst: 32 concurrent requests (one connection each), wall time until the last answer,
direct and through the gateway, alternating, median of the rounds. Target: <= 1 ms p50 added.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "bench-key-0123456789abcdef"
BODY = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Hello there, how are you?"}, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}}).encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _upstream(port: int, delay: float) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on the client's delayed ACK (40 ms)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer.request_queue_size = 256  # 32 new connections at once (nginx to it)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _gateway(folder: Path, port: int, upstream: int) -> subprocess.Popen[bytes]:
    from vllmgen.plan import gateway
    from vllmgen.render.compile import compile_file

    plan = compile_file(ROOT / "specs" / "china-mirror.yaml").plan
    assert plan.gateway is not None
    door = replace(plan.gateway, listen="127.0.0.1", port=port, upstreams=(f"127.0.0.1:{upstream}",))
    (folder / "nginx.conf").write_text(gateway.nginx_conf(door, "bench", "bench"))
    (folder / "entrypoint.sh").write_text(gateway.entrypoint("bench"))
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen(["/bin/sh", str(folder / "entrypoint.sh"), str(folder / "nginx.conf"), nginx],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": os.environ["PATH"], "VLLM_API_KEY": KEY, "XDG_RUNTIME_DIR": str(runtime)})


class Client:
    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}

    def chat(self) -> float:
        started = time.perf_counter()
        self.connection.request("POST", "/v1/chat/completions", BODY, self.headers)
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return time.perf_counter() - started


def _burst(port: int, size: int) -> float:
    clients = [Client(port) for _ in range(size)]
    # connected first (Client does): the burst measures requests, not TCP handshakes
    gate = threading.Barrier(size + 1)
    threads = [threading.Thread(target=lambda c=c: (gate.wait(), c.chat())) for c in clients]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.connection.close()
    return elapsed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="the stand-in upstream's fixed latency")
    args = parser.parse_args()
    rounds, bursts = (100, 5) if args.quick else (400, 20)
    upstream_port, gateway_port = _free_port(), _free_port()
    server = _upstream(upstream_port, args.delay_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        process = _gateway(Path(tmp), gateway_port, upstream_port)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    Client(gateway_port).chat()
                    break
                except (OSError, RuntimeError, http.client.HTTPException):
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            direct, through = Client(upstream_port), Client(gateway_port)
            for _ in range(20):  # warm both paths (nginx's upstream keepalive, the server's threads)
                direct.chat(), through.chat()
            plain, fronted = [], []
            for index in range(rounds):
                if index % 2:
                    plain.append(direct.chat()), fronted.append(through.chat())
                else:
                    fronted.append(through.chat()), plain.append(direct.chat())
            burst_plain, burst_fronted = [], []
            for index in range(bursts):
                order = [(upstream_port, burst_plain), (gateway_port, burst_fronted)]
                for port, out in (order if index % 2 else order[::-1]):
                    out.append(_burst(port, 32))
        finally:
            process.terminate()
            process.wait(timeout=20)
            server.shutdown()
    added = [f - p for f, p in zip(fronted, plain, strict=True)]
    ms = 1000.0
    result = {
        "method": f"fixed-latency stand-in upstream on loopback ({args.delay_ms:g} ms), real nginx via the rendered "
                  "entrypoint and nginx.conf, interleaved, kept-alive connections",
        "requests": rounds,
        "direct_p50_ms": statistics.median(plain) * ms, "direct_p99_ms": _pct(plain, 0.99) * ms,
        "gateway_p50_ms": statistics.median(fronted) * ms, "gateway_p99_ms": _pct(fronted, 0.99) * ms,
        "added_p50_ms": statistics.median(added) * ms, "added_p99_ms": _pct(added, 0.99) * ms,
        "burst32_direct_ms": statistics.median(burst_plain) * ms,
        "burst32_gateway_ms": statistics.median(burst_fronted) * ms,
    }
    result["burst32_added_ms"] = result["burst32_gateway_ms"] - result["burst32_direct_ms"]
    result["target_p50_added_ms"] = 1.0
    result["verdict"] = "PASS" if result["added_p50_ms"] <= 1.0 else "MISS"
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"gateway latency, {result['method']}")
    print(f"{'':24}{'direct':>10}{'gateway':>10}{'added':>10}")
    print(f"{'chat p50 (ms)':24}{result['direct_p50_ms']:10.3f}{result['gateway_p50_ms']:10.3f}"
          f"{result['added_p50_ms']:10.3f}")
    print(f"{'chat p99 (ms)':24}{result['direct_p99_ms']:10.3f}{result['gateway_p99_ms']:10.3f}"
          f"{result['added_p99_ms']:10.3f}")
    print(f"{'32-request burst (ms)':24}{result['burst32_direct_ms']:10.3f}{result['burst32_gateway_ms']:10.3f}"
          f"{result['burst32_added_ms']:10.3f}")
    print(f"target: <= 1 ms added at p50: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
