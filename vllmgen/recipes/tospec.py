"""A resolved recipe -> a commented spec, bound to hosts, that vllmgen's own validation accepts.

Flags the spec has a field for become that field (parsers, speculative config, lengths, expert
parallelism, DP load balancing); the rest go to ``serve.extra_args``, each checked against the
flag catalog of the spec's vLLM. Env placeholders are bound from the spec ($IFACE_NAME ->
cluster.nic, $HEAD_IP -> the head's address). What cannot be said in a spec is refused with the
part of the recipe that asked for it, and the finished text is run through ``validate`` before
anyone sees it: init never writes a spec that fails later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from vllmgen.spec import catalog
from vllmgen.errors import SpecError
from vllmgen.spec.load import load_text
from vllmgen.recipes.resolve import LAYOUT_ORIGIN, Arg, Resolution, flag_key
from vllmgen.recipes.record import comment_safe, header
from vllmgen.recipes.source import RecipeError
from vllmgen.spec.rules.core import OWNED_ENV, OWNED_FLAGS
from vllmgen.spec.validate import validate

DOC_ADDRESSES = "192.0.2.{}"  # RFC 5737 TEST-NET-1: never a real host
DEFAULT_NIC = "eth0"
PLACEHOLDER = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
# placeholders of the recipes' commands that name the head node (the mp rendezvous)
HEAD_PLACEHOLDERS = ("HEAD_IP", "MASTER_ADDR", "MASTER_IP", "HEAD_ADDR")
# flags that shape the layout: read into tensor x pipeline x data parallel, not copied
LAYOUT_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size",
                "--data-parallel-size-local")


@dataclass
class Hosts:
    addresses: list[str]
    documentation: bool  # addresses are 192.0.2.x placeholders
    nic: str | None
    ib_hcas: list[str]


@dataclass
class Draft:
    """The spec being built, with the comments that say where each value came from."""

    data: dict[str, Any] = field(default_factory=dict)
    comments: dict[tuple[Any, ...], str] = field(default_factory=dict)
    hints: dict[tuple[Any, ...], list[str]] = field(default_factory=dict)  # commented-out lines ending a section
    notes: list[str] = field(default_factory=list)

    def set(self, path: tuple[str, ...], value: Any, comment: str | None = None) -> None:
        node = self.data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        if comment:
            self.comments[path] = comment


@dataclass(frozen=True)
class Made:
    text: str
    warnings: list[str]


def make_spec(res: Resolution, hosts: Hosts, vllm: str, cat: catalog.Catalog, file: str) -> Made:
    draft = Draft()
    choice = res.choice
    multi = res.strategy.get("deploy_type") == "multi_node"
    gpus = res.gpus_per_node
    draft.set(("version",), 1)
    draft.set(("name",), deployment_name(res), "lower-case DNS label; build/<name>/ and container names use it")
    draft.set(("image", "base"), f"vllm/vllm-openai:v{vllm}", _image_note(res))
    draft.set(("model", "source"), res.model_id,
              f"variant {choice.variant}" + (" (its own checkpoint)" if res.variant.get("model_id") else ""))
    draft.set(("model", "served_name"), served_name(res.model_id), "the name clients ask for")
    draft.set(("secrets", "hf_token"), {"env": "HF_TOKEN"}, "or {file: /run/secrets/hf_token}")
    draft.set(("runtime", "network"), "host", "host networking: needed across nodes")
    draft.set(("runtime", "ipc_host"), True)

    layout = _Layout.for_strategy(res, len(hosts.addresses))
    serve_fields, extra = _serve_args(res, cat, layout)
    layout.check(res)
    if multi:
        draft.set(("cluster", "backend"), "mp", f"{choice.strategy}: vLLM's own --nnodes/--node-rank rendezvous")
    _env(res, hosts, draft)
    nodes = []
    for index, address in enumerate(hosts.addresses):
        node: dict[str, Any] = {"name": f"node-{index}", "address": address}
        if multi:
            node["role"] = "head" if index == 0 else "worker"
        node["gpus"] = layout.node_gpus
        nodes.append(node)
    draft.set(("nodes",), nodes)
    if hosts.documentation:
        draft.comments[("nodes",)] = "documentation addresses (192.0.2.x): put your hosts' here, or pass --nodes"
    if layout.node_gpus < gpus:
        draft.notes.append(f"{choice.strategy} uses {layout.node_gpus} of the {gpus} GPUs of a {choice.hardware} node "
                           "(the recipe's TP); set nodes[].gpu_ids to pick which")
    draft.set(("serve", "tensor_parallel_size"), layout.tp, layout.why)
    if layout.pp > 1:
        draft.set(("serve", "pipeline_parallel_size"), layout.pp, "a pipeline stage per node")
    if layout.dp > 1:
        draft.set(("serve", "data_parallel_size"), layout.dp, "tensor x pipeline x data parallel = the GPUs of all nodes")
    for path, (value, origin) in serve_fields.items():
        draft.set(path, value, origin)
    if layout.dp > 1 and multi:
        lb = layout.lb
        if lb == "hybrid" and gpus // (layout.tp * layout.pp) == 1:
            lb = "external"  # vLLM turns hybrid with one local rank into external balancing
        if lb != "internal":
            draft.set(("serve", "data_parallel", "lb"), lb, "one API server per node: the router balances them")
            draft.set(("router",), {"policy": "round_robin"}, "vllm-router in front of the API servers")
    if ("serve", "port") not in serve_fields:
        draft.set(("serve", "port"), 8000)
    context = _dict(res.recipe.data.get("model")).get("context_length")
    if ("serve", "max_model_len") not in serve_fields and isinstance(context, int):
        draft.hints[("serve",)] = [f"max_model_len: {context}   # the model's context_length; a smaller one "
                                   "leaves more memory for the KV cache"]
    draft.set(("secrets", "api_key"), {"env": "VLLM_API_KEY"},  # secure by default: the gateway in front
              "clients send \"Authorization: Bearer <key>\"; the gateway checks it on every path")
    if extra:
        draft.set(("serve", "extra_args"), [token for arg in extra for token in arg.tokens])
        position = 0
        for arg in extra:
            draft.comments[("serve", "extra_args", position)] = arg.origin
            position += len(arg.tokens)
    text = render_text(res, hosts, vllm, draft)
    return Made(text, _validated(text, file))


class _Layout:
    """Tensor x pipeline x data parallel as the strategy and the hardware imply them."""

    def __init__(self, tp: int, pp: int, dp: int, node_gpus: int, nodes: int, lb: str, why: str, dp_strategy: bool):
        self.tp, self.pp, self.dp, self.node_gpus, self.nodes = tp, pp, dp, node_gpus, nodes
        self.lb, self.why, self.dp_strategy = lb, why, dp_strategy
        self.origin: str | None = None

    @classmethod
    def for_strategy(cls, res: Resolution, nodes: int) -> _Layout:
        gpus, strategy = res.gpus_per_node, res.strategy
        name = res.choice.strategy
        if strategy.get("parallel_flag") == "--data-parallel-size":
            lb = "hybrid" if "--data-parallel-hybrid-lb" in _strings(strategy.get("vllm_args")) else "internal"
            return cls(1, 1, gpus * nodes, gpus, nodes, lb, f"{name}: a DP rank per GPU", True)
        if strategy.get("deploy_type") == "multi_node":
            if strategy.get("parallelism") == "tp_pp":
                return cls(gpus, nodes, 1, gpus, nodes, "internal", f"{name}: TP inside a node, PP across", False)
            if strategy.get("parallelism") == "tp_dp":
                return cls(gpus, 1, nodes, gpus, nodes, "internal", f"{name}: TP inside a node, a replica per node", True)
            return cls(gpus * nodes, 1, 1, gpus, nodes, "internal", f"{name}: TP over all {gpus * nodes} GPUs", False)
        tp = res.single_node_tp
        why = f"{name}: TP over the node's {gpus} GPUs" if tp == gpus else f"{name}: the recipe's TP {tp}"
        return cls(tp, 1, 1, tp, 1, "internal", why, False)

    def take(self, arg: Arg, key: str) -> None:
        """A layout flag the recipe sets itself (a hybrid TP x DP DEP, say): checked, then honoured."""
        value = arg.values[0] if arg.values else catalog.split_flag(arg.flag)[1]
        try:
            number = int(value or "")
        except ValueError:
            raise RecipeError(f"{arg.origin}: {arg.flag} {value!r} is not a whole number") from None
        if number < 1:
            raise RecipeError(f"{arg.origin}: {arg.flag} {number} must be at least 1")
        self.origin = f"{arg.origin}: {arg.flag} {number}"
        if key == "--tensor-parallel-size":
            self.tp, self.why = number, f"from {arg.origin}"
            if self.dp_strategy:
                if self.node_gpus % (number * self.pp):
                    raise RecipeError(f"{self.origin}: TP {number} does not divide the {self.node_gpus} GPUs of a "
                                      "node, so the DP ranks cannot be whole")
                self.dp = self.node_gpus * self.nodes // (number * self.pp)
            elif self.nodes == 1:
                if number > self.node_gpus:
                    raise RecipeError(f"{self.origin}: TP {number} is more than the {self.node_gpus} GPUs of a node")
                self.node_gpus = number  # the site runs a smaller TP on part of the node
        elif key == "--pipeline-parallel-size":
            self.pp = number
        elif key == "--data-parallel-size":
            self.dp = number
        elif key == "--data-parallel-size-local":
            local = self.node_gpus // (self.tp * self.pp)
            if number != local:
                raise RecipeError(f"{self.origin}: vllmgen runs {local} DP rank(s) per node here "
                                  f"({self.node_gpus} GPUs / TP {self.tp} x PP {self.pp})")

    def check(self, res: Resolution) -> None:
        used = self.node_gpus * self.nodes
        where = self.origin or f"strategy {res.choice.strategy}"
        if self.tp * self.pp * self.dp != used:
            raise RecipeError(f"{where}: TP {self.tp} x PP {self.pp} x DP {self.dp} = {self.tp * self.pp * self.dp} "
                              f"does not use the {used} GPUs of {self.nodes} {res.choice.hardware} node(s)")
        if self.dp > 1 and self.node_gpus % (self.tp * self.pp):
            raise RecipeError(f"{where}: TP {self.tp} x PP {self.pp} does not divide the {self.node_gpus} GPUs of a "
                              f"{res.choice.hardware} node, so the DP ranks cannot be whole")


# flag -> (spec field, how to read its value)
FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "--trust-remote-code": (("model", "trust_remote_code"), "true"),
    "--revision": (("model", "revision"), "str"),
    "--served-model-name": (("model", "served_name"), "str"),
    "--dtype": (("model", "dtype"), "str"),
    "--quantization": (("model", "quantization"), "str"),
    "--reasoning-parser": (("serve", "reasoning_parser"), "str"),
    "--tool-call-parser": (("serve", "tool_call_parser"), "str"),
    "--speculative-config": (("serve", "speculative_config"), "json"),
    "--max-model-len": (("serve", "max_model_len"), "count"),
    "--gpu-memory-utilization": (("serve", "gpu_memory_utilization"), "float"),
    "--max-num-seqs": (("serve", "max_num_seqs"), "int"),
    "--enable-prefix-caching": (("serve", "enable_prefix_caching"), "bool"),
    "--enforce-eager": (("serve", "enforce_eager"), "true"),
    "--enable-expert-parallel": (("serve", "expert_parallel", "enabled"), "true"),
    "--all2all-backend": (("serve", "expert_parallel", "all2all_backend"), "str"),
    "--enable-eplb": (("serve", "expert_parallel", "eplb"), "true"),
    "--eplb-config": (("serve", "expert_parallel", "eplb_config"), "json"),
    "--api-server-count": (("serve", "data_parallel", "api_server_count"), "int"),
    "--port": (("serve", "port"), "int"),
    "--host": (("serve", "host"), "str"),
}
# flags that need no field: the layout says them (hybrid LB comes with the strategy's lb)
IMPLIED = {"--data-parallel-hybrid-lb": "serve.data_parallel.lb: hybrid"}


def _serve_args(res: Resolution, cat: catalog.Catalog,
                layout: _Layout) -> tuple[dict[tuple[str, ...], tuple[Any, str]], list[Arg]]:
    fields: dict[tuple[str, ...], tuple[Any, str]] = {}
    extra: list[Arg] = []
    keys = {flag_key(arg.flag, cat) for arg in res.args if arg.flag}
    for arg in res.args:
        if not arg.flag:
            raise RecipeError(f"{arg.origin}: {arg.values[0]!r} is not a flag, and the flag before it takes no value")
        key = flag_key(arg.flag, cat)
        info = cat.lookup(arg.flag)
        if info is None:
            raise RecipeError(f"{arg.origin}: {_unknown_flag(arg.flag, cat)}")
        if any(PLACEHOLDER.search(value) for value in arg.values):
            raise RecipeError(f"{arg.origin}: {arg.flag} {' '.join(arg.values)} holds a placeholder vllmgen cannot bind")
        if key in LAYOUT_FLAGS:
            if arg.origin != LAYOUT_ORIGIN:  # the strategy's own sizes are the layout already
                layout.take(arg, key)
            continue
        if key in IMPLIED:
            continue
        if key == "--enable-auto-tool-choice" and "--tool-call-parser" in keys:
            continue  # vllmgen turns it on with serve.tool_call_parser
        if key == "--distributed-executor-backend":
            value = arg.values[0] if arg.values else ""
            if value == "mp" and res.strategy.get("deploy_type") == "multi_node":
                continue
            raise RecipeError(f"{arg.origin}: {arg.flag} {value} is set by vllmgen from cluster.backend, and "
                              f"{res.choice.strategy} runs with the mp backend")
        head, dot, subkey = catalog.split_flag(arg.flag)[0].partition(".")
        if dot and FIELDS.get(head, ((), ""))[1] == "json":
            path = FIELDS[head][0]  # --speculative-config.method mtp: one key of the field's mapping
            config = fields.get(path, ({}, arg.origin))[0]
            _merge_key(config, subkey, arg.values[0] if arg.values else catalog.split_flag(arg.flag)[1] or "")
            fields[path] = (config, arg.origin)
            continue
        if key in FIELDS:
            path, kind = FIELDS[key]
            value = _read(arg, kind, info)
            if kind == "json" and path in fields:  # dotted keys before the whole mapping: the mapping wins
                value = {**fields[path][0], **value}
            fields[path] = (value, arg.origin)
            _check_registry(path, value, arg, cat)
            continue
        if key in OWNED_FLAGS:
            raise RecipeError(f"{arg.origin}: {arg.flag} is set by vllmgen from {OWNED_FLAGS[key]}; the spec cannot "
                              "take the recipe's value")
        extra.append(arg)
    return fields, extra


def _merge_key(config: dict[str, Any], dotted: str, text: str) -> None:
    """vLLM's `--json-flag.a.b VALUE`: VALUE as JSON when it parses, else the text."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    *parents, last = dotted.split(".")
    for part in parents:
        child = config.get(part)
        config[part] = child if isinstance(child, dict) else {}
        config = config[part]
    config[last] = value


