"""Base images for a test dockerd, without a registry: `docker import` of the cached rootfs.

``local/vllmgen-rootfs:bookworm-v2`` is the bare rootfs. ``local/vllmgen-testbase:2`` adds a
stand-in ``uv`` that records its arguments (/etc/vllmgen-uv-calls) instead of downloading, so the
generated Dockerfile's ``RUN uv pip install ...`` line runs for real, without a network. Python,
Ray and vLLM reach containers as bind-mounted venvs (see tests/infra/cache.py).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from infra.cache import rootfs_tar

ROOTFS = "local/vllmgen-rootfs:bookworm-v2"
TESTBASE = "local/vllmgen-testbase:2"
UV_CALLS = "/etc/vllmgen-uv-calls"
UV_STUB = f"""#!/bin/sh
# test stand-in for uv: records what the Dockerfile asked for; installs nothing
printf '%s\\n' "$*" >> {UV_CALLS}
"""
TESTBASE_DOCKERFILE = f"""FROM {ROOTFS}
COPY uv /usr/local/bin/uv
RUN chmod 755 /usr/local/bin/uv
"""


def _context(files: dict[str, str]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def ensure_base_images(client) -> None:  # noqa: ANN001 - docker.DockerClient
    """Import the rootfs and build the test base on this daemon, unless it has them."""
    import docker

    try:
        client.images.get(ROOTFS)
    except docker.errors.ImageNotFound:
        repository, tag = ROOTFS.split(":")
        client.api.import_image_from_file(str(rootfs_tar()), repository=repository, tag=tag)
    try:
        client.images.get(TESTBASE)
        return
    except docker.errors.ImageNotFound:
        pass
    context = _context({"Dockerfile": TESTBASE_DOCKERFILE, "uv": UV_STUB})
    for event in client.api.build(fileobj=context, custom_context=True, tag=TESTBASE, rm=True, decode=True,
                                  network_mode="host"):
        if "error" in event:
            raise RuntimeError(f"building {TESTBASE}: {event['error']}")


def write_fake_vllm(folder: Path, python: Path) -> Path:
    """A ``bin/vllm`` that serves the OpenAI routes vllmgen verifies (see fake_vllm.py)."""
    source = Path(__file__).with_name("fake_vllm.py").read_text()
    script = folder / "bin" / "vllm"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!{python}\n" + source)
    script.chmod(0o755)
    return folder


COMPILER_BASE = "local/vllmgen-testbase:2-gxx-2"
# g++ and what it needs beyond the minbase rootfs; the files are copied from this (bookworm) host's installed
# packages: the rootfs comes from `debootstrap` over the network, which these tests do not reach once set up.
COMPILER_PACKAGES = ("g++", "g++-12", "gcc", "gcc-12", "cpp", "cpp-12", "gcc-12-base", "binutils", "binutils-common",
                     "binutils-x86-64-linux-gnu", "libbinutils", "libctf0", "libctf-nobfd0", "libgprofng0",
                     "libjansson4", "libisl23", "libmpc3", "libmpfr6", "libgmp10", "libcc1-0", "libgcc-12-dev",
                     "libstdc++-12-dev", "libc6-dev", "libc-dev-bin", "linux-libc-dev", "libcrypt-dev", "libnsl-dev",
                     "libtirpc-dev", "libtirpc3", "libtirpc-common", "libnsl2", "libasan8", "libtsan2", "libubsan1",
                     "liblsan0", "libitm1", "libatomic1", "libquadmath0", "libgomp1", "libgssapi-krb5-2",
                     "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1", "libcom-err2", "rpcsvc-proto",
                     "openssl")  # Inductor runs the `openssl` binary while it compiles


def ensure_compiler_image(client) -> str:  # noqa: ANN001 - docker.DockerClient
    """The test base plus g++ (so torch.compile's Inductor can build its C++ kernels on CPU), from the host's
    installed files of COMPILER_PACKAGES (dpkg -L); RuntimeError when the host lacks one of them."""
    import subprocess

    import docker

    try:
        client.images.get(COMPILER_BASE)
        return COMPILER_BASE
    except docker.errors.ImageNotFound:
        pass
    listed = subprocess.run(["dpkg", "-L", *COMPILER_PACKAGES], capture_output=True, text=True)
    if listed.returncode != 0:
        raise RuntimeError(f"this host lacks packages the compiler image copies: {listed.stderr.strip()}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"FROM {TESTBASE}\nCOPY root/ /\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        merged = ("/lib/", "/lib64/", "/bin/", "/sbin/")  # merged /usr: these are links to /usr/... in both
        paths = {"/usr" + p if p.startswith(merged) else p for p in listed.stdout.split()}
        for path in sorted(paths):
            file = Path(path)
            if file.is_symlink() or file.is_file():
                tar.add(path, arcname="root" + path, recursive=False)
    buffer.seek(0)
    for event in client.api.build(fileobj=buffer, custom_context=True, tag=COMPILER_BASE, rm=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"building {COMPILER_BASE}: {event['error']}")
    return COMPILER_BASE


NGINX_IMAGE = "local/vllmgen-nginx:1.22.1"


def ensure_nginx_image(client) -> str:  # noqa: ANN001 - docker.DockerClient
    """The test rootfs plus this host's Debian nginx (/usr/sbin/nginx and the libraries `ldd` names), as a
    stand-in for the official nginx image (no registry here). RuntimeError when the host has no nginx."""
    import subprocess

    import docker

    try:
        client.images.get(NGINX_IMAGE)
        return NGINX_IMAGE
    except docker.errors.ImageNotFound:
        pass
    ensure_base_images(client)
    binary = Path("/usr/sbin/nginx")
    if not binary.exists():
        raise RuntimeError("this host has no /usr/sbin/nginx (tests/infra/setup.sh installs nginx-light)")
    libraries = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = f"FROM {ROOTFS}\nCOPY root/ /\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(str(binary), arcname="root/usr/sbin/nginx")
        for line in libraries.splitlines():
            if "=> /" not in line:
                continue
            name, path = line.split("=>")[0].strip(), line.split("=>")[1].split("(")[0].strip()
            tar.add(str(Path(path).resolve()), arcname=f"root/usr/lib/x86_64-linux-gnu/{name}")
    buffer.seek(0)
    for event in client.api.build(fileobj=buffer, custom_context=True, tag=NGINX_IMAGE, rm=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"building {NGINX_IMAGE}: {event['error']}")
    return NGINX_IMAGE
