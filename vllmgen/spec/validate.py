"""Stage 2, validate: loaded data -> a ``Spec``, or every problem at once with its position.

Three passes, all collected before anything is reported: a scan for literal secrets anywhere
in the document (keys and values), the pydantic model (types, formats, unknown keys), and the
cross-field rules in ``vllmgen.spec.rules.core`` -- over the valid spec, or, when the model refuses some
fields, over a partial spec of whatever validated (``vllmgen.spec.partial``).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from vllmgen.errors import Diagnostic, Path, SpecError, format_path, short
from vllmgen.spec.load import LoadedSpec, load_file
from vllmgen.spec.partial import partial_spec, unwrap
from vllmgen.spec.rules.core import Finding, check_rules
from vllmgen.spec.formats import token_kind, url_credentials
from vllmgen.spec.model import Spec


@dataclass(frozen=True)
class ValidSpec:
    spec: Spec
    source: LoadedSpec
    warnings: list[Diagnostic]


def validate_file(path: str, *, strict: bool = False) -> ValidSpec:
    return validate(load_file(path), strict=strict)


def validate(loaded: LoadedSpec, *, strict: bool = False) -> ValidSpec:
    shown = _Bounded()
    secrets = _literal_secrets(loaded.data, ())
    shown.add(secrets, lambda hit: loaded.diagnostic(hit[0], hit[1], key=hit[2]))
    reported = {hit[0] for hit in secrets}  # a field's own error there would only repeat it
    spec = None
    if not isinstance(loaded.data, dict):
        shown.add([()], lambda _: loaded.diagnostic((), "expected a mapping at the top of the spec"))
    else:
        try:
            spec = Spec.model_validate(loaded.data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            shown.add(errors, lambda error: None if _error_path(error) in reported else _from_pydantic(error, loaded))
            partial = partial_spec(Spec, loaded.data, {_error_path(error) for error in errors})
            shown.add(check_rules(partial, lenient=True), lambda f: _from_finding(f, loaded, strict))
    if spec is not None:
        shown.add(check_rules(spec), lambda finding: _from_finding(finding, loaded, strict))
    diagnostics = [d for d in shown.diagnostics if d is not None]
    if any(d.severity == "error" for d in diagnostics):
        raise SpecError(shown.at_most(diagnostics, loaded.file))
    assert spec is not None
    return ValidSpec(spec, loaded, sorted(diagnostics))


MAX_REPORTED = 200  # a spec with more errors than this is not one a person fixes line by line


class _Bounded:
    """Diagnostics made for at most 1,000 problems of each pass (making one costs ~30 us; a spec
    at the loader's limits can hold 20,000 bad values), the rest only counted."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic | None] = []
        self.omitted = 0

    def add(self, items: list[Any], make: Any) -> None:
        self.diagnostics.extend(make(item) for item in items[:1000])
        self.omitted += max(0, len(items) - 1000)

    def at_most(self, diagnostics: list[Diagnostic], file: str) -> list[Diagnostic]:
        if len(diagnostics) <= MAX_REPORTED and not self.omitted:
            return diagnostics
        more = len(diagnostics) - MAX_REPORTED + self.omitted
        note = f"{more:,} more problems are not shown (the first {MAX_REPORTED} are)"
        return [Diagnostic(file, 0, 0, "<spec>", note), *sorted(diagnostics)[:MAX_REPORTED]]


def _from_finding(finding: Finding, loaded: LoadedSpec, strict: bool) -> Diagnostic:
    severity = "error" if strict or finding.severity == "error" else "warning"
    return loaded.diagnostic(finding.path, finding.message, severity=severity)


def _literal_secrets(node: Any, path: Path) -> list[tuple[Path, str, bool]]:
    """(path, message, on the key?) for every key or value that holds a token or a URL with
    credentials. Aliases share values, so a shared one is visited again: the loader caps what
    aliases add."""
    if isinstance(node, dict):
        hits = []
        for key, value in node.items():
            problem = _secret_problem(key) if isinstance(key, str) else None
            if problem:
                hits.append(((*path, key), "this key " + problem.removeprefix("this "), True))
            hits.extend(_literal_secrets(value, (*path, key)))
        return hits
    if isinstance(node, list):
        return [hit for index, value in enumerate(node) for hit in _literal_secrets(value, (*path, index))]
    if isinstance(node, str):
        problem = _secret_problem(node)
        return [(path, problem, False)] if problem else []
    return []


def _secret_problem(text: str) -> str | None:
    found = token_kind(text)
    if found is not None:
        kind, advice = found
        return f"this looks like a literal {kind}; {advice}"
    credentials = url_credentials(text)
    if credentials is not None:
        return (f"{credentials} would be written into build/, an image layer or a command line; remove the "
                "credentials (use an index or mirror that needs none, or one reachable only on your private network)")
    return None


# --- pydantic errors -> diagnostics ---------------------------------------------------------


def _error_path(error: Any) -> Path:
    loc = tuple(error["loc"])
    return loc[:-1] if loc and loc[-1] == "[key]" else loc


def _from_pydantic(error: Any, loaded: LoadedSpec) -> Diagnostic | None:
    loc = tuple(error["loc"])
    on_key = bool(loc) and loc[-1] == "[key]"
    if on_key:
        loc = loc[:-1]
    kind = error["type"]
    message = _message(error, loc, _data_at(loaded.data, loc[:-1]) if kind == "extra_forbidden" else None)
    if kind == "missing":  # point at the mapping that lacks the key
        line, col = loaded.positions.of(loc[:-1])
        return Diagnostic(loaded.file, line, col, format_path(loc), message)
    return loaded.diagnostic(loc, message, key=on_key or kind == "extra_forbidden")


def _message(error: dict[str, Any], loc: Path, parent: Any = None) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short":
        return f"expected at least {error['ctx']['min_length']} item(s)"
    if kind == "extra_forbidden":
        unknown = str(loc[-1])
        allowed = _fields_at(loc[:-1], parent)
        import difflib  # only for a misspelt key

        hint = difflib.get_close_matches(unknown[:100], allowed, n=1, cutoff=0.6)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; expected one of: {', '.join(allowed)}"
        return f"unknown key {short(unknown)}{suggestion}"
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    got = error.get("input")
    if isinstance(got, str) and kind not in {"literal_secret"}:
        msg += f", got {short(got)}"
    elif isinstance(got, (int, float, bool)):
        text = repr(got)
        msg += f", got {text if len(text) <= 80 else text[:80] + '...'}"
    return msg


def _data_at(data: Any, loc: Path) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _by_kind(annotation: Any, data: Any) -> Any:
    """The model of a union of models (runtime: one per kind) that ``data``'s ``kind`` chooses."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    kind = data.get("kind") if isinstance(data, dict) else None
    for model in models:
        field = model.model_fields.get("kind")
        if field is not None and kind in typing.get_args(field.annotation):
            return model
    return models[0] if models else annotation


def _fields_at(loc: Path, data: Any = None) -> list[str]:
    """Field names of the model that sits at ``loc`` in the spec (for did-you-mean); ``data`` is what the
    spec holds there, which chooses among a union's models."""
    current: Any = Spec
    for part in loc:
        current = unwrap(current)
        if isinstance(part, int):
            current = _item_type(current)
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        else:
            return []
    current = _by_kind(unwrap(current), data)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else None
