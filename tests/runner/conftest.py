"""Fixtures of the runner's slow tier: private dockerds in network namespaces, cached images and venvs.

Needs root, dockerd, ip, nsenter, curl and debootstrap (tests/infra/setup.sh installs and caches
them). Without them the slow tests fail, saying what is missing, unless VLLMGEN_ALLOW_SKIP=1.
Everything a test starts (namespaces, daemons, their containers, /dev/shm/psm_* files) is
removed by the fixture that started it. The namespace hosts live for a module (or, with sshd, the
session), and the fixtures tests take (``one_host``, ``two_hosts``, ``ssh_hosts``) put them back
as they were made after every test, passed or failed: no container, changed daemon.json or
stopped daemon of one test meets the next (a failed Ray test once left its head running, and the
next test's head could not bind its port). tests/test_slow_hygiene.py checks that slow tests get
their hosts only through these fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra import cache
from infra import sshd
from infra.dockerd import missing_tools, shm_files_in_use, shm_psm_files
from infra.images import write_fake_vllm

from .support import Cluster, SshCluster, make_cluster, make_ssh_cluster


def _unavailable(reason: str) -> None:
    if os.environ.get("VLLMGEN_ALLOW_SKIP") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (run tests/infra/setup.sh as root; VLLMGEN_ALLOW_SKIP=1 skips instead)", pytrace=False)


@pytest.fixture(scope="session")
def infra_ready() -> None:
    if os.geteuid() != 0:
        _unavailable("the slow runner tests need root (dockerd, network namespaces)")
    missing = missing_tools()
    if missing:
        _unavailable(f"missing for the slow runner tests: {', '.join(missing)}")


@pytest.fixture(scope="session", autouse=False)
def psm_cleanup() -> Iterator[None]:
    """torch in `--ipc host` containers leaves /dev/shm/psm_* behind; remove those that appeared and that no
    process holds (the other worker's vLLM may be running)."""
    before = shm_psm_files()
    yield
    for name in shm_psm_files() - before - shm_files_in_use():
        try:
            os.unlink(f"/dev/shm/{name}")
        except OSError:
            pass


@pytest.fixture(scope="session")
def python_prefix(infra_ready: None) -> str:
    try:
        return str(cache.python_prefix())
    except RuntimeError as exc:
        _unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def vllm(infra_ready: None) -> tuple[str, str]:
    """The cached CPU vLLM venv and the tiny model it serves (built on first use, minutes; then cached)."""
    venv = cache.vllm_venv()
    return str(venv), str(cache.tiny_model(venv / "bin" / "python"))


@pytest.fixture(scope="session")
def fake_vllm(tmp_path_factory: pytest.TempPathFactory, python_prefix: str) -> str:
    folder = tmp_path_factory.mktemp("fake-vllm")
    write_fake_vllm(folder, Path(python_prefix) / "bin" / "python3")
    folder.chmod(0o755)
    return str(folder)


# Keys of the daemon's own, which the merge must keep (and which dockerd must still accept).
FOREIGN_DAEMON_CONFIG = {"debug": False, "labels": ["vllmgen-test=kept"]}


@pytest.fixture(scope="module")
def one_host_made(infra_ready: None, psm_cleanup: None) -> Iterator[Cluster]:
    cluster = make_cluster(1, "s", FOREIGN_DAEMON_CONFIG)
    yield cluster
    cluster.remove()


@pytest.fixture
def one_host(one_host_made: Cluster) -> Iterator[Cluster]:
    """One namespace host with its dockerd, as it was made, and put back so after the test."""
    yield one_host_made
    one_host_made.clear()


@pytest.fixture(scope="module")
def two_hosts_made(infra_ready: None, psm_cleanup: None) -> Iterator[Cluster]:
    cluster = make_cluster(2, "m")
    yield cluster
    cluster.remove()


@pytest.fixture
def two_hosts(two_hosts_made: Cluster) -> Iterator[Cluster]:
    """Two namespace hosts on one bridge, a dockerd each, put back as they were made after the test."""
    yield two_hosts_made
    two_hosts_made.clear()


@pytest.fixture(scope="session")
def ssh_hosts_made(infra_ready: None, psm_cleanup: None) -> Iterator[SshCluster]:
    missing = sshd.missing_tools()
    if missing:
        _unavailable(f"missing for the ssh tests: {', '.join(missing)} (openssh-server, openssh-client)")
    cluster = make_ssh_cluster(2, "r")
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def ssh_hosts(ssh_hosts_made: SshCluster) -> Iterator[SshCluster]:
    """A control host and two node hosts with dockerd and sshd each, shared by every ssh test. Put back
    after each module, not each test: a module's ssh tests run in file order on one deployment."""
    ssh_hosts_made.clear()
    yield ssh_hosts_made
    ssh_hosts_made.clear()
