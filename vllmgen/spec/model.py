"""Stage 2a, the spec language: pydantic models, one per section of the YAML.

Per-field rules live here (types, ranges, formats); rules that relate several fields live in
``vllmgen.spec.rules.core``. Every model forbids unknown keys so a typo is an error, not a silent default.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from vllmgen.spec import addresses
from vllmgen.spec.formats import (
    IMAGE_REF,
    Address,
    ContainerPath,
    DockerHost,
    EnvMap,
    EnvName,
    Fraction,
    HostPath,
    IfName,
    ImageRef,
    Model,
    Name,
    Port,
    Text,
    Url,
    Version,
    empty_dict,
    empty_list,
    git_requirement,
    interface_name,
    invalid,
    pinned_requirement,
)
from vllmgen.spec.gateway import Gateway
from vllmgen.spec.parallel import DataParallel, ExpertParallel, Router
from vllmgen.spec.pd import Disaggregation
from vllmgen.spec.runtime import kind_of
from vllmgen.targets.docker.runtime import DockerRuntime
from vllmgen.targets.kubernetes.spec import KubernetesRuntime
from vllmgen.targets.process.runtime import ProcessRuntime

SPEC_VERSION = 1


# --- sections -------------------------------------------------------------------------------


class SecretRef(Model):
    """Where a secret is read at apply time. Never the value itself."""

    env: EnvName | None = Field(None, description="read from this environment variable of the caller")
    file: HostPath | None = Field(None, description="read from this file on the host running the script")

    @model_validator(mode="before")
    @classmethod
    def _refuse_literals(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise invalid(
                "literal_secret",
                "secrets are given by reference only: write {env: VAR_NAME} or {file: /path/to/file}, "
                "never the value",
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise invalid("secret_ref", "give exactly one of 'env' or 'file'")
        return self


class Secrets(Model):
    hf_token: SecretRef | None = Field(None, description="Hugging Face token, passed to containers as HF_TOKEN")
    api_key: SecretRef | None = Field(
        None, description="API key the server requires, passed as VLLM_API_KEY (never on a command line)"
    )


class Image(Model):
    base: ImageRef = Field(
        "vllm/vllm-openai:v0.32.0", description="base image, normally vllm/vllm-openai:<tag>; pin the tag"
    )
    name: ImageRef | None = Field(None, description="tag of the image built from the generated Dockerfile (default vllmgen/<name>:<base tag>)")
    pip_index_url: Url | None = Field(None, description="PyPI mirror, set as PIP_INDEX_URL in the image")
    uv_index_url: Url | None = Field(None, description="uv index, set as UV_INDEX_URL (defaults to pip_index_url)")
    packages: list[Annotated[str, AfterValidator(pinned_requirement)]] = Field(
        default_factory=empty_list, description="extra pip packages, pinned with '==' (e.g. 'flashinfer-python==0.2.5')"
    )
    git_packages: list[Annotated[str, AfterValidator(git_requirement)]] = Field(
        default_factory=empty_list,
        description="packages from git, e.g. 'git+https://github.com/huggingface/transformers.git@v4.56.0'",
    )
    vllm_extras: list[Literal["audio", "video", "tensorizer", "runai", "fastsafetensors", "bench"]] = Field(
        default_factory=empty_list, description="vLLM extras installed at the base image's vLLM version"
    )
    ray_version: Version = Field("2.60.0", description="ray[default] version installed when the backend is ray")

    @property
    def base_tag(self) -> str | None:
        match = IMAGE_REF.fullmatch(self.base)
        return match.group("tag") if match else None

    @property
    def vllm_version(self) -> str | None:
        """'0.32.0' for a base tagged v0.32.0; None for latest, nightly or a digest."""
        tag = (self.base_tag or "").removeprefix("v")
        return tag if re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)?", tag) else None



class Docker(Model):
    registry_mirrors: list[Url] = Field(default_factory=empty_list, description="daemon.json registry-mirrors")
    daemon: dict[str, Any] = Field(
        default_factory=empty_dict, description="other daemon.json keys, passed through as written"
    )

    @field_validator("daemon")
    @classmethod
    def _no_clash(cls, daemon: dict[str, Any]) -> dict[str, Any]:
        if "registry-mirrors" in daemon:
            raise invalid("daemon_clash", "set registry mirrors with docker.registry_mirrors, not here")
        return daemon


class ModelSource(Model):
    source: Text = Field(description="Hugging Face repo id (org/name) or, with host_path, a label for the model")
    host_path: HostPath | None = Field(None, description="directory holding the weights on every host")
    path: ContainerPath = Field("/models/model", description="where the weights appear inside the container")
    served_name: Text | None = Field(None, description="name clients use (--served-model-name)")
    revision: Text | None = Field(None, description="Hugging Face revision: branch, tag or commit")
    trust_remote_code: bool = Field(False, description="run the model repo's own code (--trust-remote-code)")
    hf_cache: HostPath = Field("~/.cache/huggingface", description="host directory mounted as the HF cache")
    hf_endpoint: Url | None = Field(None, description="Hugging Face mirror, set as HF_ENDPOINT")
    modelscope: bool = Field(False, description="download from ModelScope (VLLM_USE_MODELSCOPE)")
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = Field(None, description="--dtype")
    quantization: Text | None = Field(None, description="--quantization method, e.g. fp8 or awq")


# runtime: each target's own model, picked by ``kind`` (absent: docker)
Runtime = Annotated[
    Annotated[DockerRuntime, Tag("docker")] | Annotated[ProcessRuntime, Tag("process")]
    | Annotated[KubernetesRuntime, Tag("kubernetes")],
    Discriminator(kind_of),
]


class Cluster(Model):
    backend: Literal["ray", "mp", "replicas"] | None = Field(
        None, description="ray (head/worker containers, as run_cluster.sh), mp (--nnodes/--node-rank, or "
        "--data-parallel-* across nodes) or replicas (every node serves its own copy; put a router in front); "
        "required with several nodes"
    )
    ray_port: Port = Field(6379, description="Ray GCS port on the head (ray backend)")
    master_port: Port = Field(29500, description="torch.distributed port on the head (mp backend, several nodes)")
    nic: IfName | None = Field(None, description="data NIC for every node (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME)")
    ib_hcas: list[Annotated[str, AfterValidator(interface_name)]] = Field(
        default_factory=empty_list, description="InfiniBand HCAs for every node (NCCL_IB_HCA)"
    )


def _address_not_always_required(schema: dict[str, Any]) -> None:
    """The editor's schema: Spec says when nodes[].address is required (ADDRESS_REQUIRED)."""
    schema["required"] = [name for name in schema.get("required", []) if name != "address"]


