"""ssh to a node: one argv builder, ssh's failures in words, and a Docker API transport over ssh.

Every ssh this runner starts comes from ``ssh_argv``: BatchMode (never a prompt), a connect
timeout, keep-alives, host keys checked against the user's known_hosts (``StrictHostKeyChecking
yes``: an unknown key is an error, never accepted), and ``--`` before the destination, whose
parts come from a parsed ``vllmgen.spec.endpoints.Endpoint`` (the user through ``-l``). Key, user
and known_hosts otherwise come from the user's own ssh configuration.

One connection per host per run: the first ssh to a host starts a master connection (OpenSSH's
ControlMaster) whose socket lives in a folder of this run's own (0700, removed at exit with the
masters); every later ssh to that host, Docker's streams included, is a session over it, with no new
TCP connection, key exchange or login. ``ssh_argv`` stays the command a person would type (the dry
run prints it); ``shared`` adds the multiplexing when vllmgen runs it. Where the master cannot be
started, ssh runs as before and its own error text explains.

``Dialer`` carries the Docker API over ``ssh HOST docker system dial-stdio`` (what the
docker CLI does for ``ssh://``) on a real socket pair, so every read has the client's timeout,
and ssh's own error text is kept for the message when a connection fails. It replaces the docker
SDK's ssh transport, which needs paramiko, reads the pipe without any timeout and surfaces a dead
ssh as a bare BrokenPipeError.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from typing import Any

from vllmgen.spec.endpoints import Endpoint, parse

CONNECT_TIMEOUT = 10  # seconds, ssh's ConnectTimeout
ALIVE_INTERVAL, ALIVE_COUNT = 5, 3  # a silent peer is given up after 15 s
OPTIONS = ("-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
           "-o", f"ServerAliveInterval={ALIVE_INTERVAL}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
           "-o", "StrictHostKeyChecking=yes")
DIAL = "docker system dial-stdio"


def ssh_argv(endpoint: Endpoint, remote: str) -> list[str]:
    """``ssh`` with our options, then ``--``, the host and one remote command line."""
    argv = ["ssh", *OPTIONS]
    if endpoint.port:
        argv += ["-p", str(endpoint.port)]
    if endpoint.user:
        argv += ["-l", endpoint.user]
    return [*argv, "--", endpoint.host, remote]


PERSIST = 60  # seconds a master outlives its last session: bounds what a killed vllmgen leaves running


class SshRefused(Exception):
    """The host's master connection could not log in; the text is ssh's own (for ``explain``)."""

    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr


class Connections:
    """The master connections of this run, one per host, started on first use and closed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Endpoint, threading.Lock] = {}
        self._sockets: dict[Endpoint, str] = {}
        self._failed: dict[Endpoint, str] = {}  # endpoint -> what ssh said when its master could not log in
        self._dir: str | None = None
        self._streams: dict[Endpoint, Stream] = {}  # a Docker API stream started with the master, not yet taken
        self._asked: set[Endpoint] = set()  # hosts whose first stream was started or asked for: one each

    def _socket(self, endpoint: Endpoint) -> str:
        with self._lock:
            if self._dir is None:
                # mkdtemp: mode 0700, so no one else can reach our hosts through the sockets; a short path,
                # as a unix socket's is limited (ssh adds a 17-character suffix while it binds)
                parent = tempfile.gettempdir()
                self._dir = tempfile.mkdtemp(prefix="vllmgen-ssh-", dir=parent if len(parent) < 40 else "/tmp")
                atexit.register(self.close)
            if endpoint not in self._sockets:
                self._sockets[endpoint] = os.path.join(self._dir, f"host{len(self._sockets)}")
            return self._sockets[endpoint]

    def socket_folder(self) -> str | None:
        return self._dir

    def shared(self, endpoint: Endpoint, argv: list[str]) -> list[str]:
        """``argv`` (from ``ssh_argv``) as a session over the host's master connection, started if need be.
        SshRefused when the master's login failed in a way ssh explains (refused, timed out, unknown host
        key, no key): the same ssh would fail the same way, after waiting out the same timeout again.
        ``argv`` unchanged for any other failure: ssh then tries, and fails with its own words."""
        with self._lock:
            lock = self._locks.setdefault(endpoint, threading.Lock())
        with lock:
            if endpoint in self._failed:
                said = self._failed[endpoint]
                if explain(endpoint, said) and not transient(said):
                    raise SshRefused(said)
                return argv
            path = self._socket(endpoint)
            # the master removes its socket when it ends (PERSIST seconds idle, or killed): start another
            if not os.path.exists(path):
                refused = self._start(endpoint, path)
                if refused is not None:
                    self._failed[endpoint] = refused
                    if explain(endpoint, refused) and not transient(refused):
                        raise SshRefused(refused)
                    return argv
        return [argv[0], "-o", f"ControlPath={path}", "-o", "ControlMaster=no", *argv[1:]]

    def open(self, endpoints: list[Endpoint], *, docker: bool = False) -> None:
        """Start the masters of ``endpoints`` now, all at once, in the background: their logins overlap
        with each other and with what vllmgen does before it first needs a host (imports, the spec).
        ``docker``: then each host's first Docker API stream too (``Dialer.dial`` takes it): the remote
        `docker system dial-stdio` starting (0.1-0.4 s) overlaps the same wait."""
        for endpoint in dict.fromkeys(endpoints):
            threading.Thread(target=self._open_one, args=(endpoint, docker), daemon=True,
                             name=f"ssh {where(endpoint)}").start()

    def open_docker_hosts(self, values: Iterable[object], *, docker: bool = False) -> None:
        """``open`` for the ``ssh://`` ones among nodes' ``docker_host`` values; any other value, or one that does
        not parse (only before validation: a plan's always do), is left to the validation to report."""
        found = []
        for value in values:
            if isinstance(value, str) and value.startswith("ssh://"):
                try:
                    found.append(parse(value))
                except ValueError:
                    continue
        self.open(found, docker=docker)

    def _open_one(self, endpoint: Endpoint, docker: bool) -> None:
        try:
            self.shared(endpoint, ssh_argv(endpoint, ""))
        except SshRefused:
            return  # kept: the first command on that host reports it
        if docker:
            with self._lock:
                if endpoint in self._asked or self._dir is None:  # started, or asked for; or closed meanwhile
                    return
                self._asked.add(endpoint)
            try:
                stream = Stream.start(endpoint)
            except (SshRefused, OSError):
                return  # the first dial starts its own, and reports
            with self._lock:
                if self._dir is not None:
                    self._streams[endpoint] = stream
                    return
            stream.socket.close()  # closed meanwhile: vllmgen is on its way out
            stream.end()

    def take_stream(self, endpoint: Endpoint) -> Stream | None:
        """The host's Docker API stream started by ``open``, once; None when there is none (yet)."""
        with self._lock:
            self._asked.add(endpoint)
            return self._streams.pop(endpoint, None)

    @staticmethod
    def _start(endpoint: Endpoint, path: str) -> str | None:
        """None once the master is up; else what ssh said."""
        argv = ssh_argv(endpoint, "")[:-1]  # no remote command: -N
        argv[1:1] = ["-o", f"ControlPath={path}", "-o", "ControlMaster=yes", "-o", f"ControlPersist={PERSIST}",
                     "-N", "-f"]
        with tempfile.TemporaryFile() as err:
            try:
                # -f: ssh returns once logged in, the master in the background; its stderr goes to a file,
                # never to a pipe that would stay open as long as the master lives
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    timeout=CONNECT_TIMEOUT + 5, check=False).returncode
                err.seek(0)
                said = err.read().decode("utf-8", "replace").strip()
            except subprocess.TimeoutExpired:
                return f"ssh: connect to host {endpoint.host}: Connection timed out (no login within {CONNECT_TIMEOUT + 5} s)"
            except OSError as exc:
                return str(exc)
        if rc == 0 and os.path.exists(path):
            return None
        return said or f"ssh exited {rc}"

    def close(self) -> None:
        """Ends every master of this run (and a stream never taken) and removes the sockets' folder."""
        with self._lock:
            sockets, self._sockets = dict(self._sockets), {}
            folder, self._dir = self._dir, None
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.socket.close()
            stream.end()
        stopping = []
        for endpoint, path in sockets.items():  # every host's at once: this is on the way out of every command
            if os.path.exists(path):
                stop = ssh_argv(endpoint, "")[:-1]
                stop[1:1] = ["-o", f"ControlPath={path}", "-O", "exit"]
                try:
                    stopping.append(subprocess.Popen(stop, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.DEVNULL))
                except OSError:
                    pass
        for process in stopping:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


