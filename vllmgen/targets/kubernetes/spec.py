"""``runtime:`` with ``kind: kubernetes``: where pods find the model, caches and secrets, and their shape.

The Docker and process runtimes' fields (network, ipc_host, restart, volumes, python_env, user, ...) are
not fields here, so the model refuses them as unknown keys. The plan reads a few of them from any
runtime; the properties below answer for pods (they share nothing with the host).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from vllmgen.spec.formats import EnvMap, ImageRef, Model, Name, empty_dict

# Kubernetes' resource.Quantity as written in manifests: a number and an optional suffix
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# a qualified resource name: [prefix/]name (nvidia.com/gpu, cpu, memory, rdma/hca_shared_devices_a)
_RESOURCE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
GPU_RESOURCE = "nvidia.com/gpu"


def _quantity(value: str) -> str:
    if not _QUANTITY.fullmatch(value):
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as '16Gi', '500m' or '8'")
    return value


def _resource_name(value: str) -> str:
    if len(value) > 253 or not _RESOURCE.fullmatch(value):
        raise PydanticCustomError("resource_name", "expected a resource name such as 'cpu', 'memory' or 'rdma/hca'")
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]
ResourceName = Annotated[str, AfterValidator(_resource_name)]


class Resources(Model):
    requests: dict[ResourceName, Quantity] = Field(default_factory=empty_dict, description="requests besides the GPUs")
    limits: dict[ResourceName, Quantity] = Field(
        default_factory=empty_dict, description="limits besides the GPUs (nvidia.com/gpu comes from nodes[].gpus)")


class KubernetesRuntime(Model):
    in_containers: ClassVar[bool] = True  # every node is a pod: images, GPU limits, probes
    kind: Literal["kubernetes"] = Field(description="kubernetes: kustomize-ready manifests (LeaderWorkerSet, "
                                        "Deployments, Services) in build/<name>/; apply them with kubectl")
    namespace: Name | None = Field(None, description="namespace of every object (kustomization.yaml's namespace); "
                                   "unset: the one kubectl uses")
    image: ImageRef | None = Field(
        None, description="the vLLM image the pods pull (default: image.name, else image.base when nothing is "
        "added to it); build and push the Dockerfile's image yourself")
    model_claim: Name | None = Field(
        None, description="PersistentVolumeClaim holding the weights, mounted read-only at model.path "
        "(else model.host_path as a hostPath volume, else downloaded into the cache claim)")
    cache_claim: Name | None = Field(
        None, description="an existing PersistentVolumeClaim (ReadWriteMany) for the engine and HF caches "
        "(default: one rendered as <name>-cache)")
    cache_size: Quantity = Field("200Gi", description="size of the rendered cache claim")
    storage_class: Name | None = Field(None, description="storageClassName of the rendered cache claim")
    shm_size: Quantity = Field(
        "16Gi", description="/dev/shm of each vLLM pod: a memory emptyDir of this size")
    service_name: Name | None = Field(None, description="the API servers' Service (default <name>-api); never 'vllm'")
    group_size: int | None = Field(
        None, ge=1, description="pods per LeaderWorkerSet group; must equal the nodes one instance spans")
    replicas: int = Field(1, ge=1, le=1000, description="LeaderWorkerSet groups (copies of a multi-node instance)")
    resources: Resources = Field(default_factory=Resources, description="extra requests/limits of each vLLM pod")
    node_selector: dict[str, str] = Field(default_factory=empty_dict, description="nodeSelector of each vLLM pod")
    probe_period_s: int = Field(10, ge=1, le=300, description="periodSeconds of the vLLM pods' probes")
    startup_failure_threshold: int | None = Field(
        None, ge=1,
        description="the startupProbe's failureThreshold (default: enough periods to cover the ready timeout)")
    prometheus_namespace: Name | None = Field(
        "monitoring", description="namespace whose pods may scrape the API server pods' /metrics (the "
        "NetworkPolicy's exception); unset: none beyond the deployment's own pods")
    gateway_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="type of the front door's Service")
    env: EnvMap = Field(default_factory=empty_dict, description="environment for every vLLM container")

    # --- what the shared plan reads from any runtime (pods have their own network, IPC and restarts)
    @property
    def network(self) -> Literal["host"]:
        return "host"  # pod to pod, as host networking is between hosts: no port map

    @property
    def ipc_host(self) -> bool:
        return False

    @property
    def restart(self) -> str:
        return "no"  # the controllers restart pods

    @property
    def volumes(self) -> list[Any]:
        return []

    @property
    def container_prefix(self) -> None:
        return None

    @property
    def python_env(self) -> None:
        return None

    @property
    def vllm(self) -> None:
        return None

    @property
    def user(self) -> None:
        return None

    @property
    def user_home(self) -> None:
        return None

    @property
    def allow_root(self) -> bool:
        return False


__all__ = ["GPU_RESOURCE", "KubernetesRuntime", "Quantity", "Resources"]
