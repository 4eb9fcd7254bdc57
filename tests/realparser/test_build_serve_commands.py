"""Every serve command in build/ parses with the real vLLM parser, --config YAML included."""

import re
from pathlib import Path

import pytest
import yaml

from vllmgen.render.compile import plan_file
from vllmgen.spec.container_layout import CONFIG_IN_CONTAINER

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.realparser]


# what a pod's $(VAR) references stand for when its args are parsed here (the kubelet substitutes them)
POD_VARS = {"LWS_WORKER_INDEX": "1", "LWS_LEADER_ADDRESS": "10.0.0.1", "LWS_GROUP_SIZE": "2"}


def _pod_items(plan, tmp: Path) -> list[dict]:  # noqa: ANN001
    """A Kubernetes build: the args of every `vllm` container its objects run, the ConfigMap's serve config
    written where --config reads it (the pod mounts it at CONFIG_IN_CONTAINER)."""
    folder = ROOT / "build" / plan.name
    config_map = yaml.safe_load((folder / "configmap-serve-config.yaml").read_text())
    config = tmp / f"{plan.name}-serve-config.yaml"
    config.write_text(config_map["data"]["serve-config.yaml"])
    items = []
    for path in sorted(folder.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj or obj.get("kind") not in ("Deployment", "LeaderWorkerSet"):
                continue
            spec = obj["spec"]
            templates = ({"leader": spec["leaderWorkerTemplate"]["leaderTemplate"],
                          "worker": spec["leaderWorkerTemplate"]["workerTemplate"]}
                         if obj["kind"] == "LeaderWorkerSet" else {"pod": spec["template"]})
            for role, template in templates.items():
                for container in template["spec"]["containers"]:
                    if container.get("command") != ["vllm"]:  # the router, nginx; a worker's sh -c line: shellchecked
                        continue
                    args = [re.sub(r"\$\((\w+)\)", lambda m: POD_VARS[m.group(1)], arg) for arg in container["args"]]
                    assert args[0] == "serve", args  # then the model as the pod sees it (a claim or hostPath mount)
                    argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in args[1:]]
                    items.append({"id": f"{plan.name}/{obj['metadata']['name']}/{role}", "argv": argv,
                                  "config": None, "plan": plan})
    assert items, f"no vllm container in {folder}"
    return items


def _items(tmp: Path) -> list[dict]:
    items = []
    for spec in SPECS:
        _, plan = plan_file(spec)
        if plan.kubernetes is not None:
            items += _pod_items(plan, tmp)
            continue
        config = ROOT / "build" / plan.name / "serve-config.yaml"
        for node in plan.nodes:
            argv = plan.serve_argv(node)
            if argv is None:
                continue
            # the container sees the config at CONFIG_IN_CONTAINER; here it is in build/
            argv = [str(config) if arg == CONFIG_IN_CONTAINER else arg for arg in argv]
            assert argv[0] == plan.model_ref  # the arguments after `vllm serve`
            items.append({"id": f"{plan.name}/{node.name}", "argv": argv, "config": None, "plan": plan})
    return items


def test_every_build_serve_command_parses(parse_check, tmp_path):
    items = _items(tmp_path)
    assert len(items) >= 5  # single, cn, 2 x mp, ray head
    results = parse_check([{k: v for k, v in item.items() if k != "plan"} for item in items])
    rejected = {key: r["error"] for key, r in results.items() if not r["ok"]}
    assert rejected == {}
    for item in items:
        plan, parsed = item["plan"], results[item["id"]]["set"]
        # the YAML's options really took effect, not only parsed
        # ("set" lists only values that differ from vLLM's defaults: port 8000, TP 1)
        argv = item["argv"]  # a prefill/decode instance carries its own port and TP after the shared YAML
        port = plan.serve_config.get("port") or int(argv[argv.index("--port") + 1])
        tp = plan.serve_config.get("tensor-parallel-size") or int(argv[argv.index("--tensor-parallel-size") + 1])
        assert parsed.get("port", 8000) == port, parsed
        assert parsed.get("tensor_parallel_size", 1) == tp, parsed
        assert parsed.get("served_model_name") == [plan.endpoint.served_name], parsed
