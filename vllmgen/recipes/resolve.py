"""A recipe, a strategy, a hardware profile, a variant and features -> the flags and env vLLM gets.

The merge follows the recipes site's command builder (src/lib/command-synthesis.js), so a spec
asks vLLM for what the site's command would: flags in the order base_args, variant, strategy,
strategy override, hardware override, features, the last occurrence of a flag winning; env from
base_env, variant, strategy, strategy override, hardware override. Every flag and variable keeps
where it came from, for the spec's comments and for the refusals' messages. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllmgen.spec import catalog
from vllmgen.recipes.source import Recipe, RecipeError, Source, unknown_choice

# deploy types vllmgen turns into a spec; pd_cluster and kv_store_lb need more than one engine
DEPLOYABLE = ("single_node", "multi_node")
# origin of the strategy's parallel sizes among the flags: tospec derives them, never copies them
LAYOUT_ORIGIN = "the strategy's layout"
# the recipes' own Blackwell-only precisions (PRECISION_HARDWARE_CONSTRAINTS on the site)
BLACKWELL_ONLY = ("nvfp4", "fp4")


@dataclass(frozen=True)
class Arg:
    """One flag as vLLM reads it: the flag as written, its values, and which part of the recipe set it."""

    flag: str
    values: tuple[str, ...]
    origin: str

    @property
    def tokens(self) -> list[str]:
        return [self.flag, *self.values]


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    origin: str


@dataclass(frozen=True)
class Choice:
    model: str
    strategy: str
    hardware: str
    variant: str
    features: tuple[str, ...]  # enabled, in the recipe's order; "name:mode" for a feature with modes
    nodes: int


@dataclass(frozen=True)
class Resolution:
    recipe: Recipe
    choice: Choice
    strategy: dict[str, Any]
    profile: dict[str, Any]
    variant: dict[str, Any]
    model_id: str  # the served checkpoint: the variant's model_id, else the recipe's
    args: tuple[Arg, ...]
    env: tuple[EnvVar, ...]
    single_node_tp: int  # TP of single_node_tp (the site's auto-fit); the node count otherwise

    @property
    def gpus_per_node(self) -> int:
        return _int(self.profile.get("gpu_count"), 1)


def resolve(source: Source, recipe: Recipe, *, strategy: str, hardware: str, variant: str | None,
            features: list[str], nodes: int, cat: catalog.Catalog) -> Resolution:
    """The recipe for these choices, or RecipeError naming what cannot be deployed."""
    data = recipe.data
    variants = _dict(data.get("variants"))
    variant_key = variant or ("default" if "default" in variants else next(iter(variants), "default"))
    if variant_key not in variants:
        raise unknown_choice("variant", variant_key, list(variants))
    variant_spec = _dict(variants[variant_key])
    if hardware not in source.hardware:
        raise unknown_choice("hardware", hardware, list(source.hardware))
    profile = _dict(source.hardware[hardware])
    if strategy not in source.strategies:
        raise unknown_choice("strategy", strategy, list(source.strategies))
    strategy_spec = source.strategies[strategy]
    feature_specs = _dict(data.get("features"))
    for name in features:
        if name not in feature_specs:
            raise unknown_choice(f"feature of {recipe.model_id}", name, list(feature_specs))

    _check_deployable(recipe, strategy, strategy_spec, hardware, profile, variant_key, variant_spec, nodes)
    enabled = _enabled_features(data, variant_spec, features)
    gen = generation(profile)
    nvidia = profile.get("brand") == "NVIDIA"
    overrides = _dict(_dict(data.get("strategy_overrides")).get(strategy))

    tokens: list[tuple[str, str]] = []  # (token, origin)

    def add(values: Any, origin: str) -> None:
        tokens.extend((str(token), origin) for token in _list(values) if token not in (None, ""))

    add(_dict(data.get("model")).get("base_args"), "model.base_args")
    add(variant_spec.get("extra_args"), f"variants.{variant_key}.extra_args")
    exact_variant = _dict(_dict(variant_spec.get("hardware_overrides")).get(hardware))
    add(exact_variant.get("extra_args"), f"variants.{variant_key}.hardware_overrides.{hardware}")
    add(strategy_spec.get("vllm_args"), f"strategy {strategy}")
    # the strategy's own sizes, at the place the site puts them: an earlier size is overridden, a later one wins
    tokens.extend((token, LAYOUT_ORIGIN) for flag in _layout_flags(strategy_spec, nodes) for token in (flag, "1"))
    add(overrides.get("extra_args"), f"strategy_overrides.{strategy}")
    add(overrides.get("vllm_args"), f"strategy_overrides.{strategy}")
    strategy_ho, strategy_ho_key = _by_generation(overrides.get("hardware_overrides"), gen, nvidia)
    if strategy_ho is not None:
        add(strategy_ho.get("extra_args"), f"strategy_overrides.{strategy}.hardware_overrides.{strategy_ho_key}")
    else:
        recipe_ho, key = _by_generation(data.get("hardware_overrides"), gen, nvidia)
        if recipe_ho is not None:
            add(recipe_ho.get("extra_args"), f"hardware_overrides.{key}")
        variant_ho, key = _by_generation(variant_spec.get("hardware_overrides"), gen, nvidia)
        if variant_ho is not None:
            add(variant_ho.get("extra_args"), f"variants.{variant_key}.hardware_overrides.{key}")
    exact_strategy = _dict(_dict(overrides.get("hardware_overrides")).get(hardware))
    add(exact_strategy.get("extra_args"), f"strategy_overrides.{strategy}.hardware_overrides.{hardware}")
    chosen: list[str] = []
    for name in enabled:
        feature = _dict(feature_specs.get(name))
        allowed = _list(feature.get("strategies"))
        if allowed and strategy not in allowed:
            continue
        if isinstance(feature.get("modes"), dict):
            mode = _mode(feature, name, variant_spec, variant_key, profile, hardware)
            if mode is None:
                continue
            mode_spec = _dict(feature["modes"][mode])
            mode_ho = _dict(_hardware_keyed(mode_spec.get("hardware_overrides"), profile, hardware))
            add(mode_ho.get("args", mode_spec.get("args")), f"features.{name} (mode {mode})")
            chosen.append(f"{name}:{mode}")
            continue
        feature_ho, _ = _by_generation(feature.get("hardware_overrides"), gen, nvidia)
        add((feature_ho or {}).get("args", feature.get("args")), f"features.{name}")
        chosen.append(name)

    env: dict[str, EnvVar] = {}

    def put(values: Any, origin: str) -> None:
        for key, value in _dict(values).items():
            env[str(key)] = EnvVar(str(key), "" if value is None else str(value), origin)

    put(_dict(data.get("model")).get("base_env"), "model.base_env")
    put(variant_spec.get("extra_env"), f"variants.{variant_key}.extra_env")
    put(exact_variant.get("extra_env"), f"variants.{variant_key}.hardware_overrides.{hardware}")
    put(strategy_spec.get("env"), f"strategy {strategy}")
    put(overrides.get("env"), f"strategy_overrides.{strategy}.env")
    put(overrides.get("extra_env"), f"strategy_overrides.{strategy}.extra_env")
    if strategy_ho is not None:
        put(strategy_ho.get("extra_env"), f"strategy_overrides.{strategy}.hardware_overrides.{strategy_ho_key}")
    else:
        recipe_ho, key = _by_generation(data.get("hardware_overrides"), gen, nvidia)
        if recipe_ho is not None:
            put(recipe_ho.get("extra_env"), f"hardware_overrides.{key}")
        variant_ho, key = _by_generation(variant_spec.get("hardware_overrides"), gen, nvidia)
        if variant_ho is not None:
            put(variant_ho.get("extra_env"), f"variants.{variant_key}.hardware_overrides.{key}")
    put(exact_strategy.get("extra_env"), f"strategy_overrides.{strategy}.hardware_overrides.{hardware}")

    model_id = str(variant_spec.get("model_id") or _dict(data.get("model")).get("model_id") or recipe.model_id)
    choice = Choice(recipe.model_id, strategy, hardware, variant_key, tuple(chosen), nodes)
    return Resolution(
        recipe, choice, strategy_spec, profile, variant_spec, model_id, tuple(group_args(tokens, cat)),
        tuple(env.values()), _single_node_tp(data, variant_spec, profile, hardware, strategy),
    )


def group_args(tokens: list[tuple[str, str]], cat: catalog.Catalog) -> list[Arg]:
    """Tokens -> flags with their values, the last of each flag kept (at its last place), as the site
    dedupes them and as argparse reads a repeated flag. A flag the catalog knows takes as many values as
    vLLM's parser gives it; an unknown one, like the site, the tokens up to the next flag."""
    units: list[Arg] = []
    index = 0
    while index < len(tokens):
        token, origin = tokens[index]
        index += 1
        if not _is_flag(token):
            units.append(Arg("", (token,), origin))  # a stray value: refused when the spec is made
            continue
        info = cat.lookup(token)
        flag, inline = catalog.split_flag(token)
        takes = inline is None and (info is None or "." in flag or (info.takes_value and not info.negated))
        most = 1 if info is None or "." in flag or info.nargs in (None, "?") else (
            len(tokens) if info.nargs in ("+", "*") else int(info.nargs))
        values: list[str] = []
        while takes and len(values) < most and index < len(tokens) and not _is_flag(tokens[index][0]):
            values.append(tokens[index][0])
            index += 1
        units.append(Arg(token, tuple(values), origin))
    last: dict[str, int] = {}
    for position, unit in enumerate(units):
        if unit.flag:
            last[flag_key(unit.flag, cat)] = position
    return [unit for position, unit in enumerate(units) if not unit.flag or last[flag_key(unit.flag, cat)] == position]


