"""What the lent H100s showed (tests/fixtures/gpu/h100/, recorded 2026-11-26 by tests/gpu/device-proof.sh
on nvidia-h100-x2 with PyPI vllm 0.26.0): the parsers read it back, so CI keeps checking it.

Transcripts: doctor on the H100 (process runtime: Docker checks skipped), apply -> status -> second
apply -> down for one GPU, TP=2 in one process, and two mp nodes sharing the host (GPU 0 and GPU 1);
the engines' own logs (NCCL_DEBUG=INFO); the rendered start.sh / stop.sh run by hand."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from vllmgen.plan import nccl
from vllmgen.runner import phases

H100 = Path(__file__).parent / "fixtures" / "gpu" / "h100"


def _text(name: str) -> str:
    return (H100 / name).read_text()


def _section(transcript: str, title: str) -> str:
    start = transcript.index(f"### {title}")
    rest = transcript[start:].split("\n", 1)[1]
    return rest.split("\n###", 1)[0]


@pytest.mark.parametrize("run", ["one", "tp2", "mp2"])
def test_apply_status_down_on_the_h100s(run: str) -> None:
    text = _text(f"apply-{run}.txt")
    assert "apply rc=0" in text and "status rc=0" in text and "down rc=0" in text
    assert "verify: /v1/models lists tiny" in text
    assert re.search(r"verify: chat completion answered ", text)
    assert "preflight: ok (process runtime, /tmp/site/bin/vllm, 2 GPU(s))" in text
    assert "nothing changed: the deployment was already as the spec says" in _section(text, "second apply")
    assert _section(text, "processes left (vllm, not zombies):").strip() == "(end)"
    assert _section(text, "nvidia-smi after down").strip() == "(end)"  # no compute process holds a GPU
    status = json.loads(_text(f"status-{run}.json"))
    assert status["healthy"] is True and status["endpoint"]["models"] == ["tiny"]
    assert status["endpoint"]["health"] == 200
    assert status["engine"]["startup"]["vllm_version"] == "0.26.0"


def test_the_gpus_a_node_was_given_are_the_ones_used() -> None:
    """h100-one pins GPU 0: only GPU 0 had memory in use while it served; TP=2 and mp2 used both."""
    serving = _section(_text("apply-one.txt"), "nvidia-smi while serving").strip().splitlines()
    used = {line.split(", ")[0]: int(line.split(", ")[1].split()[0]) for line in serving if line.count(",") == 1}
    assert used["0"] > 1000 and used["1"] == 0
    for run in ("tp2", "mp2"):
        lines = _section(_text(f"apply-{run}.txt"), "nvidia-smi while serving").strip().splitlines()
        assert len(lines) == 4  # two compute processes, then GPU 0 and GPU 1 both in use


def test_nccl_transport_tp2_in_one_process() -> None:
    report = nccl.parse(_text("engine-tp2-h100.log"))
    assert report.version == "2.28.9+cuda13.0"
    assert [(l.src, l.dst, l.transport) for l in report.links] == [(0, 1, "P2P/CUMEM"), (1, 0, "P2P/CUMEM")]
    assert "IB: No device found." in report.networks
    assert "Socket: Using [0]lo:127.0.0.1<0>" in report.networks
    assert nccl.warnings(report, multi_node=False, ib_hcas=False) == []


def test_nccl_transport_two_nodes_sharing_the_host() -> None:
    """Each node's log holds its own rank's channels: rank 0 sends 0->1, the headless rank 1 sends 1->0."""
    head, follower = nccl.parse(_text("engine-mp2-rank0.log")), nccl.parse(_text("engine-mp2-rank1.log"))
    assert [(l.src, l.dst) for l in head.links] == [(0, 1)]
    assert [(l.src, l.dst) for l in follower.links] == [(1, 0)]
    both = nccl.parse(_text("engine-mp2-rank0.log") + "\n" + _text("engine-mp2-rank1.log"))
    assert both.transports == ("P2P/CUMEM",)
    status = json.loads(_text("status-mp2.json"))
    assert status["engine"]["nccl"]["links"] == [[0, 1, "P2P/CUMEM"], [1, 0, "P2P/CUMEM"]]
    assert "NCCL 2.28.9+cuda13.0: 0->1 P2P/CUMEM, 1->0 P2P/CUMEM" in _text("apply-mp2.txt")


def test_one_gpu_has_no_nccl_lines() -> None:
    assert nccl.parse(_text("engine-one-h100.log")).links == ()


def test_socket_fallback_with_ib_hcas_warns() -> None:
    """Written by hand in NCCL's format (no IB here): a multi-node spec with HCAs that got sockets."""
    log = ("h1:1:1 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Socket/0\n"
           "h1:1:1 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [send] via NET/IB/0/GDRDMA\n"
           "h1:1:1 [0] NCCL INFO Channel 00/0 : 2[2] -> 3[3] via SHM/direct/direct\n")
    report = nccl.parse(log)
    assert [(l.src, l.dst, l.transport) for l in report.links] == [
        (0, 1, "NET/IB"), (1, 0, "NET/Socket"), (2, 3, "SHM")]
    assert nccl.warnings(report, multi_node=True, ib_hcas=True)
    assert not nccl.warnings(report, multi_node=True, ib_hcas=False)


