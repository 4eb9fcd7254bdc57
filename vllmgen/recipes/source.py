"""Where recipes come from: a checkout of vllm-project/recipes, or the site's JSON API.

A checkout (the default, offline) holds ``models/<org>/<name>.yaml``, ``strategies/*.yaml`` and
``taxonomy.yaml``. The JSON API (recipes.vllm.ai, or a downloaded copy of it) publishes
``taxonomy.json``, ``strategies.json``, ``models.json`` and ``<org>/<name>.json``; its recipes
drop ``compatible_strategies`` and ``strategy_overrides`` (their effect is baked into the
pre-rendered commands), so the strategies a JSON recipe offers are read from its rendered
alternatives and its per-strategy overrides are not known. Files are read through vllmgen's
bounded YAML loader, so a hostile file is an error with its position, never a hang.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllmgen.errors import EXIT_INVALID, EXIT_USAGE, SpecError, VllmgenError
from vllmgen.spec.load import load_bytes

MAX_BYTES = 1 << 20  # one recipe or index file; the largest real recipe is ~40 KiB
URL_TIMEOUT_S = 20
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class RecipeError(VllmgenError):
    """The recipe asks for something the spec or the pinned vLLM refuses, or the source is unreadable."""

    exit_code = EXIT_INVALID


class RecipeUsageError(VllmgenError):
    """A choice (model, strategy, hardware, variant, feature) the source does not offer."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Recipe:
    model_id: str
    data: dict[str, Any]
    sha256: str  # of the file as published: what the spec's header records
    origin: str  # the file's path or URL


@dataclass
class Source:
    """Recipes, strategies and hardware profiles from one place; model files read on demand."""

    location: str
    kind: str  # "checkout" or "json"
    taxonomy: dict[str, Any]
    strategies: dict[str, dict[str, Any]]
    _ids: list[str]
    _read: Callable[[str], tuple[bytes, str]]  # relative path -> (bytes, origin)
    _cache: dict[str, Recipe] = field(default_factory=dict)

    @property
    def hardware(self) -> dict[str, dict[str, Any]]:
        profiles = self.taxonomy.get("hardware_profiles")
        return profiles if isinstance(profiles, dict) else {}

    def model_ids(self) -> list[str]:
        return list(self._ids)

    def recipe(self, model_id: str) -> Recipe:
        if model_id in self._cache:
            return self._cache[model_id]
        if model_id not in self._ids:
            raise RecipeUsageError(_unknown("model", model_id, self._ids))
        relative = f"models/{model_id}.yaml" if self.kind == "checkout" else f"{model_id}.json"
        raw, origin = self._read(relative)
        data = _parse(raw, origin, json_form=self.kind == "json")
        if self.kind == "json":
            data = _from_api(data)
        recipe = Recipe(model_id, data, hashlib.sha256(raw).hexdigest(), origin)
        self._cache[model_id] = recipe
        return recipe


def open_source(location: str) -> Source:
    """A checkout folder, a folder holding the JSON API's files, or an http(s) URL of the API."""
    if re.match(r"https?://", location):
        base = location.rstrip("/") + "/"
        return _json_source(location, lambda rel: (_fetch(base + rel), base + rel))
    root = Path(location)
    if not root.is_dir():
        raise RecipeUsageError(f"--recipe {location}: not a folder (a checkout of vllm-project/recipes, or the "
                               "site's JSON API as a URL or a downloaded folder)")
    if (root / "taxonomy.yaml").is_file():
        return _checkout(root)
    if (root / "taxonomy.json").is_file():
        return _json_source(location, lambda rel: _read_file(root / rel))
    raise RecipeUsageError(f"--recipe {location}: holds neither taxonomy.yaml (a recipes checkout) nor "
                           "taxonomy.json (the JSON API)")


