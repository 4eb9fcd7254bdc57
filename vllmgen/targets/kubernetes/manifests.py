"""The Kubernetes objects of one deployment, as plain data (the writer sorts and formats them).

Every vLLM pod: GPUs as ``nvidia.com/gpu`` limits, ``/dev/shm`` a memory emptyDir, the serve config a
ConfigMap mounted for ``--config``, the engine and HF caches on a claim (a restart skips compiling),
secrets only as ``secretKeyRef``, no Service links (a Service named ``vllm`` would inject
``VLLM_PORT=tcp://...``, which vLLM refuses), and Prometheus's scrape annotations on API server pods.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vllmgen.plan import gateway as front_door
from vllmgen.plan import label_names
from vllmgen.plan.engine import CACHE_IN_CONTAINER
from vllmgen.plan.plan import CONFIG_IN_CONTAINER, HF_CACHE_IN_CONTAINER, SERVE_CONFIG_FILE
from vllmgen.render import yamlout
from vllmgen.targets.kubernetes.plan import API_LABEL, POD_IP_ENV, KubernetesPlan, Pod
from vllmgen.targets.kubernetes.spec import GPU_RESOURCE

LWS_API = "leaderworkerset.x-k8s.io/v1"
DEPLOYMENT_LABEL = label_names.DEPLOYMENT
ROLE_LABEL = label_names.ROLE
ENGINE_LABEL = label_names.ENGINE
INSTANCE_LABEL = label_names.NODE  # a P/D instance's pods: its Deployment's and Service's selector
CONFIG_DIR = CONFIG_IN_CONTAINER.rsplit("/", 1)[0]
GATEWAY_DIR = front_door.CONF_IN_CONTAINER.rsplit("/", 1)[0]
# readiness with an API key: vLLM answers /v1/models only with it; the key is already in the
# container's environment (never in the probe's argv), and no proxy may stand in between
READY_WITH_KEY = ("import os, sys, urllib.request as u; "
                  "r = u.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + os.environ['VLLM_API_KEY']}); "
                  "u.build_opener(u.ProxyHandler({})).open(r, timeout=5)")


def objects(k8s: KubernetesPlan, header: str) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object kustomization.yaml lists."""
    out = [("configmap-serve-config.yaml", serve_config_map(k8s, header))]
    if k8s.renders_cache_claim:
        out.append(("pvc-cache.yaml", cache_claim(k8s)))
    if k8s.layout == "disaggregated":
        out += instance_objects(k8s)
    elif k8s.layout == "leaderworkerset":
        out.append(("leaderworkerset.yaml", leader_worker_set(k8s)))
    else:
        out.append(("deployment.yaml", deployment(k8s)))
    if k8s.layout != "disaggregated":  # P/D: the router's Services per instance; no Service mixes the two sides
        out.append(("service-api.yaml", service(k8s, k8s.service_name, {API_LABEL: k8s.name}, k8s.port)))
    out.append(("networkpolicy.yaml", network_policy(k8s)))
    if k8s.router:
        out += router_objects(k8s)
    if k8s.gateway:
        out += gateway_objects(k8s, header)
    return out