CONNECTIONS = Connections()


def shared(endpoint: Endpoint, argv: list[str]) -> list[str]:
    """``argv`` over this run's one connection to the host (see ``Connections``)."""
    return CONNECTIONS.shared(endpoint, argv)


def where(endpoint: Endpoint) -> str:
    user = f"{endpoint.user}@" if endpoint.user else ""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"ssh://{user}{host}" + (f":{endpoint.port}" if endpoint.port else "")


def explain(endpoint: Endpoint, stderr: str) -> str:
    """ssh's complaint as a sentence that says what to do; '' when it is not ssh's."""
    text = " ".join(stderr.split())
    dest = where(endpoint)
    port = f"-p {endpoint.port} " if endpoint.port else ""
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (f"{dest}: the host key is not in your known_hosts, or differs from it ({text}). vllmgen never "
                f"accepts a host key silently: check the key's fingerprint with the host's owner, then add it "
                f"(ssh-keyscan {port}{endpoint.host} >> ~/.ssh/known_hosts, or one interactive `ssh {port}{endpoint.host}`)")
    if "Permission denied" in text:
        return (f"{dest}: the login was refused ({text}); ssh runs with BatchMode, so the key must work without a "
                "prompt: load it with ssh-add or name it in ~/.ssh/config, and check the user in docker_host")
    for sign in ("Connection refused", "Connection timed out", "timed out", "No route to host",
                 "Could not resolve hostname", "Network is unreachable", "Connection closed", "Connection reset"):
        if sign in text:
            return (f"{dest}: cannot reach sshd ({text}); check that the host is up, that sshd listens there, "
                    "and the address and port in docker_host")
    if "dial unix" in text or "Cannot connect to the Docker daemon" in text:
        return (f"{dest}: the Docker engine there does not answer ({text}); start it (systemctl start docker), "
                "or check DOCKER_HOST in that host's ssh sessions")
    if "docker" in text and ("not found" in text or "command not found" in text):
        return f"{dest}: the host has no docker CLI on PATH for `{DIAL}` ({text}); install docker there"
    return ""


