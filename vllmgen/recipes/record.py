"""The header of a spec made from a recipe: what was chosen, for people, and one JSON line, for `diff`.

The JSON line (``# vllmgen-recipe: {...}``) records the recipe file's hash and what the recipe asked
for at the time (flags, env, variants), so ``vllmgen diff --against-recipe`` can say what changed
upstream since, per concern, without the old recipe file.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from vllmgen.recipes.resolve import LAYOUT_ORIGIN

if TYPE_CHECKING:
    from vllmgen.recipes.resolve import Resolution

MARK = "# vllmgen-recipe: "
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def comment_safe(text: str) -> str:
    """Recipe text inside a comment: a line break or control character would end the comment."""
    return _UNSAFE.sub("?", text)


def published_path(model: str, origin: str) -> str:
    """Where the recipe lives in its source, the same on every machine."""
    return f"{model}.json" if origin.endswith(".json") else f"models/{model}.yaml"


def record(res: Resolution, vllm: str) -> dict[str, Any]:
    variants = res.recipe.data.get("variants")
    return {
        "model": res.choice.model,
        "sha256": res.recipe.sha256,
        "strategy": res.choice.strategy,
        "hardware": res.choice.hardware,
        "variant": res.choice.variant,
        "features": list(res.choice.features),
        "nodes": res.choice.nodes,
        "vllm": vllm,
        "min_vllm": str(res.variant.get("min_vllm_version") or (res.recipe.data.get("model") or {}).get("min_vllm_version")
                        or ""),
        "checkpoint": res.model_id,
        "args": [arg.tokens for arg in res.args if arg.origin != LAYOUT_ORIGIN],
        "env": {var.name: var.value for var in res.env},
        "variants": {str(key): str((spec or {}).get("model_id") or "") for key, spec in variants.items()}
        if isinstance(variants, dict) else {},
    }


def header(res: Resolution, hosts: Any, vllm: str, notes: list[str]) -> list[str]:
    choice, profile = res.choice, res.profile
    least = (res.recipe.data.get("model") or {}).get("min_vllm_version")
    features = ", ".join(choice.features) or "none"
    vram = profile.get("vram_gb")
    lines = [
        "A vLLM deployment made by `vllmgen init --recipe` from a vLLM recipe; vllmgen compiles it into build/<name>/.",
        "  vllmgen validate FILE     check it (every error at once, with line:column)",
        "  vllmgen render FILE       write build/<name>/, then commit it",
        "  vllmgen diff FILE --against-recipe SOURCE   what the recipe changed upstream since",
        f"Recipe:   {choice.model} ({published_path(choice.model, res.recipe.origin)})",
        f"sha256:   {res.recipe.sha256}",
        f"Strategy: {choice.strategy} ({res.strategy.get('display_name', choice.strategy)})",
        f"Hardware: {choice.hardware} ({profile.get('gpu_count', '?')} GPUs and {vram if vram is not None else '?'} GB a node)"
        f" x {choice.nodes} node(s)",
        f"Variant:  {choice.variant} ({res.variant.get('precision', 'precision not given')}): {res.model_id}",
        f"Features: {features}",
        f"vLLM:     {vllm} (the recipe asks >= {least or 'any'})",
    ]
    lines += [f"Note:     {note}" for note in notes]
    out = [f"# {comment_safe(line)}" for line in lines]
    out.append(MARK + json.dumps(record(res, vllm), sort_keys=True, separators=(",", ":")))
    return out


def read_record(text: str) -> dict[str, Any] | None:
    """The JSON line of a spec made from a recipe, or None."""
    for line in text.splitlines():
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK):])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        if line and not line.startswith("#"):
            return None  # the header ends at the first line that is not a comment
    return None
