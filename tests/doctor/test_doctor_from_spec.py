"""The spec wired to the host checks, replayed on the outputs recorded on a real H100 host."""

import json
from pathlib import Path

from inprocess import run_vllmgen
from vllmgen.render.compile import plan_file
from vllmgen.doctor.from_spec import expectation, model_fit, node_ports
from vllmgen.doctor.host import check_host, gpu_facts
from vllmgen.doctor.probe import RecordedProbe

ROOT = Path(__file__).resolve().parents[2]
H100 = ROOT / "tests" / "fixtures" / "doctor" / "h100"
QWEN_CONFIG = ROOT / "tests" / "fixtures" / "doctor" / "models" / "qwen3-next-80b-a3b" / "config.json"

H100_SPEC = """\
version: 1
name: h100
image: {base: 'vllm/vllm-openai:v0.32.0'}
model: {source: Qwen/Qwen3-8B}
cluster: {nic: eth0}
nodes: [{name: gpu-1, address: 192.0.2.2, gpus: 1}]
serve: {port: 8000, gpu_memory_utilization: 0.9}
"""


def _plan(tmp_path, text):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return plan_file(spec)


def _statuses(results):
    return {result.name: result.status for result in results}


def test_h100_host_matches_a_spec_written_for_it(tmp_path):
    valid, plan = _plan(tmp_path, H100_SPEC)
    expect = expectation(plan, valid.spec, plan.head, docker=False, image_cuda="12.8")
    statuses = _statuses(check_host(RecordedProbe(H100), expect))
    assert statuses["gpu.count"] == "ok"
    assert statuses["gpu.driver_vs_cuda"] == "ok"  # driver 580.159.04 >= what CUDA 12.8 needs
    assert statuses["net.node_address"] == "ok"
    assert statuses["net.data_nic"] == "ok"
    assert statuses["docker"] == "skip"


def test_seed_node_on_the_h100_names_each_failure(tmp_path):
    valid, plan = plan_file(ROOT / "specs" / "seed-two-node-ray.yaml")
    expect = expectation(plan, valid.spec, plan.head, docker=False, image_cuda=None)
    results = check_host(RecordedProbe(H100), expect)
    failed = {r.name: r for r in results if r.status == "fail"}
    assert "1 GPU(s) visible, the spec expects 8" in failed["gpu.count"].detail
    assert "192.0.2.1 is not on any local interface" in failed["net.node_address"].detail
    assert "net.infiniband" in failed  # HCAs declared, /sys/class/infiniband empty there
    assert all(r.fix for r in failed.values())


def test_ports_follow_the_backend(tmp_path):
    valid, plan = plan_file(ROOT / "specs" / "seed-two-node-ray.yaml")
    assert node_ports(plan, valid.spec, plan.head) == (1150, 6379)
    assert node_ports(plan, valid.spec, plan.workers[0]) == ()
    valid, plan = plan_file(ROOT / "specs" / "seed-two-node-mp.yaml")
    assert node_ports(plan, valid.spec, plan.head) == (1150, 29500)


