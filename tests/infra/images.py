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