@pytest.mark.parametrize("log, ready, engine_init", [
    ("engine-one-h100.log", 59.0, 17.75), ("engine-tp2-h100.log", 86.0, 16.63), ("engine-mp2-rank0.log", 92.0, 17.26)])
def test_startup_phases_of_the_gpu_engines(log: str, ready: float, engine_init: float) -> None:
    startup = phases.parse(_text(log))
    assert startup.vllm_version == "0.26.0"
    assert startup.ready_seconds == ready
    assert startup.phase("engine init").seconds == engine_init
    assert startup.phase("cuda graphs").seconds is None  # enforce_eager


def test_doctor_on_the_h100_for_the_process_runtime() -> None:
    text = _text("doctor-h100.txt")
    assert re.search(r"SKIP\s+docker\s+not used on this node", text)
    assert re.search(r"OK\s+gpu.model\s+NVIDIA H100 80GB HBM3", text)
    assert re.search(r"OK\s+net.node_address\s+127.0.0.1 is on lo", text)
    assert "driver supports CUDA up to 13.0" in text
    report = json.loads(_text("doctor-h100.json"))
    assert [gpu["name"] for gpu in report["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 2
    checks = {c["name"]: c["status"] for c in report["results"]}
    assert checks["docker"] == "skip"
    # the kit's tiny model has no weights (served with --load-format dummy): the model-folder check says so
    assert checks["storage.model_path"] == "fail"


def test_the_rendered_start_and_stop_scripts_on_the_h100() -> None:
    text = _text("scripts-one.txt")
    assert re.search(r"started node h100: PID (\d+), log /tmp/sbuild/gpu-one/run/h100.log", text)
    assert "health 200 after" in text and '"id":"tiny"' in text and '"object":"chat.completion"' in text
    assert "node h100 is running already" in text
    assert re.search(r"stopped node h100 \(PID \d+\)", text)
    assert text.split("vllm processes left:\n", 1)[1].startswith("(end)\n(end)")


def test_the_h100_start_explains_the_31_s_before_vllms_first_line() -> None:
    """apply-one waited 90 s for /health while vLLM's log said "ready after 59.0 s": that count began at
    vLLM's first line. From the process's start (the transcript's clock: the head started at 0.0 s), the
    interpreter and imports took 32 s before that line, and ready after is 91 s: what apply saw."""
    transcript = _text("apply-one.txt")
    started = datetime.fromisoformat(re.search(r"process runtime, (\S+)Z\)", transcript)[1])
    assert "[   0.0s] == head: start gpu-one-h100" in transcript  # the process started at 0.0 s
    waited = float(re.search(r"\(/health\): ok after (\d+)s", transcript)[1])
    startup = phases.parse(_text("engine-one-h100.log"), started)  # vLLM's stamps: the host's clock, as the header's
    assert startup.ready_from == "start"
    assert startup.phase("python start").seconds == 32.0  # 14:39:53 -> 14:40:25, vLLM's first line
    assert startup.log_seconds == 59.0  # the old "ready after"
    assert startup.ready_seconds == 91.0
    assert startup.ready_seconds - startup.log_seconds == startup.phase("python start").seconds
    assert abs(startup.ready_seconds - (waited + 2.0)) <= 1.0  # apply's wait began at 2.0 s, after the settle
    assert "python start      32.0 s  interpreter and imports, before vLLM's first log line" in phases.table(startup)
    assert "ready after    91.0 s  since it started" in phases.table(startup)


H200 = Path(__file__).parent / "fixtures" / "gpu" / "h200"


@pytest.mark.parametrize("run", ["cold", "warm"])
def test_the_h200_keyed_deployment_served_behind_its_gateway_and_left_nothing(run: str) -> None:
    """tests/gpu/device-proof.sh keyed (2026-12-03, one H200): apply, status, down, twice; every path
    refused without the key at the gateway, status healthy, no vLLM or nginx process left."""
    text = (H200 / f"h200-apply-{run}.txt").read_text()
    assert "apply rc=0" in text and "status rc=0" in text and "down rc=0" in text
    assert re.search(r"without the API key at http://127\.0\.0\.1:8812: (\d+) of \1 paths refused", text)
    assert "gateway http://127.0.0.1:8812 (gpu-keyed-gateway on h200): running, /health 200, without the key 401" in text
    assert "removed 2 container(s): gpu-keyed-gateway, gpu-keyed-h200" in text
    left = text.split("### processes left (vllm or nginx, not zombies):\n", 1)[1]
    assert left.startswith("(end)")  # nothing of it runs after down
    assert "gpu-proof-key" not in text  # the key is in no transcript
    report = json.loads((H200 / f"h200-status-{run}.json").read_text())
    assert report["healthy"] and all(not entry["open"] for entry in report["endpoint"]["without_key"])


def test_the_h200_warm_start_reused_the_kept_caches() -> None:
    """The second start, with ~/.cache/vllmgen-engine/gpu-keyed kept: compile from its cache, engine init
    and the whole start far shorter; the report counts from the process start, as apply's wait does."""
    cold = json.loads((H200 / "h200-status-cold.json").read_text())["endpoint"]["startup"]
    warm = json.loads((H200 / "h200-status-warm.json").read_text())["endpoint"]["startup"]
    phase = {run: {p["name"]: p for p in report["phases"]} for run, report in (("cold", cold), ("warm", warm))}
    assert phase["cold"]["compile"]["note"] == "compiled (no cache)"
    assert phase["warm"]["compile"]["note"] == "from the compile cache"
    assert warm["ready_seconds"] < 0.5 * cold["ready_seconds"]  # 38.5 s against 92.5 s
    assert phase["warm"]["engine init"]["seconds"] < phase["cold"]["engine init"]["seconds"] / 4
    for run, report in (("cold", cold), ("warm", warm)):
        text = (H200 / f"h200-apply-{run}.txt").read_text()
        waited = float(re.search(r"\(/health\): ok after ([\d.]+)s", text)[1])
        assert report["ready_from"] == "start" and abs(report["ready_seconds"] - waited) < 2.0


def _failed_start(run: str) -> str:
    return (H200 / f"h200-failed-start-{run}.txt").read_text()


def test_the_h200_engine_core_left_by_a_killed_api_server_outlived_down_before_the_fix() -> None:
    """tests/gpu/failed-start-proof.sh (2026-12-03, one H200), vllmgen of main before the fix: vLLM titled its
    engine core over its environment (no marker), so after the API server was killed down proved nothing
    else ours and the engine core lived on, holding 43 GiB of the GPU."""
    text = _failed_start("killed-before")
    assert re.search(r"engine core (\d+): marker VLLMGEN_NODE in /proc/\1/environ: no", text)
    assert "apply rc=4" in text and "down rc=0" in text
    left = _section(text, "processes left (vllm, not zombies):").strip().splitlines()
    assert len(left) == 2 and left[0].endswith("VLLM::EngineCore") and left[1] == "(end)"
    core = left[0].split()[0]
    assert _section(text, "nvidia-smi after down").strip().startswith(f"{core}, ")  # its GPU memory held


@pytest.mark.parametrize("run", ["killed-after", "memory-after"])
def test_the_h200_failed_starts_left_nothing_after_down(run: str) -> None:
    """The same with the fix (run.sh's SPT_NOENV, down reading the session): the engine core kept its marker
    and down stopped it; and an engine core that could not get its memory (another process held 110 GiB)
    failed the apply with the root cause, and down left no vLLM process behind."""
    text = _failed_start(run)
    assert "apply rc=4" in text and "down rc=0" in text
    assert _section(text, "processes left (vllm, not zombies):").strip() == "(end)"
    if run == "killed-after":
        assert re.search(r"engine core (\d+): marker VLLMGEN_NODE in /proc/\1/environ: yes", text)
        assert _section(text, "nvidia-smi after down").strip() == "(end)"
    else:
        assert "root cause: ValueError: Free memory on device cuda:0" in text
        blocker = re.search(r"another process \(PID (\d+)\) holds 110 GiB", text)[1]  # type: ignore[index]
        assert [line.split(",")[0] for line in _section(text, "nvidia-smi after down (the other process, PID "
                                                               f"{blocker}, only)").strip().splitlines()] == [blocker, "(end)"]
