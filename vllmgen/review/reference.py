"""The spec reference (Markdown), generated from the models so the docs cannot drift."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from vllmgen.spec.model import Spec


def markdown() -> str:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    _rows(Spec, "", lines)
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str, lines: list[str]) -> None:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner, is_list = _inner_models(field.annotation)
        lines.append(f"| `{path}` | {_type_name(field.annotation)} | {_default(field)} | {field.description or ''} |")
        for model_type in inner:  # a union of models (runtime: one per kind): each one's fields
            _rows(model_type, f"{path}[]." if is_list else f"{path}.", lines)


def _inner_models(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    models = [arg for arg in _flatten(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
    return models, bool(models) and typing.get_origin(_strip_optional(annotation)) is list


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return options[0] if len(options) == 1 else annotation
    return annotation


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _flatten(args[0])
    return [item for arg in args for item in _flatten(arg)]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = _type_name(args[0])
        return base
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        optional = " (optional)" if type(None) in args else ""
        return " \\| ".join(_type_name(a) for a in args if a is not type(None)) + optional
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if annotation is typing.Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{value!r}`"
    if field.default is PydanticUndefined or field.default is None:
        return ""
    return f"`{field.default!r}`".replace("|", "\\|")