def flag_key(flag: str, cat: catalog.Catalog) -> str:
    """One key for every spelling of a flag: `--x_y`, `--x-y=1`, an alias, and `--no-x` with `--x`."""
    info = cat.lookup(flag)
    name = catalog.split_flag(flag)[0]
    if info is None or "." in name:
        return name
    return info.boolean_pair if info.negated and info.boolean_pair else info.name


def generation(profile: dict[str, Any]) -> str | None:
    gen = profile.get("generation") or profile.get("gpu_generation")
    if isinstance(gen, list):
        gen = gen[0] if gen else None
    return gen if isinstance(gen, str) else None


def offered_strategies(recipe: Recipe) -> list[str]:
    """compatible_strategies plus those a strategy_hardware map grants somewhere (the site's rule)."""
    listed = [s for s in _list(recipe.data.get("compatible_strategies")) if isinstance(s, str)]
    grants = [name for name, gate in _dict(recipe.data.get("strategy_hardware")).items()
              if name not in listed and isinstance(gate, dict) and "supported" in gate.values()]
    return listed + grants


def _check_deployable(recipe: Recipe, strategy: str, spec: dict[str, Any], hardware: str, profile: dict[str, Any],
                      variant_key: str, variant: dict[str, Any], nodes: int) -> None:
    data, name = recipe.data, recipe.model_id
    tasks = _list(_dict(data.get("meta")).get("tasks"))
    if "omni" in tasks or data.get("omni"):
        raise RecipeError(f"{name} is served by vLLM-Omni (an omni recipe), not `vllm serve`: vllmgen does not "
                          "deploy it")
    gate = _hardware_keyed(_dict(data.get("strategy_hardware")).get(strategy), profile, hardware)
    offered = strategy in offered_strategies(recipe) if gate is None else gate != "unsupported"
    if not offered:
        raise RecipeError(f"{name} does not offer strategy {strategy} on {hardware}; it offers: "
                          f"{', '.join(offered_strategies(recipe)) or 'none'}")
    deploy = spec.get("deploy_type", "single_node")
    if deploy not in DEPLOYABLE:
        raise RecipeError(f"strategy {strategy} ({deploy}) runs separate engines (prefill and decode pools, or a "
                          "KV store) behind a router: vllmgen does not deploy it yet; choose one of the "
                          "single_node_* or multi_node_* strategies")
    brand = profile.get("brand")
    if brand != "NVIDIA":
        raise RecipeError(f"hardware {hardware} is {brand or 'not NVIDIA'} ({generation(profile) or 'unknown'}): "
                          "vllmgen deploys NVIDIA GPUs (the vllm/vllm-openai image, Docker's NVIDIA runtime)")
    if _dict(_dict(data.get("meta")).get("hardware")).get(hardware) == "unsupported":
        raise RecipeError(f"{name} marks hardware {hardware} unsupported (meta.hardware)")
    if profile.get("restricted") and hardware not in _dict(_dict(data.get("meta")).get("hardware")):
        raise RecipeError(f"hardware {hardware} is restricted: offered only to recipes that list it in "
                          f"meta.hardware, and {name} does not")
    supported = _list(variant.get("supported_hardware"))
    if supported and hardware not in supported:
        raise RecipeError(f"variant {variant_key} runs only on {', '.join(map(str, supported))}, not {hardware}")
    constraint = variant.get("precision_hardware")
    if not isinstance(constraint, dict) and variant.get("precision") in BLACKWELL_ONLY:
        constraint = {"brand": "NVIDIA", "generation": "blackwell"}
    if isinstance(constraint, dict) and constraint.get("generation") not in (None, generation(profile)):
        raise RecipeError(f"variant {variant_key} ({variant.get('precision')}) needs {constraint['generation']} "
                          f"GPUs; {hardware} is {generation(profile)}")
    match = _dict(spec.get("hardware_match"))
    architecture = _dict(data.get("model")).get("architecture")
    if match.get("architecture") and match["architecture"] != architecture:
        raise RecipeError(f"strategy {strategy} is for {match['architecture']} models; {name} is "
                          f"{architecture or 'of unknown architecture'}")
    gpus = _int(profile.get("gpu_count"), 1)
    if gpus < _int(match.get("min_gpus"), 0):
        raise RecipeError(f"strategy {strategy} needs at least {match['min_gpus']} GPUs per node; {hardware} has {gpus}")
    if deploy == "multi_node" and profile.get("scalable") is False:
        raise RecipeError(f"hardware {hardware} is not scalable (taxonomy: scalable: false): no multi-node strategy")
    floor = _min_gpus(data.get("strategy_min_gpus"), strategy, hardware)
    if floor > gpus * nodes:
        raise RecipeError(f"{name} needs at least {floor} GPUs for {strategy} (strategy_min_gpus); {nodes} node(s) "
                          f"of {hardware} have {gpus * nodes}: give more --nodes")
    need = variant.get("vram_minimum_gb")
    have = _number(profile.get("vram_gb")) * nodes
    if isinstance(need, (int, float)) and not isinstance(need, bool) and have and need > have:
        hint = "more --nodes" if deploy == "multi_node" else "a multi-node strategy"
        raise RecipeError(f"variant {variant_key} needs {need:g} GB of GPU memory (vram_minimum_gb); {nodes} node(s) "
                          f"of {hardware} have {have:g} GB: choose {hint} or a smaller variant")