def secret_template(k8s: KubernetesPlan, header: str) -> dict[str, Any]:
    """The Secret the pods read, with its names and empty values: never listed in kustomization.yaml."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(k8s, k8s.secret_name, "secrets"),
            "type": "Opaque", "stringData": {key: "" for key in k8s.secret_keys}}


def _labels(k8s: KubernetesPlan, role: str) -> dict[str, str]:
    return {DEPLOYMENT_LABEL: k8s.name, ROLE_LABEL: role}


def _meta(k8s: KubernetesPlan, name: str, role: str) -> dict[str, Any]:
    return {"name": name, "labels": _labels(k8s, role)}


def serve_config_map(k8s: KubernetesPlan, header: str) -> dict[str, Any]:
    text = yamlout.dump(k8s.serve_config,
                        f"{header}\nOptions shared by every pod of '{k8s.name}' (vllm serve --config).")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(k8s, f"{k8s.name}-serve-config", "config"),
            "data": {SERVE_CONFIG_FILE: text}}


def cache_claim(k8s: KubernetesPlan) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": k8s.cache_size}}}
    if k8s.storage_class:
        spec["storageClassName"] = k8s.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(k8s, k8s.cache_claim, "cache"),
            "spec": spec}


def _probes(k8s: KubernetesPlan, port: int) -> dict[str, Any]:
    period = k8s.probe_period_s
    health = {"httpGet": {"path": "/health", "port": "http"}}
    if k8s.api_key:
        ready: dict[str, Any] = {"exec": {"command": ["python3", "-c", READY_WITH_KEY,
                                                      f"http://127.0.0.1:{port}/v1/models"]}}
    else:
        ready = {"httpGet": {"path": "/v1/models", "port": "http"}}
    return {
        # the whole ready timeout vLLM allows (VLLM_ENGINE_READY_TIMEOUT_S) before the kubelet gives up
        "startupProbe": {**health, "periodSeconds": period, "failureThreshold": k8s.startup_failure_threshold,
                         "timeoutSeconds": 5},
        "readinessProbe": {**ready, "periodSeconds": period, "failureThreshold": 3, "timeoutSeconds": 5},
        "livenessProbe": {**health, "periodSeconds": period, "failureThreshold": 3, "timeoutSeconds": 5},
    }


def _vllm_container(k8s: KubernetesPlan, pod: Pod) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in pod.env]
    own_ip = POD_IP_ENV if pod.instance else POD_IP_ENV[:1]  # P/D: NIXL's side channel on the pod's IP too
    env += [{"name": key, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} for key in own_ip]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": k8s.secret_name, "key": key}}}
            for key in pod.secrets]
    resources: dict[str, Any] = {"limits": {**dict(k8s.limits), GPU_RESOURCE: pod.gpus}}
    if k8s.requests:
        resources["requests"] = {name: value for name, value in k8s.requests}
    mounts = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "serve-config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "cache", "mountPath": CACHE_IN_CONTAINER, "subPath": "engine"},
        {"name": "cache", "mountPath": HF_CACHE_IN_CONTAINER, "subPath": "huggingface"},
    ]
    if k8s.model_claim or k8s.model_host_path:
        mounts.append({"name": "model", "mountPath": k8s.model_path, "readOnly": True})
    container: dict[str, Any] = {
        "name": "vllm",
        "image": k8s.image,
        "command": list(pod.command),
        "args": list(pod.args),
        "env": env,
        "resources": resources,
        "volumeMounts": mounts,
    }
    if pod.cap_add:
        container["securityContext"] = {"capabilities": {"add": list(pod.cap_add)}}
    if pod.serves_http:
        port = pod.port or k8s.port
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        container["ports"] += [{"name": f"nixl-{rank}", "containerPort": side, "protocol": "TCP"}
                               for rank, side in enumerate(pod.side_channel_ports)]
        container.update(_probes(k8s, port))
    return container


def _volumes(k8s: KubernetesPlan) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": k8s.shm_size}},
        {"name": "serve-config", "configMap": {"name": f"{k8s.name}-serve-config"}},
        {"name": "cache", "persistentVolumeClaim": {"claimName": k8s.cache_claim}},
    ]
    if k8s.model_claim:
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": k8s.model_claim, "readOnly": True}})
    elif k8s.model_host_path:
        volumes.append({"name": "model", "hostPath": {"path": k8s.model_host_path, "type": "Directory"}})
    return volumes


CONFIG_HASH = label_names.CONFIG_HASH  # a changed ConfigMap alone restarts no pod: its hash in the template does


def config_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def pod_template(k8s: KubernetesPlan, pod: Pod) -> dict[str, Any]:
    labels = {**_pod_labels(k8s, pod), ENGINE_LABEL: k8s.name}
    metadata: dict[str, Any] = {"labels": labels, "annotations": {CONFIG_HASH: config_hash(k8s.serve_config)}}
    if pod.serves_http and not pod.instance:
        labels[API_LABEL] = k8s.name
    if pod.serves_http and k8s.scrape:
        # monitoring: Prometheus's kubernetes_sd reads these (see the README: no ServiceMonitor CRD needed)
        metadata["annotations"].update({"prometheus.io/scrape": "true", "prometheus.io/port": str(pod.port or k8s.port),
                                        "prometheus.io/path": "/metrics"})
    spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [_vllm_container(k8s, pod)],
        "volumes": _volumes(k8s),
        # vLLM stops in seconds on SIGTERM; a stuck distributed start needs the kill
        "terminationGracePeriodSeconds": 30,
    }
    if k8s.node_selector:
        spec["nodeSelector"] = dict(k8s.node_selector)
    return {"metadata": metadata, "spec": spec}


def _pod_labels(k8s: KubernetesPlan, pod: Pod) -> dict[str, str]:
    labels = _labels(k8s, pod.role)
    if pod.instance:
        labels[INSTANCE_LABEL] = pod.instance
    return labels


def instance_objects(k8s: KubernetesPlan) -> list[tuple[str, dict[str, Any]]]:
    """A P/D instance: a Deployment of one pod with its GPUs, and a Service for its API port and NIXL side
    channel(s): the router reaches it by the Service's name."""
    out: list[tuple[str, dict[str, Any]]] = []
    for pod in k8s.pods:
        assert pod.instance is not None and pod.port is not None
        name = k8s.instance_name(pod)
        labels = _pod_labels(k8s, pod)
        deploy = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(k8s, name, pod.role),
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                     "template": pod_template(k8s, pod)},
        }
        svc = service(k8s, name, labels, pod.port)
        svc["spec"]["ports"] += [{"name": f"nixl-{rank}", "port": side, "targetPort": side, "protocol": "TCP"}
                                 for rank, side in enumerate(pod.side_channel_ports)]
        out += [(f"deployment-{pod.instance}.yaml", deploy), (f"service-{pod.instance}.yaml", svc)]
    return out