def test_model_fit_uses_the_gpu_memory_the_host_reports(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(QWEN_CONFIG.read_text())
    text = H100_SPEC.replace("{source: Qwen/Qwen3-8B}", f"{{source: q, host_path: {model}}}")
    valid, plan = _plan(tmp_path, text.replace("port: 8000,", "port: 8000, max_model_len: 16248,"))
    expect = expectation(plan, valid.spec, plan.head, docker=False, image_cuda=None)
    probe = RecordedProbe(H100)
    facts = gpu_facts(probe, expect)

    class WithModel(RecordedProbe):
        def read_json(self, path):
            return json.loads(Path(path).read_text())

    results = model_fit(WithModel(H100), valid.spec, facts, expect)
    fit_result = next(r for r in results if r.name == "model.fit")
    assert fit_result.status == "fail"
    assert "does not fit: needs 150.8 GiB, has 71.7 GiB" in fit_result.detail


def test_doctor_cli_on_this_machine_fails_with_fixes():
    # this machine has no GPU and no Docker daemon running: both must be named, each with its fix
    result = run_vllmgen("doctor", ROOT / "specs" / "seed-single-node.yaml", "--output", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    failed = {r["name"]: r for r in report["results"] if r["status"] == "fail"}
    assert "gpu.nvidia_smi" in failed and failed["gpu.nvidia_smi"]["fix"]
    assert "docker.daemon" in failed and failed["docker.daemon"]["fix"]


def test_doctor_needs_node_for_multi_node_specs():
    result = run_vllmgen("doctor", ROOT / "specs" / "seed-two-node-ray.yaml")
    assert result.returncode == 2
    assert "--node (head, worker-1)" in result.stderr


def test_validate_estimates_fit_offline():
    result = run_vllmgen("validate", ROOT / "specs" / "seed-two-node-ray.yaml",
                         "--model-config", QWEN_CONFIG, "--gpu-memory-gib", "79.65")
    assert result.returncode == 0, result.stderr
    assert "model fit (16 x 79.65 GiB): fits with" in result.stdout


PROCESS_SPEC = """\
version: 1
name: proc
model: {source: Qwen/Qwen3-8B}
runtime: {kind: process, vllm: %(vllm)s}
cluster: {nic: eth0}
nodes: [{name: gpu-1, address: 192.0.2.2, gpus: 1, gpu_ids: [%(gpu)s]}]
serve: {port: 8000, gpu_memory_utilization: 0.9}
"""


def test_process_runtime_checks_gpu_ids_and_vllm_not_docker(tmp_path):
    """The recorded H100 host has GPU 0: gpu_ids [0] is there, [1] is not; Docker is not checked."""
    vllm = tmp_path / "env" / "bin" / "vllm"
    vllm.parent.mkdir(parents=True)
    vllm.write_text("#!/bin/sh\n")
    vllm.chmod(0o755)
    valid, plan = _plan(tmp_path, PROCESS_SPEC % {"vllm": vllm, "gpu": 0})
    expect = expectation(plan, valid.spec, plan.head, docker=False, image_cuda=None)
    results = {r.name: r for r in check_host(RecordedProbe(H100), expect)}
    assert results["gpu.selection"].status == "ok" and "gpu.count" not in results
    assert results["process.vllm"].status == "ok"
    assert results["docker"].status == "skip" and "runtime.kind: process" in results["docker"].detail

    valid, plan = _plan(tmp_path, PROCESS_SPEC % {"vllm": tmp_path / "nowhere" / "vllm", "gpu": 1})
    expect = expectation(plan, valid.spec, plan.head, docker=False, image_cuda=None)
    results = {r.name: r for r in check_host(RecordedProbe(H100), expect)}
    assert results["gpu.selection"].status == "fail" and "this host has no GPU 1" in results["gpu.selection"].detail
    assert results["process.vllm"].status == "fail" and results["process.vllm"].fix


def test_the_doctor_command_skips_docker_for_a_process_spec(tmp_path):
    """`vllmgen doctor` on this machine: no Docker check for runtime.kind: process, without --no-docker."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(PROCESS_SPEC % {"vllm": "/nonexistent/bin/vllm", "gpu": 0})
    out = run_vllmgen("doctor", spec, "--output", "json")
    results = {r["name"]: r for r in json.loads(out.stdout)["results"]}
    assert results["docker"]["status"] == "skip"
    assert results["process.vllm"]["status"] == "fail"


def test_a_model_served_with_dummy_weights_needs_only_its_config(tmp_path):
    """vLLM's --load-format dummy makes the weights up: a folder with config.json alone passes, and only then."""
    from vllmgen.doctor import storage
    from vllmgen.doctor.from_spec import reads_weights

    assert reads_weights([]) and reads_weights(["--load-format", "safetensors"])
    assert not reads_weights(["--load-format", "dummy"]) and not reads_weights(["--max-num-seqs", "4", "--load-format=dummy"])
    assert reads_weights(["--load-format"])  # no value: vLLM's parser refuses it, the doctor assumes weights
    dummy = H100_SPEC.replace("gpu_memory_utilization: 0.9}", "gpu_memory_utilization: 0.9, extra_args: [--load-format, dummy]}")
    for text, weights in ((H100_SPEC, True), (dummy, False)):
        valid, plan = _plan(tmp_path, text)
        assert expectation(plan, valid.spec, plan.head, docker=False, image_cuda="12.8").weights is weights
    assert storage.check_model_path("/m", ["config.json"]).status == "fail"
    found = storage.check_model_path("/m", ["config.json"], weights=False)
    assert (found.status, found.detail) == ("ok", "/m: config.json (no weights, none read: --load-format dummy)")
    assert storage.check_model_path("/m", ["tokenizer.json"], weights=False).status == "fail"  # config.json is still needed