def _layout_flags(strategy: dict[str, Any], nodes: int) -> list[str]:
    """The size flags the site emits for a strategy (resolveCommand's branches)."""
    parallel = str(strategy.get("parallel_flag") or "--tensor-parallel-size")
    if strategy.get("deploy_type") != "multi_node" or nodes < 2:
        return [parallel]
    if parallel == "--data-parallel-size":
        return ["--data-parallel-size", "--data-parallel-size-local"]
    if strategy.get("parallelism") == "tp_pp":
        return ["--tensor-parallel-size", "--pipeline-parallel-size"]
    if strategy.get("parallelism") == "tp_dp":
        return ["--tensor-parallel-size", "--data-parallel-size", "--data-parallel-size-local"]
    return ["--tensor-parallel-size"]


def _enabled_features(data: dict[str, Any], variant: dict[str, Any], asked: list[str]) -> list[str]:
    """Every feature but the opt-in ones, plus those asked for and those a variant turns on (default_modes)."""
    opt_in = set(map(str, _list(data.get("opt_in_features"))))
    by_variant = set(_dict(variant.get("default_modes")))
    return [name for name in _dict(data.get("features"))
            if name not in opt_in or name in asked or name in by_variant]


def _mode(feature: dict[str, Any], name: str, variant: dict[str, Any], variant_key: str,
          profile: dict[str, Any], hardware: str) -> str | None:
    gen = generation(profile)
    allowed = []
    for key, mode in _dict(feature.get("modes")).items():
        mode = _dict(mode)
        only = _list(mode.get("variants"))
        gates = _dict(mode.get("hardware"))
        if (only and variant_key not in only) or "unsupported" in (gates.get(gen), gates.get(hardware)):
            continue
        allowed.append(key)
    for wanted in (_dict(variant.get("default_modes")).get(name), feature.get("default_mode")):
        if wanted in allowed:
            return wanted
    return allowed[0] if allowed else None


