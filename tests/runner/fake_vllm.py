#!/usr/bin/env python3
"""A stand-in for `vllm serve` (stdlib only) for the process runtime's fast tests: it reads the
port from --config, answers /health, /v1/models and chat completions, records its argv and
environment in $FAKE_VLLM_RECORD, and starts one child (as vLLM's engine core) in its group, which
starts a worker in a process group of its own (same session). Both title themselves as vLLM's do, with
setproctitle's method: over the command line and the environment (our marker gone from
/proc/PID/environ) unless SPT_NOENV is set, then over the command line only.
FAKE_VLLM_EXIT=N makes it exit at once with N. FAKE_VLLM_FATAL=1 logs, as vLLM does, that its engine
failed to start (a traceback ending in CUDA out of memory) and then hangs, alive and never serving;
FAKE_VLLM_FATAL=exit logs the same and exits 1, its engine and worker left running (as seen on the H200).
A file at $FAKE_VLLM_RECORD.die makes a serving one log that its engine died and answer /health 500."""

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def set_title(title: str) -> None:
    """setproctitle's clobbering on Linux: the title over argv's memory, and over the environment's right
    after it unless SPT_NOENV is set; the rest zeroed (so /proc/PID/environ no longer shows the marker)."""
    fields = open("/proc/self/stat", "rb").read().rsplit(b") ", 1)[1].split()
    arg_start, arg_end, env_end = int(fields[45]), int(fields[46]), int(fields[48])  # stat fields 48, 49, 51
    end = arg_end if os.environ.get("SPT_NOENV") else env_end
    data = title.encode()[:end - arg_start - 1].ljust(end - arg_start, b"\0")
    ctypes.memmove(arg_start, data, len(data))


if sys.argv[1:] == ["--engine-core"]:  # vLLM's engine core: starts a worker, titles itself, waits
    worker = subprocess.Popen([sys.executable, __file__, "--worker"])
    set_title("VLLM::EngineCore")
    time.sleep(600)
    sys.exit(0)
if sys.argv[1:] == ["--worker"]:  # a worker that leads a process group of its own, in the server's session
    os.setpgid(0, 0)
    set_title("VLLM::Worker")
    time.sleep(600)
    sys.exit(0)
if os.environ.get("FAKE_VLLM_EXIT"):
    print("ERROR 11-26 10:00:00 [fake.py:1] bad flag --nope", flush=True)
    sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
argv = sys.argv[1:]
config = argv[argv.index("--config") + 1]
port = next(int(line.split(":")[1].strip().strip('"')) for line in open(config) if line.startswith("port:"))
name = next(line.split(":", 1)[1].strip().strip('"') for line in open(config) if line.startswith("served-model-name:"))
with open(os.environ["FAKE_VLLM_RECORD"], "w") as out:
    json.dump({"argv": argv, "env": dict(os.environ), "pid": os.getpid(), "pgid": os.getpgid(0),
               "sid": os.getsid(0)}, out)
child = subprocess.Popen([sys.executable, __file__, "--engine-core"])
print(f"INFO 11-26 10:00:00 [core.py:1] Initializing a V1 LLM engine (v0.0.0-fake) child {child.pid}", flush=True)
ENGINE = f"(EngineCore pid={child.pid}) ERROR 11-26 10:00:02 [core.py:1108] "
if os.environ.get("FAKE_VLLM_FATAL"):
    for line in ("EngineCore failed to start.", "Traceback (most recent call last):",
                 '  File "/venv/vllm/v1/engine/core.py", line 1082, in run_engine_core',
                 "    raise torch.OutOfMemoryError(...)",
                 "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                 "capacity of 79.19 GiB of which 1.06 GiB is free."):
        print(ENGINE + line, flush=True)
    if os.environ["FAKE_VLLM_FATAL"] == "exit":
        sys.exit(1)  # the API server gives up; its engine core lives on
    time.sleep(600)  # the API server hangs on, as a real one can
dead = threading.Event()


def die_on_request() -> None:
    while not os.path.exists(os.environ["FAKE_VLLM_RECORD"] + ".die"):
        time.sleep(0.1)
    print(ENGINE + "EngineCore encountered a fatal error.", flush=True)
    print(f"(APIServer pid={os.getpid()}) ERROR 11-26 10:05:00 [async_llm.py:1] Engine core proc EngineCore "
          "died unexpectedly, shutting down client.", flush=True)
    dead.set()


threading.Thread(target=die_on_request, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # noqa: ANN002
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _denied(self) -> bool:
        key = os.environ.get("VLLM_API_KEY")
        if key and self.path.startswith("/v1/") and self.headers.get("Authorization") != f"Bearer {key}":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802
        if self._denied():
            return
        if self.path == "/health" and dead.is_set():
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/health":
            self._send({})
        else:
            self._send({"object": "list", "data": [{"id": name}]})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._denied():
            return
        self._send({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})


server = HTTPServer(("127.0.0.1", port), Handler)
print(f"INFO 11-26 10:00:01 [api_server.py:1] Starting vLLM API server on http://127.0.0.1:{port}", flush=True)
print("INFO:     Application startup complete.", flush=True)
server.serve_forever()
