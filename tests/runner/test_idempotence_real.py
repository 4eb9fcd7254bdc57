"""Honest idempotence against a real dockerd 20.10: a second apply changes nothing; a rotated API key and
a rebuilt image (another --base-image) each replace the container, saying why; no label holds the key;
status shows, and down removes, an orphan (this deployment's container of a node no longer in the spec).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from infra.images import ROOTFS, TESTBASE

from .support import Cluster, apply_args, ok_output, single_spec, write_spec

pytestmark = pytest.mark.slow

KEY_A = {"VG_TEST_API_KEY": "first-key-not-secret-111"}
KEY_B = {"VG_TEST_API_KEY": "second-key-not-secret-222"}
ALT_BASE = "local/vllmgen-testbase:alt"


def _alt_base(client) -> None:  # noqa: ANN001
    """The test base plus one layer: another image ID for the same Dockerfile recipe."""
    buffer = io.BytesIO()
    text = f"FROM {TESTBASE}\nLABEL vllmgen-test=alt\n".encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    buffer.seek(0)
    for event in client.api.build(fileobj=buffer, custom_context=True, tag=ALT_BASE, decode=True):
        assert "error" not in event, event


def test_reapply_rotation_rebuild_and_orphans(one_host: Cluster, tmp_path: Path, python_prefix: str,
                                              fake_vllm: str) -> None:
    daemon = one_host.daemons[0]
    client = daemon.client()
    spec = write_spec(tmp_path, single_spec(daemon.endpoint, python_prefix, fake_vllm, tmp_path, name="vg-idem"))
    apply = apply_args(spec, "--all", "--no-gpus", "--timeout", "60", daemon=daemon)

    ok_output(one_host.vllmgen(*apply, env=KEY_A))
    first = client.containers.get("vg-idem-solo")
    again = ok_output(one_host.vllmgen(*apply, env=KEY_A))
    assert "nothing changed" in again and client.containers.get("vg-idem-solo").id == first.id

    rotated = ok_output(one_host.vllmgen(*apply, env=KEY_B))
    assert "head: replaced (vg-idem-solo: a secret's value changed (its fingerprint differs))" in rotated
    second = client.containers.get("vg-idem-solo")
    assert second.id != first.id and f"VLLM_API_KEY={KEY_B['VG_TEST_API_KEY']}" in second.attrs["Config"]["Env"]
    assert re.search(r"verify: without the API key at http://\S+: (\d+) of \1 paths refused", rotated)
    labels = json.dumps(second.labels)
    assert "second-key" not in labels and "first-key" not in labels and "second-key" not in rotated
    assert second.labels["io.vllmgen.secrets"] != first.labels["io.vllmgen.secrets"]

    _alt_base(client)
    rebuilt = ok_output(one_host.vllmgen(*[ALT_BASE if arg == TESTBASE else arg for arg in apply], env=KEY_B))
    assert "image: built" in rebuilt and "head: replaced (vg-idem-solo: the image was rebuilt (" in rebuilt
    third = client.containers.get("vg-idem-solo")
    assert third.labels["io.vllmgen.image-id"] == client.images.get("vllmgen/vg-idem:v0.32.0").id
    assert third.labels["io.vllmgen.image-id"] != second.labels["io.vllmgen.image-id"]

    # a node renamed away from the spec left its container behind
    orphan = client.containers.run(ROOTFS, ["sleep", "600"], name="vg-idem-old-node", detach=True,
                                   network_mode="host", labels={"io.vllmgen.deployment": "vg-idem",
                                                                "io.vllmgen.node": "old-node"})
    status = one_host.vllmgen("status", str(spec), "--all", "--output", "json", env=KEY_B)
    assert status.returncode == 1, status.stderr
    report = json.loads(status.stdout)
    assert report["orphans"] == [{"container": "vg-idem-old-node", "engine of": "solo", "node": "old-node",
                                  "status": "running"}]
    assert report["nodes"][0]["containers"][0]["current"] is True
    down = ok_output(one_host.vllmgen("down", str(spec), "--all"))
    assert "removed 3 container(s): vg-idem-old-node, vg-idem-gateway, vg-idem-solo" in down
    assert client.containers.list(all=True, filters={"label": "io.vllmgen.deployment=vg-idem"}) == []
    assert orphan.id not in [c.id for c in client.containers.list(all=True)]
    client.images.remove(ALT_BASE, force=True)