def _single_node_tp(data: dict[str, Any], variant: dict[str, Any], profile: dict[str, Any], hardware: str,
                    strategy: str) -> int:
    """TP of single_node_tp as the site picks it: the variant's tp, the recipe's override, else 1 when the
    variant fits one GPU and the whole node when it does not."""
    gpus = _int(profile.get("gpu_count"), 1)
    if strategy != "single_node_tp":
        return gpus
    for raw in (variant.get("tp"), _dict(_dict(data.get("strategy_overrides")).get(strategy)).get("tp")):
        declared = raw if isinstance(raw, int) else _hardware_keyed(raw, profile, hardware)
        if isinstance(declared, int) and not isinstance(declared, bool) and declared > 0:
            return min(declared, gpus)
    per_gpu = _number(profile.get("vram_gb")) / gpus if gpus else 0
    need = _number(variant.get("vram_minimum_gb"))
    return 1 if need and per_gpu and need <= per_gpu else gpus


def _by_generation(overrides: Any, gen: str | None, nvidia: bool) -> tuple[dict[str, Any] | None, str]:
    table = _dict(overrides)
    if gen and isinstance(table.get(gen), dict):
        return table[gen], gen
    if nvidia and isinstance(table.get("nvidia"), dict):
        return table["nvidia"], "nvidia"
    return None, ""


def _hardware_keyed(table: Any, profile: dict[str, Any], hardware: str) -> Any:
    """exact GPU id > generation > brand > default, as the site reads hardware-keyed maps."""
    if not isinstance(table, dict):
        return None
    brand = profile.get("brand")
    for key in (hardware, generation(profile), brand.lower() if isinstance(brand, str) else None, "default"):
        if key is not None and key in table:
            return table[key]
    return None


def _min_gpus(raw: Any, strategy: str, hardware: str) -> int:
    def block(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, dict):
            return _int(value.get(strategy), 0)
        return 0

    if isinstance(raw, dict):
        return max(block(raw), block(raw.get(hardware)))
    return block(raw)


def _is_flag(token: str) -> bool:
    if not token.startswith("-"):
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