def transient(stderr: str) -> bool:
    """A failure worth one more try: the connection dropped, not a refusal."""
    return any(sign in stderr for sign in ("Connection reset", "Broken pipe", "kex_exchange_identification",
                                           "Connection closed by remote host"))


# --- the Docker API over ssh ---------------------------------------------------------------------


class Stream:
    """One ``ssh HOST docker system dial-stdio`` over the host's master: our end of its socket pair, the ssh
    process (in a session of its own: Ctrl-C reaches vllmgen, which ends it) and its stderr (a file)."""

    def __init__(self, socket_: socket.socket, proc: subprocess.Popen, err: Any):
        self.socket, self.proc, self.err = socket_, proc, err

    @classmethod
    def start(cls, endpoint: Endpoint) -> Stream:
        """SshRefused when the master could not log in (see ``Connections.shared``)."""
        argv = shared(endpoint, ssh_argv(endpoint, DIAL))
        ours, theirs = socket.socketpair()
        err = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=err,
                                    start_new_session=True)
        except BaseException:
            ours.close()
            err.close()
            raise
        finally:
            theirs.close()
        return cls(ours, proc, err)

    def end(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


class Dialer:
    """Starts ``ssh HOST docker system dial-stdio`` per connection (the first one may have been started with
    the host's master: ``Connections.open``); keeps the newest failures' text."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self._refused = ""  # ssh's words when the host's master could not log in
        self._lock = threading.Lock()
        self._procs: list[tuple[subprocess.Popen, Any]] = []

    def dial(self, timeout: float | None) -> socket.socket:
        stream = CONNECTIONS.take_stream(self.endpoint)
        if stream is None:
            try:
                stream = Stream.start(self.endpoint)
            except SshRefused as exc:  # no ssh to start: a stream that ends at once, with ssh's words kept
                self._refused = exc.stderr
                ours, theirs = socket.socketpair()
                theirs.close()
                return ours
        with self._lock:
            self._procs = [(p, f) for p, f in self._procs if not self._reap(p, f)] + [(stream.proc, stream.err)]
        stream.socket.settimeout(timeout)
        return stream.socket

    @staticmethod
    def _reap(proc: subprocess.Popen, err: Any) -> bool:
        if proc.poll() is None:
            return False
        err.close()
        return True

    def last_error(self) -> str:
        """stderr of the newest ssh that ended with an error (after a short wait for it to end)."""
        with self._lock:
            procs = list(self._procs)
        for proc, err in reversed(procs):
            try:
                rc = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
            if rc != 0 and not err.closed:
                err.seek(0)
                return err.read().decode("utf-8", "replace").strip()
        return self._refused

    def close(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        for proc, err in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            err.close()


def docker_client(dialer: Dialer, timeout: float, version: str) -> Any:
    """A ``docker.DockerClient`` whose API calls go over ssh through ``dialer`` (close it after the client),
    speaking API ``version`` (the engine's, asked already)."""
    # lazy: the docker SDK and its HTTP stack: only a command that reaches a host needs them
    import docker
    import requests.adapters
    import urllib3.connection
    import urllib3.connectionpool
    from docker.transport.basehttpadapter import BaseHTTPAdapter

    class Connection(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            self.sock = dialer.dial(self.timeout if isinstance(self.timeout, (int, float)) else timeout)

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Connection

    class Adapter(BaseHTTPAdapter):
        def __init__(self) -> None:
            super().__init__()
            self.pool = Pool("localhost", timeout=timeout, maxsize=4)

        def get_connection(self, url: str, proxies: Any = None) -> Any:
            return self.pool

        def request_url(self, request: Any, proxies: Any) -> str:
            return request.path_url

        def close(self) -> None:
            self.pool.close()
            requests.adapters.HTTPAdapter.close(self)

    # the version given: constructing talks to nothing
    client = docker.DockerClient(base_url="unix:///nonexistent/vllmgen-ssh", version=version, timeout=timeout)
    api = client.api
    api.mount("http+docker://vllmgen-ssh", Adapter())
    api.base_url = "http+docker://vllmgen-ssh"  # not 'http+docker://ssh': that name means the SDK's pipe
    api.trust_env = False
    return client
