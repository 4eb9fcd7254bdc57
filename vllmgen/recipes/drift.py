"""`vllmgen diff SPEC --against-recipe SOURCE`: what the recipe changed upstream since SPEC was made.

SPEC's header records the recipe's hash and what it asked for then (flags, env, variants, the
checkpoint, the features); the recipe is resolved again today with the same choices and the two
are compared per concern. A recipe that no longer offers the choice says why, as init would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllmgen.spec import catalog
from vllmgen.errors import VllmgenError
from vllmgen.recipes.record import read_record, record
from vllmgen.recipes.resolve import group_args, resolve
from vllmgen.recipes.source import RecipeError, RecipeUsageError, open_source


@dataclass
class Drift:
    model: str
    unchanged: bool
    concerns: dict[str, list[str]] = field(default_factory=dict)

    def add(self, concern: str, line: str) -> None:
        self.concerns.setdefault(concern, []).append(line)

    def as_json(self) -> str:
        import json

        return json.dumps({"model": self.model, "unchanged": self.unchanged, "concerns": self.concerns},
                          indent=2, sort_keys=True) + "\n"

    def text(self) -> str:
        if self.unchanged:
            return f"{self.model}: the recipe is unchanged since the spec was made (same sha256)\n"
        if not self.concerns:
            return f"{self.model}: the recipe file changed, but nothing this spec uses did\n"
        lines = [f"{self.model}: the recipe changed upstream since the spec was made"]
        for concern, items in self.concerns.items():
            lines.append(f"  {concern}:")
            lines += [f"    {item}" for item in items]
        return "\n".join(lines) + "\n"


def drift(spec: Path, location: str) -> Drift:
    try:
        text = spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{spec}: cannot read: {exc}") from None
    old = read_record(text)
    if old is None or not isinstance(old.get("model"), str):
        raise RecipeUsageError(f"{spec} was not made by `vllmgen init --recipe` (no '# vllmgen-recipe:' header line)")
    model = old["model"]
    source = open_source(location)
    report = Drift(model, unchanged=False)
    if model not in source.model_ids():
        report.add("recipe", f"{model} is no longer in {location}")
        return report
    recipe = source.recipe(model)
    if recipe.sha256 == old.get("sha256"):
        return Drift(model, unchanged=True)
    vllm = str(old.get("vllm") or "latest")
    cat, _ = catalog.load_catalog(vllm)
    features = [str(name).split(":")[0] for name in old.get("features") or []]
    offered = recipe.data.get("features") if isinstance(recipe.data.get("features"), dict) else {}
    for name in features:
        if name not in offered:
            report.add("features", f"- {name} (removed from the recipe)")
    try:
        res = resolve(source, recipe, strategy=str(old.get("strategy")), hardware=str(old.get("hardware")),
                      variant=str(old.get("variant")), features=[n for n in features if n in offered],
                      nodes=int(old.get("nodes") or 1), cat=cat)
    except VllmgenError as exc:
        report.add("choice", f"the recipe no longer deploys this choice: {exc}")
        return report
    new = record(res, vllm)
    _compare_list("features", old.get("features") or [], new["features"], report)
    if old.get("checkpoint") != new["checkpoint"]:
        report.add("model", f"checkpoint {old.get('checkpoint')} -> {new['checkpoint']}")
    if old.get("min_vllm") != new["min_vllm"]:
        report.add("vllm", f"min_vllm_version {old.get('min_vllm')} -> {new['min_vllm']} (the spec pins {vllm})")
    _compare_flags(old.get("args") or [], new["args"], cat, report)
    _compare_map("env", old.get("env") or {}, new["env"], report)
    _compare_map("variants", old.get("variants") or {}, new["variants"], report, what="checkpoint")
    return report


def _compare_flags(old: list[Any], new: list[list[str]], cat: catalog.Catalog, report: Drift) -> None:
    def table(args: list[Any]) -> dict[str, str]:
        tokens = [(str(token), "") for unit in args if isinstance(unit, list) for token in unit]
        return {arg.flag: " ".join(arg.tokens) for arg in group_args(tokens, cat) if arg.flag}

    _compare_map("flags", table(old), table(new), report, what="flag", show_key=False)


def _compare_map(concern: str, old: dict[str, Any], new: dict[str, Any], report: Drift, *,
                 what: str = "value", show_key: bool = True) -> None:
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        label = f"{key}=" if show_key else ""
        if before is None:
            report.add(concern, f"+ {label}{after}")
        elif after is None:
            report.add(concern, f"- {label}{before}")
        else:
            report.add(concern, f"~ {label}{before} -> {after}" if show_key else f"~ {before} -> {after}")


def _compare_list(concern: str, old: list[Any], new: list[Any], report: Drift) -> None:
    """Features as "name" or "name:mode": one line per feature turned on, off or to another mode."""
    def by_name(items: list[Any]) -> dict[str, str]:
        return {str(item).split(":")[0]: str(item) for item in items}

    _compare_map(concern, by_name(old), by_name(new), report, show_key=False)
