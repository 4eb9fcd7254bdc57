"""`vllmgen init --recipe`: choices in, a validated spec (or a refusal with its reason) out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vllmgen.spec import addresses, catalog
from vllmgen.recipes.resolve import Resolution, offered_strategies, resolve
from vllmgen.recipes.source import RecipeError, RecipeUsageError, Source, open_source
from vllmgen.recipes.tospec import DOC_ADDRESSES, Hosts, Made, make_spec


@dataclass(frozen=True)
class Request:
    source: str
    model: str
    strategy: str
    hardware: str
    variant: str | None = None
    features: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()  # addresses; none: documentation addresses
    nic: str | None = None
    ib_hcas: tuple[str, ...] = ()
    vllm: str | None = None
    file: str = "vllmgen.yaml"


def make(request: Request, source: Source | None = None) -> tuple[Made, Resolution]:
    source = source or open_source(request.source)
    recipe = source.recipe(request.model)
    strategy = source.strategies.get(request.strategy, {})
    multi = strategy.get("deploy_type") == "multi_node"
    for address in request.nodes:
        if addresses.parse_ip(address) is None and not addresses.is_hostname(address):
            raise RecipeUsageError(f"--nodes: {address!r} is not an IP address or a hostname")
    if request.nodes and not multi and len(request.nodes) > 1:
        raise RecipeUsageError(f"strategy {request.strategy} runs on one node; --nodes names {len(request.nodes)}")
    if request.nodes and multi and len(request.nodes) < 2:
        raise RecipeUsageError(f"strategy {request.strategy} spans nodes: give --nodes two addresses or more")
    count = len(request.nodes) or (max(2, _nodes_for_floor(recipe.data, request, source)) if multi else 1)
    addresses_ = list(request.nodes) or [DOC_ADDRESSES.format(index + 1) for index in range(count)]
    variant_key = request.variant
    version = choose_vllm(recipe.data, variant_key, request.vllm)
    cat, _ = catalog.load_catalog(version)
    res = resolve(source, recipe, strategy=request.strategy, hardware=request.hardware, variant=variant_key,
                  features=list(request.features), nodes=count, cat=cat)
    hosts = Hosts(addresses_, not request.nodes, request.nic, list(request.ib_hcas))
    return make_spec(res, hosts, version, cat, request.file), res


def from_options(source: str, path: Any, choices: dict[str, Any]) -> Made:
    """The command line's options -> a Request; missing choices are a usage error naming them."""
    missing = [f"--{name}" for name in ("model", "strategy", "hardware") if not choices.get(name)]
    if missing:
        raise RecipeUsageError(f"--recipe needs {', '.join(missing)} (see `vllmgen init --recipe {source} --list`)")
    request = Request(
        source=source, model=choices["model"], strategy=choices["strategy"], hardware=choices["hardware"],
        variant=choices.get("variant"), features=tuple(choices.get("features") or ()),
        nodes=_split(choices.get("nodes")), nic=choices.get("nic"), ib_hcas=_split(choices.get("ib_hcas")),
        vllm=choices.get("vllm_version"), file=str(getattr(path, "name", path)),
    )
    return make(request)[0]


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def choose_vllm(data: dict[str, Any], variant: str | None, asked: str | None) -> str:
    """The recipe's pinned vLLM when a catalog covers it, else the newest catalog at or above its minimum."""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    variants = data.get("variants") if isinstance(data.get("variants"), dict) else {}
    spec = variants.get(variant or "default") if isinstance(variants.get(variant or "default"), dict) else {}
    least = str(spec.get("min_vllm_version") or model.get("min_vllm_version") or "0")
    known = catalog.available_versions()
    try:
        floor = catalog.parse_version(least)
    except ValueError:
        if asked in known:  # a nightly-only recipe: the user vouches for the release they name
            return asked
        raise RecipeError(f"the recipe needs vLLM {least!r} (min_vllm_version), not a release vllmgen has a flag "
                          f"catalog for ({', '.join(known)}); name one with --vllm to try it") from None
    if asked:
        if asked not in known:
            raise RecipeUsageError(f"--vllm {asked}: vllmgen has flag catalogs for {', '.join(known)}")
        if catalog.parse_version(asked) < floor:
            raise RecipeError(f"the recipe needs vLLM >= {least} (min_vllm_version); --vllm {asked} is older")
        return asked
    pinned = _pinned(spec.get("docker_image")) or _pinned(model.get("docker_image"))
    if pinned in known and catalog.parse_version(pinned) >= floor:
        return pinned
    newer = [v for v in known if catalog.parse_version(v) >= floor]
    if not newer:
        raise RecipeError(f"the recipe needs vLLM >= {least} (min_vllm_version); vllmgen's flag catalogs stop at "
                          f"{known[-1]}, so its flags cannot be checked")
    return newer[-1]