def _checkout(root: Path) -> Source:
    taxonomy = _mapping(*_read_file(root / "taxonomy.yaml"))
    strategies: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "strategies").glob("*.yaml")):
        data = _mapping(*_read_file(path))
        name = data.get("name") if isinstance(data.get("name"), str) else path.stem
        strategies[name] = data
    models = root / "models"
    ids = sorted(
        f"{path.parent.name}/{path.stem}" for path in models.glob("*/*.yaml")
        if _MODEL_ID.fullmatch(f"{path.parent.name}/{path.stem}")
    )
    return Source(str(root), "checkout", taxonomy, strategies, ids, lambda rel: _read_file(root / rel))


def _json_source(location: str, read: Callable[[str], tuple[bytes, str]]) -> Source:
    taxonomy = _mapping(*read("taxonomy.json"), json_form=True)
    strategies = {name: spec for name, spec in _mapping(*read("strategies.json"), json_form=True).items()
                  if isinstance(spec, dict)}
    raw, origin = read("models.json")
    index = _parse(raw, origin, json_form=True)
    if not isinstance(index, list):
        raise RecipeError(f"{origin}: expected a list of models")
    ids = sorted({entry["hf_id"] for entry in index if isinstance(entry, dict)
                  and isinstance(entry.get("hf_id"), str) and _MODEL_ID.fullmatch(entry["hf_id"])
                  and not entry.get("derived_from")})
    return Source(location, "json", taxonomy, strategies, ids, read)


def _from_api(data: dict[str, Any]) -> dict[str, Any]:
    """A published recipe JSON as the YAML schema has it: the offered strategies from its renderings."""
    if "compatible_strategies" in data:
        return data
    rendered = data.get("recommended_command") if isinstance(data.get("recommended_command"), dict) else {}
    offered = [rendered["strategy"]] if isinstance(rendered.get("strategy"), str) else []
    alternatives = rendered.get("alternatives")
    if isinstance(alternatives, dict):
        offered += [name for name in alternatives if isinstance(name, str) and name not in offered]
    return {**data, "compatible_strategies": offered, "strategy_overrides": {}}


def _read_file(path: Path) -> tuple[bytes, str]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise RecipeError(f"{path}: larger than {MAX_BYTES:,} bytes")
    return raw, str(path)


def _fetch(url: str) -> bytes:
    import urllib.error  # only for a URL source: a checkout is read without any network code
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "vllmgen"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            raw = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RecipeError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RecipeError(f"{url}: cannot fetch: {reason}") from None
    if len(raw) > MAX_BYTES:
        raise RecipeError(f"{url}: larger than {MAX_BYTES:,} bytes")
    return raw


def _parse(raw: bytes, origin: str, *, json_form: bool = False) -> Any:
    if json_form:
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RecipeError(f"{origin}: not JSON: {exc}") from None
    try:
        return load_bytes(_without_guide(raw), origin).data
    except SpecError as exc:  # bad YAML, with its line and column
        raise RecipeError("\n".join(map(str, exc.diagnostics))) from None


_GUIDE = re.compile(rb"^guide:[^\n]*\n(?:(?:[ \t][^\n]*)?\n)*", re.MULTILINE)


def _without_guide(raw: bytes) -> bytes:
    """The recipe less its top-level `guide:` (Markdown for the site, 27,000 characters in one value of a
    real recipe: past the bounded loader's limit for one value); its lines are blanked, not removed, so
    positions in errors stay those of the file."""
    return _GUIDE.sub(lambda match: b"\n" * match.group().count(b"\n"), raw)


def _mapping(raw: bytes, origin: str, *, json_form: bool = False) -> dict[str, Any]:
    data = _parse(raw, origin, json_form=json_form)
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: expected a mapping at the top")
    return data


def _unknown(what: str, name: str, known: list[str]) -> str:
    import difflib  # only on the error path

    hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    tail = f"did you mean {hint[0]!r}?" if hint else f"offered: {', '.join(known) or 'none'}"
    return f"the source offers no {what} {name!r}; {tail}"


def unknown_choice(what: str, name: str, known: list[str]) -> RecipeUsageError:
    return RecipeUsageError(_unknown(what, name, known))