def leader_worker_set(k8s: KubernetesPlan) -> dict[str, Any]:
    worker = k8s.worker
    assert worker is not None
    return {
        "apiVersion": LWS_API,
        "kind": "LeaderWorkerSet",
        "metadata": _meta(k8s, k8s.name, "group"),
        "spec": {
            "replicas": k8s.replicas,
            # the workers start with the leader: torch.distributed waits for every rank
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": k8s.group_size,
                # one rank lost is the instance lost: the group restarts together
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(k8s, k8s.leader),
                "workerTemplate": pod_template(k8s, worker),
            },
        },
    }


def deployment(k8s: KubernetesPlan) -> dict[str, Any]:
    template = pod_template(k8s, k8s.leader)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(k8s, k8s.name, k8s.leader.role),
        "spec": {
            "replicas": k8s.replicas,
            "selector": {"matchLabels": _labels(k8s, k8s.leader.role)},
            # a new pod needs GPUs the old one holds: replace one at a time, never surge
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": template,
        },
    }


def service(k8s: KubernetesPlan, name: str, selector: dict[str, str], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(k8s, name, "service"),
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]},
    }


def _policy(k8s: KubernetesPlan, name: str, pods: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(k8s, name, "policy"),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": rules},
    }


def network_policy(k8s: KubernetesPlan) -> dict[str, Any]:
    """The vLLM pods take connections from the deployment's own pods (ranks, router, gateway), on the API
    port from the monitoring namespace's pods (/metrics), and from anyone only when neither router nor
    gateway stands in front; egress is left open (downloads, NCCL)."""
    port = [{"port": k8s.port, "protocol": "TCP"}]
    rules: list[dict[str, Any]] = [{"from": [{"podSelector": {"matchLabels": {DEPLOYMENT_LABEL: k8s.name}}}]}]
    if k8s.layout == "disaggregated":
        # P/D: the router (API ports) and the instances themselves (NIXL side channel, UCX's own ports)
        port = [{"port": pod.port, "protocol": "TCP"} for pod in k8s.pods if pod.port is not None]
        rules = [{"from": [{"podSelector": {"matchLabels": {ENGINE_LABEL: k8s.name}}}]}]
        if k8s.router is not None:
            rules.append({"from": [{"podSelector": {"matchLabels": _labels(k8s, "router")}}], "ports": port})
    if k8s.gateway is None and k8s.router is None:
        rules.append({"ports": port})
    elif k8s.prometheus_namespace:
        namespace = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": k8s.prometheus_namespace}}}
        rules.append({"from": [namespace], "ports": port})
    return _policy(k8s, f"{k8s.name}-engine", {ENGINE_LABEL: k8s.name}, rules)


