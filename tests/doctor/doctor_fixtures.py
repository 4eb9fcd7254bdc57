"""Paths to the recorded doctor fixtures (tests/fixtures/doctor/README.md says where each came from)."""

from __future__ import annotations

import json
import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "doctor"
H100 = FIXTURES / "h100"
DOCKER = FIXTURES / "docker"
QWEN3_NEXT = FIXTURES / "models" / "qwen3-next-80b-a3b" / "config.json"

# The seed's own report (section 3.2), verbatim: the CLI's message on a host where the user is not in
# the docker group. Our recording (docker/permission_denied.stderr) has the same shape on our socket.
SEED_PERMISSION_DENIED = (
    "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: "
    'Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.51/info": dial unix /var/run/docker.sock: connect: permission denied'
)
SEED_GPU_ERROR = 'docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]]'


def text(path: Path) -> str:
    return path.read_text()


def qwen3_next() -> dict:
    return json.loads(QWEN3_NEXT.read_text())


def live_tables() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The doctor's printed tables on the H100: (command, [(status, check, detail), ...]) per run."""
    runs = []
    for block in text(H100 / "doctor_live.txt").split("$ python -m vllmgen.doctor ")[1:]:
        command, _, body = block.partition("\n")
        rows = []
        for line in body.splitlines():
            m = re.match(r"^(OK|WARN|FAIL|SKIP)\s+(\S+)\s+(.*)$", line)
            if m:
                rows.append((m.group(1), m.group(2), m.group(3)))
        runs.append((command, rows))
    return runs