class Node(Model):
    model_config = ConfigDict(**Model.model_config, json_schema_extra=_address_not_always_required)

    name: Name = Field(description="node name (DNS label); names its folder in build/ and its container")
    address: Address = Field(description="control IP or hostname; also VLLM_HOST_IP. Required for runtime.kind "
                             "docker and process; a Kubernetes pod has its own (status.podIP): leave it out")
    role: Literal["head", "worker"] | None = Field(None, description="exactly one head; optional for one node")
    gpus: int = Field(ge=1, le=64, description="GPUs on this node used by the deployment")
    nic: IfName | None = Field(None, description="overrides cluster.nic")
    ib_hcas: list[Annotated[str, AfterValidator(interface_name)]] | None = Field(None, description="overrides cluster.ib_hcas")
    env: EnvMap = Field(default_factory=empty_dict, description="merged over runtime.env")
    model_host_path: HostPath | None = Field(None, description="overrides model.host_path on this node")
    hf_cache: HostPath | None = Field(None, description="overrides model.hf_cache on this node")
    docker_host: DockerHost | None = Field(
        None, description="Docker endpoint used by 'apply --all' (ssh://user@host or unix:///path; tcp:// is refused)"
    )
    gpu_ids: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(
        None, description="which GPUs of the host this node uses (Docker device_ids, CUDA_VISIBLE_DEVICES); "
        "as many as gpus, unique per host; default all")
    python_env: HostPath | None = Field(None, description="overrides runtime.python_env on this node")
    vllm: HostPath | None = Field(None, description="overrides runtime.vllm on this node")