REGISTRIES = {("serve", "reasoning_parser"): ("reasoning_parsers", "reasoning parser"),
              ("serve", "tool_call_parser"): ("tool_call_parsers", "tool-call parser")}


def _check_registry(path: tuple[str, ...], value: Any, arg: Arg, cat: catalog.Catalog) -> None:
    """A parser or speculative method the pinned vLLM lacks, named with the part of the recipe that asks for it."""
    if path == ("serve", "speculative_config"):
        if "method" not in value:
            raise RecipeError(f"{arg.origin}: its speculative config names no 'method' (vLLM would infer one from "
                              "the draft model); serve.speculative_config needs it: vllmgen checks it against the "
                              "pinned vLLM")
        value, known, what = value.get("method"), cat.speculative_methods, "speculative method"
    elif path in REGISTRIES:
        known, what = getattr(cat, REGISTRIES[path][0]), REGISTRIES[path][1]
    else:
        return
    if isinstance(value, str) and value not in known and not value.endswith("-plugin"):
        raise RecipeError(f"{arg.origin}: vLLM {cat.version} has no {what} {value!r} (choose another vLLM with --vllm)")


def _read(arg: Arg, kind: str, info: catalog.FlagInfo) -> Any:
    value = arg.values[0] if arg.values else catalog.split_flag(arg.flag)[1]
    if kind == "true":
        return True
    if kind == "bool":
        return not info.negated
    try:
        if kind == "str":
            return str(value)
        if kind == "int":
            return int(value or "")
        if kind == "float":
            return float(value or "")
        if kind == "count":
            return _count(value or "")
        parsed = json.loads(value or "")
        if not isinstance(parsed, dict):
            raise ValueError("not a JSON object")
        return parsed
    except ValueError:
        wanted = {"int": "a whole number", "float": "a number", "count": "a whole number of tokens",
                  "json": "a JSON object"}[kind]
        raise RecipeError(f"{arg.origin}: {arg.flag} {value!r}: vllmgen sets this flag from a spec field that takes "
                          f"{wanted}") from None


