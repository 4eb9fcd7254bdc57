"""A spec built from whatever validated, so the cross-field rules run beside the field errors.

When the model refuses some fields, the rest still say something: a world-size mismatch is worth
reporting next to a typo in an unrelated key. ``partial_spec`` builds the models without
validation (``model_construct``) from the fields that had no error, their defaults where a field
is absent, and ``INVALID`` where a field is missing or wrong. Any use of ``INVALID`` (comparing,
printing, iterating...) raises ``InvalidUse``, so a rule that needs a broken value stops; the
findings it made before that stand.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from vllmgen.errors import Path


class InvalidUse(Exception):
    """A rule touched a value that did not validate."""


class _Invalid:
    __slots__ = ()

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise InvalidUse

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = _refuse
    __str__ = __repr__ = __format__ = __len__ = __iter__ = __contains__ = __getitem__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __int__ = __index__ = __float__ = _refuse

    def __getattr__(self, name: str) -> Any:
        raise InvalidUse


INVALID: Any = _Invalid()


def partial_spec(model: type[BaseModel], data: Any, bad: set[Path]) -> Any:
    """``model`` from ``data``, each value at or under a path in ``bad`` replaced or rebuilt."""
    above = {path[:end] for path in bad for end in range(len(path))}  # paths with a bad one under them
    return _model(model, data, (), bad, above)


def _model(model: type[BaseModel], data: Any, loc: Path, bad: set[Path], above: set[Path]) -> Any:
    if not isinstance(data, dict):
        return INVALID
    values = {}
    for name, field in model.model_fields.items():
        here = (*loc, name)
        if name not in data:
            values[name] = INVALID if field.is_required() else field.get_default(call_default_factory=True)
        else:
            values[name] = _value(field.annotation, data[name], here, bad, above)
    return model.model_construct(**values)


def _value(annotation: Any, value: Any, loc: Path, bad: set[Path], above: set[Path]) -> Any:
    if loc in bad:
        return INVALID
    if loc not in above:
        try:
            return _adapter(annotation).validate_python(value, strict=True)
        except ValidationError:  # e.g. a model-level check of a whole section: no use to the rules
            return INVALID
    inner = unwrap(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return _model(inner, value, loc, bad, above)
    if typing.get_origin(inner) is list and isinstance(value, list):
        item = typing.get_args(inner)[0]
        return [_value(item, v, (*loc, i), bad, above) for i, v in enumerate(value)]
    return INVALID  # a mapping with a bad entry, and the like


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(annotation: Any) -> TypeAdapter:
    key = repr(annotation)  # Annotated[...] with validators is not always hashable
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(annotation)
    return _ADAPTERS[key]


def unwrap(annotation: Any) -> Any:
    """Optional[X] -> X; Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
