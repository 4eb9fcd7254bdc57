"""The front door: rendered nginx configs pass the real `nginx -t`; the entrypoint refuses keys it cannot
write safely; where each server listens (vllmgen.plan.exposure); and a real nginx started by the rendered
entrypoint, in front of a stand-in upstream on loopback, refuses every path without the key and forwards
only the client API with it (the slow tier does the same in front of a real vLLM and vllm-router)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from vllmgen.plan import gateway
from vllmgen.render.compile import compile_file

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed (tests/infra/setup.sh)")
KEY = "test.KEY+with/every~allowed_char-=="
ATTACKS = ("/invocations", "/tokenize", "/detokenize", "/metrics", "/openapi.json", "/docs", "/version",
           "/add_worker?url=http://192.0.2.66:8000", "/remove_worker?url=http://127.0.0.1:8000", "/list_workers",
           "/scale_elastic_ep", "/pooling", "/classify", "/v1/models/../../invocations", "/%69nvocations",
           "/v1/chat/completions/../../tokenize", "/V1/models")


def _confs() -> list[Path]:
    return sorted(BUILD.glob("*/gateway/nginx.conf"))


def test_specs_with_a_key_have_a_gateway_and_the_others_none() -> None:
    for spec in sorted((ROOT / "specs").glob("*.yaml")):
        plan = compile_file(spec).plan
        assert (plan.gateway is not None) == (plan.endpoint.api_key is not None), spec
        if plan.gateway is not None:
            assert plan.endpoint.url == plan.gateway.url  # clients (and verify) use the front door
            assert plan.direct_endpoint != plan.endpoint
    assert len(_confs()) >= 3


def test_servers_listen_on_loopback_only_when_everything_that_reaches_them_is_on_their_node() -> None:
    replicas = compile_file(ROOT / "specs" / "dense-replicas-router.yaml").plan
    a, b = replicas.nodes
    assert a.container.command[-2:] == ("--host", "127.0.0.1")  # router, gateway and Prometheus on replica-a
    assert b.container.command[-2:] == ("--host", b.address)  # reached from replica-a
    assert replicas.router is not None and replicas.router.argv()[:2] == ("--host", "127.0.0.1")
    assert replicas.gateway is not None and replicas.gateway.listen == a.address
    assert replicas.gateway.upstreams == (f"127.0.0.1:{replicas.router.port}",)
    assert dict(replicas.server_urls) == {a.name: "http://127.0.0.1:8000", b.name: f"http://{b.address}:8000"}
    assert "host" not in replicas.serve_config  # per node, on its command line


def test_a_node_driven_over_ssh_listens_on_its_address_so_vllmgen_can_check_it(tmp_path: Path) -> None:
    spec = (ROOT / "specs" / "china-mirror.yaml").read_text()
    assert "docker_host" not in spec
    ssh = tmp_path / "ssh.yaml"
    ssh.write_text(spec.replace("    address: 198.51.100.21\n",
                                "    address: 198.51.100.21\n    docker_host: ssh://ops@198.51.100.21\n"))
    # china-mirror uses a bridge network: Docker's port map binds the host side, the server every address inside
    plan = compile_file(ssh).plan
    assert plan.head.container.ports == (("198.51.100.21:8000", 8000),)
    assert plan.head.container.command[-2:] == ("--host", "0.0.0.0")
    local = compile_file(ROOT / "specs" / "china-mirror.yaml").plan
    assert local.head.container.ports == (("127.0.0.1:8000", 8000),)
    assert dict(local.server_urls) == {"gz-gpu-01": "http://127.0.0.1:8000"}


@needs_nginx
@pytest.mark.parametrize("conf", _confs(), ids=lambda p: p.parent.parent.name)
def test_rendered_config_passes_nginx_t(conf: Path, tmp_path: Path) -> None:
    """`nginx -t` as the entrypoint runs it: a copy beside a key.map, the prefix a private folder."""
    (tmp_path / "temp").mkdir()
    # -t binds the listen address, which is the spec's public one (not this machine's): a loopback port instead
    text, count = re.subn(r"(?m)^        listen [^;]+;$", f"        listen 127.0.0.1:{_free_port()};", conf.read_text())
    assert count == 1
    (tmp_path / "nginx.conf").write_text(text)
    (tmp_path / "key.map").write_text('map $http_authorization $vllmgen_key_ok {\n    default 0;\n'
                                      '    "~^Bearer abc[.]d$" 1;\n}\n')
    result = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.parametrize("key", ["", "has space", 'quo"te', "semi;colon", "dollar$x", "brace}", "new\nline",
                                 "back\\slash", "a=b"])
def test_entrypoint_refuses_keys_it_cannot_write_as_they_are(key: str, tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(gateway.entrypoint("test"))
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    result = subprocess.run(["/bin/sh", str(script), "/nonexistent.conf", "/bin/false"], capture_output=True,
                            text=True, env={"PATH": os.environ["PATH"], "VLLM_API_KEY": key,
                                            "XDG_RUNTIME_DIR": str(runtime)}, timeout=30)
    assert result.returncode == 64, result.stderr
    assert list(runtime.iterdir()) == []  # refused before anything was written
    assert key == "" or key not in result.stderr


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Upstream.seen.append(self.path)
        if self.path.startswith("/v1/chat/completions") and "stream" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n in range(3):
                data = f"data: {n}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = f'{{"path": "{self.path}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, key: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@pytest.fixture
def front_door(tmp_path: Path):  # noqa: ANN201
    upstream_port, port = _free_port(), _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", upstream_port), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    plan = compile_file(ROOT / "specs" / "china-mirror.yaml").plan
    assert plan.gateway is not None
    door = replace(plan.gateway, listen="127.0.0.1", port=port, upstreams=(f"127.0.0.1:{upstream_port}",),
                   metrics_from=None)
    conf, script, runtime = tmp_path / "nginx.conf", tmp_path / "entrypoint.sh", tmp_path / "runtime"
    conf.write_text(gateway.nginx_conf(door, "test", "test"))
    script.write_text(gateway.entrypoint("test"))
    runtime.mkdir(mode=0o700)
    log = open(tmp_path / "nginx.log", "wb")  # noqa: SIM115 - closed in the finalizer
    process = subprocess.Popen(["/bin/sh", str(script), str(conf), NGINX], stdout=log, stderr=subprocess.STDOUT,
                               env={"PATH": os.environ["PATH"], "VLLM_API_KEY": KEY, "XDG_RUNTIME_DIR": str(runtime),
                                    "UNRELATED_SECRET": "must-not-reach-nginx"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _get(f"{url}/health", KEY)[0] != 200:
            assert process.poll() is None, (tmp_path / "nginx.log").read_text()
            time.sleep(0.1)
        yield url, process, runtime
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
        server.shutdown()


@needs_nginx
def test_real_nginx_refuses_everything_without_the_key_and_forwards_only_the_client_api(front_door) -> None:  # noqa: ANN001
    url, process, runtime = front_door
    _Upstream.seen.clear()
    for path in (*gateway.CLIENT_PATHS, *ATTACKS):
        for method in ("GET", "POST"):
            assert _get(url + path, None, method)[0] == 401, path
            assert _get(url + path, "wrong-key", method)[0] == 401, path
            assert _get(url + path, KEY.lower(), method)[0] == 401, path  # the key is compared case-sensitively
    assert _Upstream.seen == []  # nothing reached the upstream without the key
    for path in ATTACKS:
        assert _get(url + path, KEY)[0] == 404, path
    assert _Upstream.seen == []
    for path in gateway.CLIENT_PATHS:
        status, body = _get(url + path + "?q=1", KEY, "POST")
        assert status == 200 and body == f'{{"path": "{path}?q=1"}}'.encode(), path
    assert _Upstream.seen == [f"{path}?q=1" for path in gateway.CLIENT_PATHS]  # each to exactly its own path
    # the key's file is gone once nginx runs, and nginx has none of the starter's environment
    (folder,) = runtime.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["nginx.conf", "nginx.pid", "temp"]
    environ = Path(f"/proc/{process.pid}/environ").read_bytes()
    assert b"must-not-reach-nginx" not in environ and KEY.encode() not in environ
    assert KEY.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()


@needs_nginx
def test_real_nginx_streams_server_sent_events_as_they_come(front_door) -> None:  # noqa: ANN001
    url = front_door[0]
    request = urllib.request.Request(f"{url}/v1/chat/completions?stream=1", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    arrivals = []
    started = time.monotonic()
    with opener.open(request, timeout=10) as response:
        for line in response:
            if line.startswith(b"data:"):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 3
    assert arrivals[0] < 0.25 and arrivals[2] - arrivals[0] > 0.4  # not buffered until the end


def test_docker_publishes_a_bridge_server_on_the_chosen_address_only() -> None:
    """`--publish 127.0.0.1:8000:8000` reaches the engine as a (host IP, port) binding: never every interface."""
    from vllmgen.targets.docker import dockerargs
    from vllmgen.runner.executor import RunRequest
    from vllmgen.runner.host import LocalHost
    from vllmgen.targets.docker.sdk import DockerSdkExecutor

    plan = compile_file(ROOT / "specs" / "china-mirror.yaml").plan
    request = RunRequest(plan.head.container, "/srv/deploy", {"HF_TOKEN": "x", "VLLM_API_KEY": "y"}, True)
    _, body = DockerSdkExecutor("n", None, LocalHost())._create_request(request)
    assert body["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}
    assert body["ExposedPorts"] == {"8000/tcp": {}}
    _, v6 = dockerargs.create_request(["docker", "run", "--detach", "--publish", "[fd00::1]:8000:8000", "img"], {})
    assert v6["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "fd00::1", "HostPort": "8000"}]}
    gateway = plan.gateway_container
    assert gateway is not None
    _, door = DockerSdkExecutor("n", None, LocalHost())._create_request(RunRequest(gateway, "/srv/deploy",
                                                                                   {"VLLM_API_KEY": "k"}, False))
    assert door["HostConfig"]["NetworkMode"] == "host" and door["HostConfig"]["PortBindings"] == {}
    assert "VLLM_API_KEY=k" in door["Env"]
    assert "k" not in door["Cmd"] and not door["HostConfig"]["IpcMode"]