class Serve(Model):
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs each layer is split across (--tensor-parallel-size)")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline stages (--pipeline-parallel-size)")
    data_parallel_size: int = Field(1, ge=1, description="model replicas (--data-parallel-size), across nodes with backend mp")
    gpu_memory_utilization: Fraction | None = Field(None, description="fraction of each GPU's memory, in (0, 1]")
    max_model_len: int | None = Field(None, ge=1, description="context length limit (--max-model-len)")
    max_num_seqs: int | None = Field(None, ge=1, description="concurrent sequences (--max-num-seqs)")
    enable_prefix_caching: bool | None = Field(None, description="true/false sets the flag pair; unset keeps vLLM's default")
    enforce_eager: bool | None = Field(None, description="skip CUDA graphs (--enforce-eager)")
    reasoning_parser: Text | None = Field(None, description="--reasoning-parser, e.g. deepseek_r1")
    tool_call_parser: Text | None = Field(None, description="also turns on --enable-auto-tool-choice")
    speculative_config: dict[str, Any] | None = Field(None, description="a mapping with a 'method'; rendered as JSON")
    host: Text | None = Field(
        None, description="address the API server binds (default: loopback when only its own node reaches it, "
        "else the node's address; see the runbook's port table)")
    port: Port = Field(8000, description="HTTP port of the OpenAI-compatible server")
    extra_args: list[Text] = Field(default_factory=empty_list, description="any other vllm serve flags, one item per word")
    ready_timeout: int | None = Field(
        None, ge=60, le=86400, description="seconds the engine may take to become ready "
        "(VLLM_ENGINE_READY_TIMEOUT_S, the compose healthcheck's start period); default derived from the model and layout")

    data_parallel: DataParallel = Field(default_factory=DataParallel, description="how DP ranks are spread and reached")
    expert_parallel: ExpertParallel = Field(default_factory=ExpertParallel, description="expert parallelism (MoE models)")

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.data_parallel_size


