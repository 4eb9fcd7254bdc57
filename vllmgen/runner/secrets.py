"""Secret values, read at apply time from the caller's environment or a file; never logged.

The plan holds only where a secret comes from (SecretEnv). Values live in a ``Secrets`` mapping
whose repr hides them, and reach nothing but the container's environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from vllmgen.plan.plan import SecretEnv
from vllmgen.runner.progress import fail


class Secrets(Mapping[str, str]):
    """Container variable name -> value. ``repr`` and ``str`` show names only."""

    def __init__(self, values: dict[str, str]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"

    __str__ = __repr__


def source(secret: SecretEnv) -> str:
    if secret.from_file:
        return f"file {secret.from_file}"
    return f"environment variable {secret.from_env or secret.name}"


def placeholders(secrets: tuple[SecretEnv, ...]) -> Secrets:
    """For a dry run: each secret stands for where its value would come from; nothing is read."""
    return Secrets({secret.name: f"<{source(secret)}>" for secret in secrets})


def resolve(secrets: tuple[SecretEnv, ...], *, environ: Mapping[str, str] | None = None,
            home: str | None = None, example: str = "secrets.env.example",
            files: Mapping[str, str] | None = None) -> Secrets:
    """Every secret's value, or one RunnerError listing all that are missing.

    ``environ`` and ``files`` (path as written in the spec -> content) stand in for the real ones in tests.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing: list[str] = []
    for secret in secrets:
        if secret.from_file:
            path = secret.from_file
            if path == "~" or path.startswith("~/"):
                path = str(Path(home or Path.home()) / path[2:])
            try:
                text = files[secret.from_file] if files is not None else Path(path).read_text(encoding="utf-8")
                value = text.strip()
            except (OSError, KeyError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not given"
                missing.append(f"{secret.name}: cannot read {secret.from_file} ({why})")
                continue
        else:
            value = environ.get(secret.from_env or secret.name, "")
        if not value:
            missing.append(f"{secret.name}: {source(secret)} is empty or not set")
            continue
        values[secret.name] = value
    if missing:
        raise fail(None, "preflight", "secrets missing: " + "; ".join(missing),
                   f"set them as {example} describes, then apply again")
    return Secrets(values)
