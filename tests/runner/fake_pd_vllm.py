#!/usr/bin/env python3
"""A stand-in for a prefill or decode `vllm serve` with the NixlConnector (stdlib only), for the P/D runner
tests: the port and role come from the command line as vllmgen renders them (--port, --kv-transfer-config);
a prefill (kv_producer) asked with kv_transfer_params.do_remote_decode answers the parameters a decode needs;
a decode (kv_consumer) given them logs the NIXL handshake once and counts a transfer on /metrics, with vLLM's
metric names. FAKE_PD_RECOMPUTE=1 makes the decode answer without reading anything (it "recomputes"): the
counters stay where they are. Every request is logged (path, kv_transfer_params)."""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

argv = sys.argv[1:]


def last(flag: str) -> str:
    return argv[len(argv) - 1 - argv[::-1].index(flag) + 1]


port, host = int(last("--port")), last("--host")
role = json.loads(last("--kv-transfer-config"))["kv_role"]
config = argv[argv.index("--config") + 1]
name = next(line.split(":", 1)[1].strip().strip('"') for line in open(config) if line.startswith("served-model-name:"))
recompute = role == "kv_consumer" and bool(os.environ.get("FAKE_PD_RECOMPUTE"))
counts = {"transfers": 0, "bytes": 0}
lock = threading.Lock()
print(f"INFO fake vLLM {role} on {host}:{port}, side channel {os.environ.get('VLLM_NIXL_SIDE_CHANNEL_HOST')}:"
      f"{os.environ.get('VLLM_NIXL_SIDE_CHANNEL_PORT')}", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # noqa: ANN002
        pass

    def _send(self, body: object, status: int = 200, text: bool = False) -> None:
        data = (body if text else json.dumps(body)).encode()  # type: ignore[union-attr]
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _denied(self) -> bool:
        key = os.environ.get("VLLM_API_KEY")
        if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {key}":
            print(f"INFO refused {self.path}: Authorization {'absent' if self.headers.get('Authorization') is None else 'wrong'}",
                  flush=True)
            self._send({"error": "Unauthorized"}, 401)
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802
        if self._denied():
            return
        if self.path == "/health":
            self._send({})
        elif self.path == "/metrics":
            with lock:
                page = (f'vllm:nixl_xfer_time_seconds_count{{engine="0",model_name="{name}"}} {counts["transfers"]}.0\n'
                        f'vllm:nixl_bytes_transferred_sum{{engine="0",model_name="{name}"}} {counts["bytes"]}.0\n'
                        f'vllm:nixl_num_failed_transfers_total{{engine="0",model_name="{name}"}} 0.0\n')
            self._send(page if role == "kv_consumer" else "", text=True)
        else:
            self._send({"object": "list", "data": [{"id": name}]})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self._denied():
            return
        params = body.get("kv_transfer_params") or {}
        print(f"INFO request {self.path} kv_transfer_params={json.dumps(params, sort_keys=True)}", flush=True)
        answer: dict = {"id": "fake", "object": "text_completion", "model": name,
                        "choices": [{"index": 0, "text": " hi", "message": {"role": "assistant", "content": "hi"},
                                     "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}
        if role == "kv_producer" and params.get("do_remote_decode"):
            answer["kv_transfer_params"] = {
                "do_remote_prefill": True, "do_remote_decode": False, "remote_block_ids": [1, 2],
                "remote_engine_id": "fake-prefill", "remote_host": os.environ.get("VLLM_NIXL_SIDE_CHANNEL_HOST"),
                "remote_port": int(os.environ.get("VLLM_NIXL_SIDE_CHANNEL_PORT", "0")), "tp_size": 1}
        elif role == "kv_consumer" and params.get("do_remote_prefill") and params.get("remote_block_ids") \
                and not recompute:
            with lock:
                if counts["transfers"] == 0:
                    print("INFO [base_worker.py:1094] NIXL compatibility check passed (hash: fake)", flush=True)
                    print("INFO [base_worker.py:2255] Transfer plan: TransferTopology(tp_ratio=1)", flush=True)
                counts["transfers"] += 1
                counts["bytes"] += 32768 * len(params["remote_block_ids"])
        self._send(answer)


server = ThreadingHTTPServer((host, port), Handler)
print(f"INFO Starting vLLM API server on http://{host}:{port}", flush=True)
server.serve_forever()