def _duration(value: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*(ms|s|m|h)", value):
        raise invalid("duration", "expected a duration such as '15s', '1m' or '500ms'")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class Caches(Model):
    keep: bool = Field(
        True, description="keep vLLM's compile and kernel caches (torch.compile, Inductor, Triton, FlashInfer, "
        "CUDA) in a host folder, so a second start skips that work")
    host_path: HostPath = Field(
        "~/.cache/vllmgen-engine", description="host folder holding them, one sub-folder per deployment")


class Monitoring(Model):
    enabled: bool = Field(True, description="render monitoring/: a Prometheus scrape config, a Grafana dashboard "
                          "and a compose file running both")
    node: Name | None = Field(None, description="the node whose host runs Prometheus and Grafana (default: the head)")
    scrape_interval: Duration = Field("15s", description="how often Prometheus scrapes /metrics")
    prometheus_image: ImageRef = Field("prom/prometheus:v3.5.0", description="Prometheus image (pin the tag)")
    grafana_image: ImageRef = Field("grafana/grafana:12.1.1", description="Grafana image (pin the tag)")
    prometheus_port: Port = Field(9090, description="Prometheus's port on that host")
    grafana_port: Port = Field(3000, description="Grafana's port on that host")
    bind: Address | None = Field(
        None, description="IP address Prometheus and Grafana listen on (default: the node's address when it is an "
        "IP, else 127.0.0.1); 0.0.0.0 or :: listens on every interface")
    grafana_anonymous: bool = Field(
        False, description="let anyone who reaches Grafana view the dashboards without logging in (Viewer)")


# in the editor's schema: nodes[].address is required unless runtime.kind is kubernetes
ADDRESS_REQUIRED: dict[str, Any] = {
    "if": {"properties": {"runtime": {"properties": {"kind": {"const": "kubernetes"}}, "required": ["kind"]}},
           "required": ["runtime"]},
    "else": {"properties": {"nodes": {"items": {"required": ["address"]}}}},
}


class Spec(Model):
    """A vLLM deployment: the image, the model, the hosts and how vLLM serves across them."""

    model_config = ConfigDict(**Model.model_config, json_schema_extra={"allOf": [ADDRESS_REQUIRED]})

    version: Literal[1] = Field(description="spec format version")
    name: Name = Field(description="deployment name; build/<name>/ holds its artifacts")
    image: Image = Field(default_factory=Image, description="the image built on the vLLM base (-> Dockerfile)")
    docker: Docker = Field(default_factory=Docker, description="Docker daemon settings (-> daemon.json)")
    model: ModelSource = Field(description="what is served and where its weights come from")
    secrets: Secrets = Field(default_factory=Secrets, description="references to secrets, resolved at start time")
    runtime: Runtime = Field(default_factory=DockerRuntime,
                             description="where and how each node runs (kind: docker, process or kubernetes) and the options every node shares")
    cluster: Cluster = Field(default_factory=Cluster, description="how nodes form one vLLM instance")
    nodes: list[Node] = Field(min_length=1, description="the hosts; exactly one head")
    serve: Serve = Field(default_factory=Serve, description="vllm serve options (-> serve-config.yaml)")
    caches: Caches = Field(default_factory=Caches, description="engine caches kept between starts")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus and Grafana (-> monitoring/)")
    router: Router | None = Field(None, description="vllm-router in front of the deployment's API servers (-> router/)")
    disaggregation: Disaggregation | None = Field(
        None, description="prefill/decode disaggregation: prefill and decode instance groups, the KV cache moved "
        "by NIXL, vllm-router in P/D mode in front (needs router:); serve.* then holds what every instance shares")
    gateway: Gateway | None = Field(None, description="the front door (nginx) that checks the API key on every path; "
                                    "on whenever secrets.api_key is set (-> gateway/)")
    offline: bool = Field(
        False, description="the hosts have no internet: every serving container or process gets HF_HUB_OFFLINE, "
        "TRANSFORMERS_OFFLINE, VLLM_NO_USAGE_STATS and DO_NOT_TRACK; validate refuses what would fetch at run time; "
        "apply uses images `vllmgen bundle load` placed and never builds or pulls")

    @model_validator(mode="before")
    @classmethod
    def _pods_have_their_own_address(cls, data: Any) -> Any:
        """runtime.kind: kubernetes: a pod learns its address when it starts, so nodes[].address may be left
        out; the node's name (a DNS label, so a hostname) stands in for it where the shared plan wants a host.
        Nothing rendered for Kubernetes reads it (the manifests are the same whatever it is). Other runtimes:
        a missing address is the model's own 'required field is missing', at the node."""
        if not (isinstance(data, dict) and isinstance(data.get("runtime"), dict)
                and data["runtime"].get("kind") == "kubernetes" and isinstance(data.get("nodes"), list)):
            return data
        nodes = [{**node, "address": node["name"]} if isinstance(node, dict) and "address" not in node
                 and isinstance(node.get("name"), str) and addresses.is_hostname(node["name"]) else node
                 for node in data["nodes"]]
        return {**data, "nodes": nodes}

    @property
    def head(self) -> Node:
        if len(self.nodes) == 1:
            return self.nodes[0]
        return next(node for node in self.nodes if node.role == "head")

    @property
    def container_prefix(self) -> str:
        """What every container name of the deployment starts with: runtime.container_prefix, else its name."""
        return self.runtime.container_prefix or self.name

    @property
    def total_gpus(self) -> int:
        return sum(node.gpus for node in self.nodes)