def _pinned(image: Any) -> str | None:
    if isinstance(image, dict):
        image = image.get("nvidia")
    if not isinstance(image, str):
        return None
    match = re.fullmatch(r"vllm/vllm-openai:v?([0-9]+\.[0-9]+\.[0-9]+)", image)
    return match.group(1) if match else None


def _nodes_for_floor(data: dict[str, Any], request: Request, source: Source) -> int:
    profile = source.hardware.get(request.hardware) or {}
    gpus = profile.get("gpu_count") if isinstance(profile.get("gpu_count"), int) else 8
    floor = data.get("strategy_min_gpus")
    need = 0
    if isinstance(floor, int):
        need = floor
    elif isinstance(floor, dict):
        values = [floor.get(request.strategy), (floor.get(request.hardware) or {}).get(request.strategy)
                  if isinstance(floor.get(request.hardware), dict) else floor.get(request.hardware)]
        need = max([v for v in values if isinstance(v, int)] or [0])
    return -(-need // max(gpus, 1))


# --- --list ---------------------------------------------------------------------------------------

def listing(location: str, model: str | None) -> str:
    source = open_source(location)
    lines = [f"{source.location}: {len(source.model_ids())} model(s) ({source.kind})", "", "strategies:"]
    for name, spec in source.strategies.items():
        deploy = spec.get("deploy_type", "single_node")
        tail = "" if deploy in ("single_node", "multi_node") else "  (not deployed by vllmgen yet)"
        lines.append(f"  {name:<18} {str(deploy):<12} {spec.get('display_name', '')}{tail}")
    lines += ["", "hardware:"]
    for name, profile in source.hardware.items():
        marks = [m for m, on in (("restricted", profile.get("restricted")),
                                 ("not NVIDIA: not deployed by vllmgen", profile.get("brand") != "NVIDIA")) if on]
        lines.append(f"  {name:<18} {profile.get('brand', '?')} {profile.get('generation', '?')}, "
                     f"{profile.get('gpu_count', '?')} GPUs, {profile.get('vram_gb', '?')} GB a node"
                     + (f"  ({'; '.join(marks)})" if marks else ""))
    if model is None:
        lines += ["", "models:"]
        for model_id in source.model_ids():
            lines.append(f"  {model_id}")
        lines += ["", "vllmgen init --recipe SOURCE --list --model ORG/NAME: its variants, features and strategies"]
        return "\n".join(lines) + "\n"
    recipe = source.recipe(model)
    data = recipe.data
    meta = _d(data.get("model"))
    lines += ["", f"model {model} ({meta.get('architecture', '?')}, vLLM >= {meta.get('min_vllm_version', '?')}, "
              f"sha256 {recipe.sha256[:12]})", "  strategies:"]
    for name in offered_strategies(recipe):
        deploy = source.strategies.get(name, {}).get("deploy_type", "unknown strategy")
        lines.append(f"    {name}" + ("" if deploy in ("single_node", "multi_node") else f"  ({deploy}: not deployed by vllmgen yet)"))
    lines.append("  variants:")
    for name, spec in _d(data.get("variants")).items():
        spec = spec if isinstance(spec, dict) else {}
        lines.append(f"    {name:<12} {str(spec.get('precision', '?')):<7} {spec.get('vram_minimum_gb', '?')} GB"
                     + (f"  {spec['model_id']}" if spec.get("model_id") else ""))
    opt_in = {str(name) for name in data.get("opt_in_features") or [] if isinstance(data.get("opt_in_features"), list)}
    lines.append("  features (opt-in ones need --feature NAME):")
    for name, spec in _d(data.get("features")).items():
        spec = spec if isinstance(spec, dict) else {}
        modes = list(spec.get("modes") or {}) if isinstance(spec.get("modes"), dict) else []
        lines.append(f"    {name:<16} {'opt-in' if name in opt_in else 'on':<7} {spec.get('description', '')}"
                     + (f" (modes: {', '.join(modes)})" if modes else ""))
    hardware = _d(_d(data.get("meta")).get("hardware"))
    if hardware:
        lines.append("  hardware: " + ", ".join(f"{k} {v}" for k, v in hardware.items()))
    return "\n".join(lines) + "\n"


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