def router_policy(k8s: KubernetesPlan) -> dict[str, Any]:
    """vllm-router's admin paths (/add_worker, /remove_worker) take no key: with a gateway, only the gateway
    reaches it; without one, the clients do (as on the other runtimes)."""
    assert k8s.router is not None
    port = [{"port": k8s.router.port, "protocol": "TCP"}]
    rule: dict[str, Any] = {"ports": port}
    if k8s.gateway is not None:
        rule["from"] = [{"podSelector": {"matchLabels": _labels(k8s, front_door.ROLE)}}]
    return _policy(k8s, f"{k8s.name}-router", _labels(k8s, "router"), [rule])


def router_objects(k8s: KubernetesPlan) -> list[tuple[str, dict[str, Any]]]:
    router = k8s.router
    assert router is not None
    name = k8s.router_name
    labels = _labels(k8s, "router")
    watch = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    rbac: list[tuple[str, dict[str, Any]]] = [] if not router.discovers else [
        ("serviceaccount-router.yaml",
         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(k8s, name, "router")}),
        # service discovery: the router watches the API server pods of this namespace
        ("role-router.yaml", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                              "metadata": _meta(k8s, name, "router"),
                              "rules": watch}),
        ("rolebinding-router.yaml", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                                     "metadata": _meta(k8s, name, "router"),
                                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                                     "subjects": [{"kind": "ServiceAccount", "name": name}]}),
    ]
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in router.env]
    if router.discovers:
        env.append({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    if router.key_env:  # the Secret's API key under the name vllm-router reads it from
        env.append({"name": router.key_env,
                    "valueFrom": {"secretKeyRef": {"name": k8s.secret_name, "key": front_door.KEY_ENV}}})
    container = {
        "name": "router",
        "image": router.image,
        "args": list(router.args),
        "env": env,
        "ports": [{"name": "http", "containerPort": router.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
    }
    deploy: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(k8s, name, "router"),
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"enableServiceLinks": False, "containers": [container]}}},
    }
    pod_spec = deploy["spec"]["template"]["spec"]
    if router.discovers:
        pod_spec["serviceAccountName"] = name
    else:  # it lists the instances' Services: no API access at all
        pod_spec["automountServiceAccountToken"] = False
    return [*rbac, ("deployment-router.yaml", deploy), ("service-router.yaml", service(k8s, name, labels, router.port)),
            ("networkpolicy-router.yaml", router_policy(k8s))]


def gateway_objects(k8s: KubernetesPlan, header: str) -> list[tuple[str, dict[str, Any]]]:
    """nginx with the project's own config and entrypoint (gateway.nginx_conf / gateway.entrypoint), its
    upstream the router's or the API servers' Service; the key from the Secret, written to /dev/shm."""
    gateway = k8s.gateway
    assert gateway is not None
    name = k8s.gateway_name
    labels = _labels(k8s, front_door.ROLE)
    conf_name = front_door.CONF_IN_CONTAINER.rsplit("/", 1)[1]
    script_name = front_door.ENTRYPOINT_IN_CONTAINER.rsplit("/", 1)[1]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(k8s, name, front_door.ROLE),
                  "data": {conf_name: gateway.conf, script_name: gateway.entrypoint}}
    container = {
        "name": "nginx",
        "image": gateway.image,
        "command": ["/bin/sh", front_door.ENTRYPOINT_IN_CONTAINER, front_door.CONF_IN_CONTAINER, "nginx"],
        "env": [{"name": front_door.KEY_ENV,
                 "valueFrom": {"secretKeyRef": {"name": k8s.secret_name, "key": front_door.KEY_ENV}}}],
        "ports": [{"name": "http", "containerPort": gateway.port, "protocol": "TCP"}],
        "volumeMounts": [{"name": "config", "mountPath": GATEWAY_DIR, "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        # /health needs the key too, as every path: the probe checks that nginx answers at all
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(k8s, name, front_door.ROLE),
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": {
                                  CONFIG_HASH: config_hash(gateway.conf, gateway.entrypoint)}},
                              "spec": {"enableServiceLinks": False, "automountServiceAccountToken": False,
                                       "containers": [container],
                                       "volumes": [{"name": "config", "configMap": {"name": name}},
                                                   {"name": "dshm", "emptyDir": {"medium": "Memory",
                                                                                 "sizeLimit": "16Mi"}}]}}},
    }
    svc = service(k8s, name, labels, gateway.port)
    svc["spec"]["type"] = gateway.service_type
    return [("configmap-gateway.yaml", config_map), ("deployment-gateway.yaml", deploy), ("service-gateway.yaml", svc)]
