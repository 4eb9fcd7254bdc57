"""The README's first command, run by Debian 12's own Python in a fresh bookworm chroot.

The command is read out of the README, so the two cannot drift. The rootfs (debootstrap minbase
with python3 and python3-venv, the README's stated apt prerequisite) is cached under
``${VLLMGEN_CACHE:-~/.cache/vllmgen}`` like ``tests/infra/cache.py``'s; pip reaches PyPI from
inside the chroot. Needs root, debootstrap, chroot and unshare.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT
from infra.cache import _locked, _log, cache_dir

ROOTFS = "rootfs-bookworm-python3-v1.tar"
GOLDEN = ROOT / "build" / "qwen3-next-tp16-ray"  # what the README's command renders
INCLUDE = "python3,python3-venv"


def readme_first_command() -> str:
    """The first ```bash block under "## Two commands that work on a fresh machine"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two commands that work on a fresh machine", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's install section has no ```bash block"
    lines = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_readme_names_the_apt_prerequisite():
    command = readme_first_command()
    assert "python3 -m venv" in command and "pip install ." in command and "vllmgen render" in command
    intro = (ROOT / "README.md").read_text(encoding="utf-8").split("## Two commands", 1)[1].split("```bash")[0]
    assert "apt-get install" in intro and "python3-venv" in intro


def _rootfs() -> Path:
    target = cache_dir() / ROOTFS
    with _locked(target.name):
        if target.exists():
            return target
        work = Path(tempfile.mkdtemp(prefix=".rootfs-py-", dir=cache_dir()))
        try:
            _log(f"debootstrap bookworm with {INCLUDE} into {work} (about a minute)")
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(work / "root"),
                 os.environ.get("VLLMGEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")],
                check=True, stdout=subprocess.DEVNULL,
            )
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "-C", str(work / "root"), "--numeric-owner", "-cf", str(partial), "."], check=True)
            os.rename(partial, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target


def _copy_checkout(destination: Path) -> None:
    """What a clone holds: tracked files and untracked ones git does not ignore."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (destination / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / os.fsdecode(name))


def _in_chroot(root: Path, command: str, env: dict) -> subprocess.CompletedProcess:
    """``sh -c command`` chrooted into root, with a /proc that goes away with the mount namespace."""
    return subprocess.run(
        ["unshare", "--mount", "--fork", "sh", "-c",
         'mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2"', "sh", str(root), command],
        env=env, capture_output=True, text=True, timeout=900,
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                    reason="needs root, debootstrap and unshare")
def test_readme_first_command_on_debian_12_system_python(tmp_path):
    command = readme_first_command()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(_rootfs())], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    checkout = root / "home" / "newcomer" / "vllmgen"
    _copy_checkout(checkout)
    # a fresh login's environment: none of this machine's pip settings, pyenv or venv
    inner = f"cd /home/newcomer/vllmgen && {command}"
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    host_ca = os.environ.get("PIP_CERT")
    if host_ca and Path(host_ca).is_file():
        # only this machine's network: its egress proxy re-signs TLS with a CA its bundle holds
        shutil.copy(host_ca, root / "etc" / "host-ca.crt")
        env["PIP_CERT"] = "/etc/host-ca.crt"
    result = _in_chroot(root, inner, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # and from inside a plain venv that is already active (python3 is then the venv's)
    second = root / "home" / "newcomer" / "again"
    _copy_checkout(second)
    inner = f"python3 -m venv /opt/plain && . /opt/plain/bin/activate && cd /home/newcomer/again && {command}"
    again = _in_chroot(root, inner, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"wrote {len(_snapshot(GOLDEN))} files" in again.stdout
    version = subprocess.run(["chroot", str(root), "/usr/bin/python3", "-c", "import sys; print(sys.version)"],
                             env=env, capture_output=True, text=True, check=True).stdout
    assert version.startswith("3.11."), version  # Debian 12's own interpreter made the venv
    built = root / "tmp" / "vllmgen-build" / "qwen3-next-tp16-ray"
    assert "Successfully installed" in result.stdout and f"wrote {len(_snapshot(GOLDEN))} files" in result.stdout
    assert _snapshot(built) == _snapshot(GOLDEN)  # byte-stable across Pythons