def _count(text: str) -> int:
    """8192, 32k, 1M as vLLM's human-readable counts read them (k = 1000, K = 1024)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([kKmMgG]?)", text)
    if not match:
        raise ValueError(text)
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)]
    return int(float(match.group(1)) * scale)


def _env(res: Resolution, hosts: Hosts, draft: Draft) -> None:
    nic_from: str | None = None
    nic = hosts.nic
    head = hosts.addresses[0]
    for var in res.env:
        names = PLACEHOLDER.findall(var.value)
        value = var.value
        for name in names:
            if name == "IFACE_NAME":
                nic_from = nic_from or var.origin
                value = value.replace(f"${{{name}}}", nic or DEFAULT_NIC).replace(f"${name}", nic or DEFAULT_NIC)
            elif name in HEAD_PLACEHOLDERS:
                value = value.replace(f"${{{name}}}", head).replace(f"${name}", head)
            elif name == "MASTER_PORT":
                value = value.replace(f"${{{name}}}", "29500").replace(f"${name}", "29500")
            elif name == "IB_IF" and var.name == "NCCL_IB_HCA":
                if not hosts.ib_hcas:
                    raise RecipeError(f"{var.origin}: NCCL_IB_HCA={var.value} names your InfiniBand HCAs: pass "
                                      "--ib-hca (e.g. --ib-hca mlx5_0,mlx5_1)")
            else:
                raise RecipeError(f"{var.origin}: {var.name}={var.value} holds the placeholder ${name}, which "
                                  "vllmgen cannot bind from the spec")
        if var.name in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"):
            if not names and nic is None:
                nic, nic_from = value, var.origin
            continue
        if var.name == "NCCL_IB_HCA":
            if not names and not hosts.ib_hcas:
                hosts.ib_hcas = [hca for hca in value.split(",") if hca]
            continue
        if var.name in ENV_FIELDS:
            path, read = ENV_FIELDS[var.name]
            try:
                draft.set(path, read(value), var.origin)
            except ValueError:
                raise RecipeError(f"{var.origin}: {var.name}={value!r} does not fit {'.'.join(path)}") from None
            continue
        if var.name in OWNED_ENV:
            raise RecipeError(f"{var.origin}: {var.name} is set by vllmgen from {OWNED_ENV[var.name]}; the spec "
                              "cannot take the recipe's value")
        draft.set(("runtime", "env", var.name), value, var.origin)
    if nic_from or hosts.nic:
        chosen = nic or DEFAULT_NIC
        why = "the data NIC, from --nic" if hosts.nic else (
            f"{nic_from}: the recipe's $IFACE_NAME; a placeholder: put your data NIC here, or pass --nic"
            if nic is None else f"from {nic_from}")
        draft.set(("cluster", "nic"), chosen, f"{why}; sets NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME")
    if hosts.ib_hcas:
        draft.set(("cluster", "ib_hcas"), list(hosts.ib_hcas), "InfiniBand HCAs (NCCL_IB_HCA)")


def _flag_env(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no", ""):
        return False
    raise ValueError(text)


# variables vllmgen sets from a typed field: the recipe's value goes to that field
ENV_FIELDS = {
    "VLLM_ENGINE_READY_TIMEOUT_S": (("serve", "ready_timeout"), int),
    "HF_ENDPOINT": (("model", "hf_endpoint"), str),
    "VLLM_USE_MODELSCOPE": (("model", "modelscope"), _flag_env),
}


def _unknown_flag(flag: str, cat: catalog.Catalog) -> str:
    name = catalog.split_flag(flag)[0]
    message = f"vLLM {cat.version} has no flag {name}"
    elsewhere = [v for v in catalog.versions_with(name) if v != cat.version]
    if elsewhere:
        message += f" (it exists in vLLM {', '.join(elsewhere)}; choose it with --vllm)"
    hint = cat.suggest(name)
    return message + (f"; did you mean {hint}?" if hint else "")


def _validated(text: str, file: str) -> list[str]:
    try:
        valid = validate(load_text(text, file))
    except SpecError as exc:
        problems = "\n".join(f"  {d}" for d in exc.diagnostics)
        raise RecipeError(f"the spec made from the recipe does not validate, so it was not written:\n{problems}") from None
    return [str(warning) for warning in valid.warnings]


def deployment_name(res: Resolution) -> str:
    slug = _dict(res.recipe.data.get("meta")).get("slug")
    base = slug if isinstance(slug, str) and slug else res.model_id.split("/")[-1]
    if res.choice.variant != "default":
        base = f"{base}-{res.choice.variant}"
    label = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:63].strip("-")
    return label or "recipe"


def served_name(model_id: str) -> str:
    return model_id.split("/")[-1].lower()


def _image_note(res: Resolution) -> str:
    least = _dict(res.recipe.data.get("model")).get("min_vllm_version")
    return f"recipe needs vLLM >= {least}" if least else "the recipe names no minimum vLLM"


# --- text -----------------------------------------------------------------------------------------

SECTIONS = ("version", "name", "image", "model", "secrets", "runtime", "cluster", "nodes", "serve", "router")
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+:=-]*")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def render_text(res: Resolution, hosts: Hosts, vllm: str, draft: Draft) -> str:
    lines = header(res, hosts, vllm, draft.notes)
    serve = draft.data.get("serve", {})
    for key in ("port", "ready_timeout", "extra_args"):  # the recipe's options first, then these, as the starter
        if key in serve:
            serve[key] = serve.pop(key)
    ordered = sorted(draft.data.items(), key=lambda item: SECTIONS.index(item[0]))
    for key, value in ordered:
        if key not in ("version", "name"):
            lines.append("")
        lines += _emit(key, value, (key,), 0, draft.comments)
        lines += [f"  # {comment_safe(hint)}" for hint in draft.hints.get((key,), [])]
    return "\n".join(lines) + "\n"


def _emit(key: str, value: Any, path: tuple[Any, ...], indent: int, comments: dict[tuple[Any, ...], str]) -> list[str]:
    pad = " " * indent
    note = comments.get(path)
    if isinstance(value, dict) and value and not _flow(path):
        head = f"{pad}{key}:" + (f"  # {comment_safe(note)}" if note else "")
        lines = [head]
        for child, item in value.items():
            lines += _emit(child, item, (*path, child), indent + 2, comments)
        return lines
    if isinstance(value, list) and value and not all(isinstance(item, str) for item in value) or (
            isinstance(value, list) and value and path[-1] in ("extra_args", "nodes")):
        lines = [f"{pad}{key}:" + (f"  # {comment_safe(note)}" if note else "")]
        for index, item in enumerate(value):
            if isinstance(item, dict):
                first = True
                for child, inner in item.items():
                    lines.append(f"{pad}  {'- ' if first else '  '}{child}: {scalar(inner)}")
                    first = False
            else:
                tail = comments.get((*path, index))
                lines.append(f"{pad}  - {scalar(item)}" + (f"  # {comment_safe(tail)}" if tail else ""))
        return lines
    return [f"{pad}{key}: {scalar(value)}" + (f"  # {comment_safe(note)}" if note else "")]


def _flow(path: tuple[Any, ...]) -> bool:
    """Mappings the spec takes as one value (a JSON config, a secret reference): written on one line."""
    return path[-1] in ("speculative_config", "eplb_config", "hf_token", "api_key")


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict) and all(isinstance(v, str) and _PLAIN.fullmatch(v) for v in value.values()) and all(
            _PLAIN.fullmatch(str(k)) for k in value):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"  # a secret reference
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=True)  # JSON is YAML's flow style
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED and not text.endswith(":"):
        return text
    return json.dumps(text, ensure_ascii=True)


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
