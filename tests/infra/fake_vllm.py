# A stand-in for `vllm serve` in the runner's container tests (standard library only).
# It takes the generated command line (serve MODEL --config FILE [...]), reads the config for
# the served name, host and port, and answers /health, /v1/models, /v1/chat/completions and /v1/completions,
# enforcing VLLM_API_KEY as vLLM does. FAKE_VLLM_FAIL=1 makes it die at once, as a bad flag would;
# FAKE_VLLM_FATAL=1 logs, in vLLM's format, that its engine failed to start (NCCL) and then hangs, alive.
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def read_config(path):
    config = {}
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].rstrip()
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                config[key.strip()] = value.strip().strip("'\"")
    return config


def main(argv):
    # as PID 1 a process gets no default SIGTERM action: stop the way vLLM does on `docker stop`
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("fake vllm argv:", json.dumps(argv), flush=True)
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("fake vllm: simulated start-up failure (FAKE_VLLM_FAIL)", flush=True)
        return 3
    if os.environ.get("FAKE_VLLM_FATAL"):
        engine = "(EngineCore_DP0 pid=77) ERROR 12-03 10:00:02 [core.py:1108] "
        for line in ("EngineCore failed to start.", "Traceback (most recent call last):",
                     '  File "/venv/vllm/distributed/parallel_state.py", line 1180, in init_model_parallel',
                     "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:3690, unhandled "
                     "cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.28.9",
                     "ncclUnhandledCudaError: Call to CUDA function failed."):
            print(engine + line, flush=True)
        time.sleep(600)  # the API server hangs on, as a real one can
        return 0
    if not argv or argv[0] != "serve" or "--config" not in argv:
        print("fake vllm: expected `serve MODEL --config FILE ...`", flush=True)
        return 2
    config = read_config(argv[argv.index("--config") + 1])
    name = config.get("served-model-name", argv[1])
    key = os.environ.get("VLLM_API_KEY")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self):
            if not self.path.startswith("/v1") or not key:
                return True
            if self.headers.get("Authorization") == f"Bearer {key}":
                return True
            self._send(401, {"error": "Unauthorized"})
            return False

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            elif self._authorized() and self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            elif not self.path.startswith("/v1") or key is None or self.headers.get("Authorization"):
                self._send(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorized():
                return
            if self.path == "/v1/chat/completions":
                message = {"role": "assistant", "content": "hi from fake"}
                self._send(200, {"object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": message}]})
            elif self.path == "/v1/completions":  # verify asks for a text completion too
                self._send(200, {"object": "text_completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "text": " hi from fake", "finish_reason": "length"}]})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((config.get("host", "0.0.0.0"), int(config.get("port", 8000))), Handler)
    print(f"fake vllm serving {name} on {server.server_address}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
