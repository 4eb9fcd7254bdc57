"""The Kubernetes target: manifests that pass strict offline validation, the LeaderWorkerSet and Deployment
layouts, the validators themselves (they reject what they must), and the commands that reach no cluster."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SPECS
from inprocess import run_vllmgen

from vllmgen.plan.engine import ready_timeout
from vllmgen.render.compile import compile_file
from vllmgen.targets.kubernetes.render import KUSTOMIZATION, SECRET_TEMPLATE
from vllmgen.targets.kubernetes.strict import (
    KUBERNETES_VERSION,
    ManifestError,
    validate_folder,
    validate_object,
)

K8S_SPECS = [spec for spec in SPECS if "kind: kubernetes" in spec.read_text()]
LWS_SPEC = ROOT / "specs" / "k8s-two-node-lws.yaml"
REPLICAS_SPEC = ROOT / "specs" / "k8s-replicas-router.yaml"
PD_SPEC = ROOT / "specs" / "k8s-pd.yaml"


def vllmgen(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """In-process (tests/inprocess.py); test_validate_and_render_of_a_kubernetes_spec_stay_pure starts its own."""
    return run_vllmgen(*args, cwd=cwd)


def _objects(spec: Path) -> dict[str, dict]:
    """file name -> object, for every object file kustomization.yaml lists (and the Secret template)."""
    files = {a.path: a.content for a in compile_file(spec).artifacts}
    kustomization = yaml.safe_load(files[KUSTOMIZATION])
    return {name: yaml.safe_load(files[name]) for name in [*kustomization["resources"], SECRET_TEMPLATE]}


def _kinds(spec: Path) -> dict[str, dict]:
    return {f"{obj['kind']}/{obj['metadata']['name']}": obj for obj in _objects(spec).values()}


def _containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


# --- the examples and their goldens ------------------------------------------------------------------


def test_the_examples_cover_every_layout():
    layouts = {compile_file(spec).plan.kubernetes.layout for spec in K8S_SPECS}
    assert layouts == {"leaderworkerset", "deployment", "disaggregated"}


@pytest.mark.parametrize("spec", K8S_SPECS, ids=lambda p: p.stem)
def test_every_object_passes_strict_offline_validation(spec: Path):
    for name, obj in _objects(spec).items():
        validate_object(obj, name)


@pytest.mark.parametrize("spec", K8S_SPECS, ids=lambda p: p.stem)
def test_committed_build_validates_and_kustomization_lists_every_object_file(spec: Path):
    folder = ROOT / "build" / compile_file(spec).plan.name
    assert validate_folder(folder) >= 5
    listed = set(yaml.safe_load((folder / KUSTOMIZATION).read_text())["resources"])
    on_disk = {p.name for p in folder.glob("*.yaml")} - {KUSTOMIZATION, SECRET_TEMPLATE}
    assert listed == on_disk


def test_output_is_byte_stable_with_sorted_keys():
    first = [(a.path, a.data) for a in compile_file(LWS_SPEC).artifacts]
    assert first == [(a.path, a.data) for a in compile_file(LWS_SPEC).artifacts]

    def sorted_everywhere(value) -> bool:
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(sorted_everywhere(v) for v in value.values())
        if isinstance(value, list):
            return all(sorted_everywhere(v) for v in value)
        return True

    assert all(sorted_everywhere(obj) for obj in _objects(LWS_SPEC).values())


# --- LeaderWorkerSet ------------------------------------------------------------------------------------


def test_an_image_that_adds_packages_comes_with_its_dockerfile(tmp_path):
    spec = tmp_path / "git.yaml"
    spec.write_text(LWS_SPEC.read_text().replace(
        "  base: vllm/vllm-openai:v0.32.0\n",
        "  base: vllm/vllm-openai:v0.32.0\n  git_packages:\n"
        "    - git+https://github.com/huggingface/transformers.git@v4.57.1\n"))
    compiled = compile_file(spec)
    files = {a.path: a.content for a in compiled.artifacts}
    assert "FROM vllm/vllm-openai:v0.32.0" in files["Dockerfile"] and "transformers.git@v4.57.1" in files["Dockerfile"]
    lws = yaml.safe_load(files["leaderworkerset.yaml"])
    assert _containers(lws["spec"]["leaderWorkerTemplate"]["workerTemplate"])[0]["image"] == compiled.plan.image.tag
    assert "Dockerfile" not in {a.path for a in compile_file(LWS_SPEC).artifacts}  # the base itself: nothing to build


def test_multi_node_instance_is_one_leaderworkerset_group():
    compiled = compile_file(LWS_SPEC)
    plan = compiled.plan
    lws = _kinds(LWS_SPEC)[f"LeaderWorkerSet/{plan.name}"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == len(plan.nodes) == 2
    assert lws["spec"]["replicas"] == 1
    assert template["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = _containers(template["leaderTemplate"])[0], _containers(template["workerTemplate"])[0]
    # the plan's own serve argv, with what a pod learns at start in $(VAR) form
    for container, node in ((leader, plan.nodes[0]), (worker, plan.nodes[1])):
        argv = list(plan.serve_argv(node))
        args = container["args"]
        assert args[0] == "serve" and container["command"] == ["vllm"]
        assert args[args.index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
        assert args[args.index("--master-addr") + 1] == "$(LWS_LEADER_ADDRESS)"
        assert args[args.index("--config") + 1] == argv[argv.index("--config") + 1]
        env = _env(container)
        assert env["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["NCCL_SOCKET_IFNAME"]["value"] == env["GLOO_SOCKET_IFNAME"]["value"] == "eth0"
        assert env["NCCL_IB_HCA"]["value"] == "mlx5_0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == node.gpus
    assert "--headless" in worker["args"] and "--headless" not in leader["args"]
    assert leader["args"][leader["args"].index("--host") + 1] == "0.0.0.0"
    assert "ports" in leader and "ports" not in worker and "startupProbe" not in worker
    # the head's address is not in the ConfigMap: pods learn the leader's from LWS
    config = yaml.safe_load(_kinds(LWS_SPEC)[f"ConfigMap/{plan.name}-serve-config"]["data"]["serve-config.yaml"])
    assert "master-addr" not in config and config["nnodes"] == 2


def test_data_parallel_across_nodes_gets_its_start_rank_from_the_worker_index(tmp_path):
    text = LWS_SPEC.read_text().replace("tensor_parallel_size: 16", "tensor_parallel_size: 4\n  data_parallel_size: 4\n"
                                        "  data_parallel:\n    lb: hybrid")
    spec = tmp_path / "dp.yaml"
    spec.write_text(text)
    lws = next(o for o in _objects(spec).values() if o["kind"] == "LeaderWorkerSet")
    validate_object(lws, "dp")
    worker = _containers(lws["spec"]["leaderWorkerTemplate"]["workerTemplate"])[0]
    # 2 local ranks per pod: the first rank is the index times 2, which only a shell computes
    command = worker["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[3] == "vllm"
    assert '--data-parallel-start-rank "$((LWS_WORKER_INDEX * 2))"' in command[2]
    # vLLM's DP coordinator wants an IPv4 literal: the worker resolves the leader's name, the leader uses its own
    assert 'getent ahostsv4 "$LWS_LEADER_ADDRESS"' in command[2] and '--data-parallel-address "$leader"' in command[2]
    assert "--data-parallel-address" not in worker["args"]
    script = tmp_path / "worker.sh"
    script.write_text("#!/bin/sh\n" + command[2] + "\n")
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    checked = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    leader = _containers(lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"])[0]
    assert leader["command"] == ["vllm"]
    assert leader["args"][leader["args"].index("--data-parallel-size-local") + 1] == "2"
    assert leader["args"][leader["args"].index("--data-parallel-address") + 1] == "$(VLLM_HOST_IP)"
    config = yaml.safe_load(next(o for o in _objects(spec).values() if o["kind"] == "ConfigMap"
                                 and "serve-config.yaml" in o["data"])["data"]["serve-config.yaml"])
    assert "data-parallel-address" not in config and config["data-parallel-hybrid-lb"] is True


# --- Deployment, services, secrets, probes -----------------------------------------------------------------


def test_single_node_replicas_are_one_deployment_behind_router_and_gateway():
    compiled = compile_file(REPLICAS_SPEC)
    name = compiled.plan.name
    kinds = _kinds(REPLICAS_SPEC)
    deployment = kinds[f"Deployment/{name}"]
    assert deployment["spec"]["replicas"] == 2
    assert {f"Deployment/{name}-router", f"Service/{name}-router", f"Deployment/{name}-gateway",
            f"Service/{name}-gateway", f"Service/{name}-api"} <= set(kinds)
    # the router finds the API server pods by the label the API Service selects
    selector = kinds[f"Service/{name}-api"]["spec"]["selector"]
    router_args = _containers(kinds[f"Deployment/{name}-router"]["spec"]["template"])[0]["args"]
    label, value = router_args[router_args.index("--selector") + 1].split("=")
    assert selector == {label: value}
    assert deployment["spec"]["template"]["metadata"]["labels"][label] == value
    # only the gateway reaches the router (its admin paths take no key); the engines: own pods and Prometheus
    router_policy = kinds[f"NetworkPolicy/{name}-router"]["spec"]
    assert router_policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": {
        "io.vllmgen.deployment": name, "io.vllmgen.role": "gateway"}}}], "ports": [{"port": 8080, "protocol": "TCP"}]}]
    engine_policy = kinds[f"NetworkPolicy/{name}-engine"]["spec"]
    assert engine_policy["podSelector"]["matchLabels"] == {"io.vllmgen.engine": name}
    assert [rule.get("ports") for rule in engine_policy["ingress"]] == [None, [{"port": 8000, "protocol": "TCP"}]]
    assert engine_policy["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    # the front door is the project's own nginx config, its upstream the router's Service
    conf = kinds[f"ConfigMap/{name}-gateway"]["data"]["nginx.conf"]
    assert f"server {name}-router:8080;" in conf and "if ($vllmgen_key_ok != 1)" in conf


def test_prefill_decode_instances_are_a_deployment_and_service_each_behind_the_pd_router():
    compiled = compile_file(PD_SPEC)
    name = compiled.plan.name
    kinds = _kinds(PD_SPEC)
    expected = {"decode-0": ("kv_consumer", 4, 8200, 5602), "prefill-0": ("kv_producer", 2, 8100, 5600),
                "prefill-1": ("kv_producer", 2, 8101, 5601)}
    engines = {key: obj for key, obj in kinds.items() if obj["kind"] == "Deployment"
               and obj["spec"]["template"]["spec"]["containers"][0]["name"] == "vllm"}
    assert set(engines) == {f"Deployment/{name}-{instance}" for instance in expected}
    assert f"Service/{name}-api" not in kinds and "Service/vllm" not in kinds
    for instance, (role, gpus, port, side) in expected.items():
        deployment = kinds[f"Deployment/{name}-{instance}"]
        assert deployment["spec"]["replicas"] == 1
        template = deployment["spec"]["template"]
        container = _containers(template)[0]
        args = container["args"]
        assert json.loads(args[args.index("--kv-transfer-config") + 1]) == {"kv_connector": "NixlConnector",
                                                                            "kv_role": role}
        assert args[args.index("--port") + 1] == str(port)
        assert args[args.index("--tensor-parallel-size") + 1] == str(gpus)
        assert args[args.index("--host") + 1] == "0.0.0.0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        env = _env(container)
        # the side channel on the pod's own IP (the other side dials it), never the spec's host address
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == {"name": "VLLM_NIXL_SIDE_CHANNEL_HOST",
                                                      "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"]["value"] == str(side)
        # its Service selects exactly its pod and exposes the API and side-channel ports
        service = kinds[f"Service/{name}-{instance}"]["spec"]
        assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert all(template["metadata"]["labels"][k] == v for k, v in service["selector"].items())
        assert {p["port"] for p in service["ports"]} == {port, side}
    others = [obj for key, obj in engines.items() if key != f"Deployment/{name}-prefill-0"]
    selector = kinds[f"Service/{name}-prefill-0"]["spec"]["selector"]
    assert not any(all(o["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
                   for o in others)
    # the router: P/D mode, the Services' DNS names, the key only through the Secret, no API access
    router = kinds[f"Deployment/{name}-router"]["spec"]["template"]
    container = _containers(router)[0]
    args = container["args"]
    assert "--vllm-pd-disaggregation" in args and args[args.index("--kv-connector") + 1] == "nixl"
    urls = [(flag, url) for flag, url in zip(args, args[1:], strict=False) if flag in ("--prefill", "--decode")]
    assert urls == [("--prefill", f"http://{name}-prefill-0:8100"), ("--prefill", f"http://{name}-prefill-1:8101"),
                    ("--decode", f"http://{name}-decode-0:8200")]
    assert _env(container)["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": compiled.plan.kubernetes.secret_name, "key": "VLLM_API_KEY"}}}
    assert router["spec"]["automountServiceAccountToken"] is False and f"Role/{name}-router" not in kinds
    # only the gateway reaches the router; the instances: each other (NIXL, UCX), the router, Prometheus
    router_policy = kinds[f"NetworkPolicy/{name}-router"]["spec"]
    assert router_policy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {
        "io.vllmgen.deployment": name, "io.vllmgen.role": "gateway"}}}]
    engine_policy = kinds[f"NetworkPolicy/{name}-engine"]["spec"]["ingress"]
    assert engine_policy[0] == {"from": [{"podSelector": {"matchLabels": {"io.vllmgen.engine": name}}}]}
    assert engine_policy[1]["from"] == [{"podSelector": {"matchLabels": {"io.vllmgen.deployment": name,
                                                                          "io.vllmgen.role": "router"}}}]
    assert sorted(p["port"] for p in engine_policy[1]["ports"]) == [8100, 8101, 8200]
    conf = kinds[f"ConfigMap/{name}-gateway"]["data"]["nginx.conf"]
    assert f"server {name}-router:8080;" in conf


def test_prefill_decode_gpu_ids_are_refused_with_their_position(tmp_path):
    text = PD_SPEC.read_text().replace("{node: gpu-0, port: 8200,", "{node: gpu-0, gpu_ids: [4, 5, 6, 7], port: 8200,")
    spec = tmp_path / "pd.yaml"
    spec.write_text(text)
    result = vllmgen("validate", str(spec))
    assert result.returncode == 3
    assert "disaggregation.decode.instances[0].gpu_ids" in result.stderr + result.stdout


@pytest.mark.parametrize("spec", K8S_SPECS, ids=lambda p: p.stem)
def test_pods_get_gpus_shm_caches_and_secrets_only_by_reference(spec: Path):
    compiled = compile_file(spec)
    k8s = compiled.plan.kubernetes
    secret_names = {secret.name for secret in compiled.plan.secrets}
    assert secret_names == {"HF_TOKEN", "VLLM_API_KEY"}
    for obj in _objects(spec).values():
        assert obj["metadata"]["name"] != "vllm"
        templates = []
        if obj["kind"] == "Deployment":
            templates = [obj["spec"]["template"]]
        elif obj["kind"] == "LeaderWorkerSet":
            templates = [obj["spec"]["leaderWorkerTemplate"][key] for key in ("leaderTemplate", "workerTemplate")]
        for template in templates:
            assert template["spec"]["enableServiceLinks"] is False  # no VLLM_PORT=tcp://... from any Service
            for container in _containers(template):
                for name, item in _env(container).items():
                    if name in secret_names:
                        assert "value" not in item and item["valueFrom"]["secretKeyRef"]["name"] == k8s.secret_name
        if obj["kind"] == "Secret":
            assert set(obj["stringData"]) == secret_names and set(obj["stringData"].values()) == {""}
    engines = {k8s.name} | {k8s.instance_name(pod) for pod in k8s.pods if pod.instance}
    engine = next(o for o in _objects(spec).values() if o["kind"] in ("LeaderWorkerSet", "Deployment")
                  and o["metadata"]["name"] in engines)
    template = (engine["spec"]["template"] if engine["kind"] == "Deployment"
                else engine["spec"]["leaderWorkerTemplate"]["leaderTemplate"])
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": k8s.shm_size}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == k8s.cache_claim
    assert volumes["serve-config"]["configMap"]["name"] == f"{k8s.name}-serve-config"
    container = _containers(template)[0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "dshm" and mounts["/var/cache/vllmgen"]["name"] == "cache"
    assert container["args"][container["args"].index("--config") + 1] == "/etc/vllmgen/serve-config.yaml"
    assert mounts["/etc/vllmgen"]["name"] == "serve-config"
    # the startup probe's budget covers the ready timeout vLLM itself is given
    startup = container["startupProbe"]
    seconds = ready_timeout(compiled.valid.spec).seconds
    assert startup["failureThreshold"] * startup["periodSeconds"] >= seconds
    assert _env(container)["VLLM_ENGINE_READY_TIMEOUT_S"]["value"] == str(seconds)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # with an API key, readiness asks the API with the key from the pod's environment, never in argv
    ready = container["readinessProbe"]["exec"]["command"]
    assert "/v1/models" in ready[-1] and "os.environ['VLLM_API_KEY']" in ready[2]


# --- the validators reject what they must -----------------------------------------------------------------


def _refused(obj: dict, change) -> str:
    broken = copy.deepcopy(obj)
    change(broken)
    with pytest.raises(ManifestError) as caught:
        validate_object(broken, "test")
    return str(caught.value)


def test_core_validation_rejects_an_unknown_field_and_a_wrong_type():
    service = _kinds(REPLICAS_SPEC)["Service/qwen3-32b-k8s-api"]
    deployment = _kinds(REPLICAS_SPEC)["Deployment/qwen3-32b-k8s"]
    validate_object(service)
    assert "'bogus' was unexpected" in _refused(service, lambda o: o["spec"].__setitem__("bogus", 1))
    assert "is not of type 'integer'" in _refused(
        deployment, lambda o: o["spec"].__setitem__("replicas", "2"))
    assert "'shmSize' was unexpected" in _refused(
        deployment, lambda o: _containers(o["spec"]["template"])[0].__setitem__("shmSize", "1Gi"))


def test_leaderworkerset_fields_are_checked_by_the_strict_schema():
    lws = next(o for o in _objects(LWS_SPEC).values() if o["kind"] == "LeaderWorkerSet")
    assert "'bogus' was unexpected" in _refused(
        lws, lambda o: o["spec"]["leaderWorkerTemplate"].__setitem__("bogus", 1))
    assert "'2' is not of type 'integer'" in _refused(
        lws, lambda o: o["spec"]["leaderWorkerTemplate"].__setitem__("size", "2"))
    assert "'Always' is not one of" in _refused(
        lws, lambda o: o["spec"]["leaderWorkerTemplate"].__setitem__("restartPolicy", "Always"))
    assert "'groupSize' was unexpected" in _refused(lws, lambda o: o["spec"].__setitem__("groupSize", 2))


def test_leaderworkerset_pod_templates_are_checked_as_core_pod_templates():
    lws = next(o for o in _objects(LWS_SPEC).values() if o["kind"] == "LeaderWorkerSet")
    worker = lambda o: o["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]  # noqa: E731
    leader = lambda o: o["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]  # noqa: E731
    message = _refused(lws, lambda o: worker(o).__setitem__("gpus", 8))
    assert "workerTemplate" in message and "'gpus' was unexpected" in message
    message = _refused(lws, lambda o: leader(o)["ports"][0].__setitem__("containerPort", "http"))
    assert "leaderTemplate" in message and "is not of type 'integer'" in message


def test_a_kind_kubernetes_validate_cannot_check_is_refused_not_passed(tmp_path):
    """kubernetes-validate's own command only warns on a CRD and exits 0; ours refuses what it cannot check."""
    lws = next(o for o in _objects(LWS_SPEC).values() if o["kind"] == "LeaderWorkerSet")
    lws["spec"]["leaderWorkerTemplate"]["bogus"] = 1
    path = tmp_path / "lws.yaml"
    path.write_text(yaml.safe_dump(lws))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    silent = subprocess.run([str(tool), "--strict", "-k", KUBERNETES_VERSION, str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert silent.returncode == 0 and "Couldn't find schema" in silent.stdout + silent.stderr  # the silent pass
    with pytest.raises(ManifestError):
        validate_object(lws, "lws.yaml")
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {}}
    with pytest.raises(ManifestError, match="no schema for monitoring.coreos.com/v1/ServiceMonitor"):
        validate_object(monitor, "monitor.yaml")


# --- commands: no cluster is reached, nothing pretends to have applied -------------------------------------


@pytest.mark.parametrize("command", ["apply", "status", "down", "bench"])
def test_runner_commands_print_kubectl_and_exit_4(command: str):
    result = vllmgen(command, "specs/k8s-two-node-lws.yaml")
    assert result.returncode == 4, result.stderr
    assert "reaches no Kubernetes cluster" in result.stderr
    expected = {"apply": "kubectl apply -k build/qwen3-next-tp16-lws",
                "status": "kubectl -n llm get leaderworkerset,pods,services -l io.vllmgen.deployment=",
                "down": "kubectl delete -k build/qwen3-next-tp16-lws",
                "bench": "kubectl -n llm exec -it qwen3-next-tp16-lws-0 -- vllm bench serve"}[command]
    assert expected in result.stderr
    assert result.stdout == ""


def test_dry_runs_print_the_command_and_exit_0():
    for command in ("apply", "down"):
        result = vllmgen(command, "--dry-run", "specs/k8s-replicas-router.yaml")
        assert result.returncode == 0 and "kubectl " in result.stdout


def test_plan_lists_the_objects_that_change_against_the_committed_build(tmp_path):
    build = tmp_path / "build"
    shutil.copytree(ROOT / "build" / "qwen3-32b-k8s", build / "qwen3-32b-k8s")
    same = vllmgen("plan", "specs/k8s-replicas-router.yaml", "--build-dir", str(build))
    assert same.returncode == 0 and "no object changes" in same.stdout
    (build / "qwen3-32b-k8s" / "deployment.yaml").write_text("# x\n# Deployment qwen3-32b-k8s\n")
    (build / "qwen3-32b-k8s" / "service-router.yaml").unlink()
    (build / "qwen3-32b-k8s" / "service-old.yaml").write_text("# x\n# Service qwen3-32b-k8s-old\n")
    changed = vllmgen("plan", "specs/k8s-replicas-router.yaml", "--build-dir", str(build))
    assert changed.returncode == 1
    assert "change  Deployment qwen3-32b-k8s  (deployment.yaml)" in changed.stdout
    assert "create  Service qwen3-32b-k8s-router  (service-router.yaml)" in changed.stdout
    assert "delete  Service qwen3-32b-k8s-old  (service-old.yaml)" in changed.stdout


def test_render_check_and_precommit_catch_a_hand_edited_manifest(tmp_path):
    build = tmp_path / "build"
    assert vllmgen("render", "specs/k8s-two-node-lws.yaml", "-o", str(build)).returncode == 0
    assert vllmgen("render", "specs/k8s-two-node-lws.yaml", "-o", str(build), "--check").returncode == 0
    lws = build / "qwen3-next-tp16-lws" / "leaderworkerset.yaml"
    lws.write_text(lws.read_text().replace("size: 2", "size: 3"))
    stale = vllmgen("render", "specs/k8s-two-node-lws.yaml", "-o", str(build), "--check")
    assert stale.returncode == 1 and "-    size: 3" in stale.stdout and "+    size: 2" in stale.stdout
    hook = vllmgen("precommit", "--build-dir", str(build), "specs/k8s-two-node-lws.yaml")
    assert hook.returncode == 1 and "out of date" in hook.stderr


def test_diff_summarises_a_kubernetes_spec_change(tmp_path):
    changed = tmp_path / "changed.yaml"
    changed.write_text(LWS_SPEC.read_text().replace("max_model_len: 16248", "max_model_len: 8192"))
    result = vllmgen("diff", str(changed), "--against", str(LWS_SPEC))
    assert result.returncode == 0, result.stderr
    assert "max-model-len" in result.stdout and "16248" in result.stdout and "8192" in result.stdout


def test_validate_and_render_of_a_kubernetes_spec_stay_pure(tmp_path):
    """The same boundary as tests/test_import_boundaries.py, for this target: no Docker SDK, runner or HTTP
    client, and not the optional strict validation either (render never runs it)."""
    from test_import_boundaries import FORBIDDEN, PIPELINE

    result = subprocess.run([sys.executable, "-c", PIPELINE, str(LWS_SPEC), str(tmp_path / "build")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0]
    forbidden = (*FORBIDDEN, "kubernetes_validate", "jsonschema", "vllmgen.targets.kubernetes.strict",
                 "vllmgen.targets.kubernetes.runner")
    modules = report["modules"]
    assert "vllmgen.targets.kubernetes.manifests" in modules
    assert [m for m in modules for name in forbidden if m == name or m.startswith(name + ".")] == []
