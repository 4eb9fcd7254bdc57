"""Secrets written as plain environment values: refused, each with what to write instead.

An env value in the spec is rendered into build/ (compose files, start scripts) and shows in
``docker inspect``; a variable whose name says it holds a credential must not get one there.
Tokens of a known shape anywhere in the spec are the document-wide scan's (``vllmgen.spec.validate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from vllmgen.spec.rules.core import OWNED_ENV, Finding
from vllmgen.spec.model import Spec

# a name segment (between '_') that says "credential"; TOKENIZERS_PARALLELISM or KEYBOARD are not
_SECRET_SEGMENT = re.compile(
    r"(?:[A-Z0-9]*(?:TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)S?|(?:API|ACCESS|PRIVATE|SECRET|AUTH)?KEYS?|PASS)")


def is_secret_name(name: str) -> bool:
    """``VLLM_API_KEY``, ``AWS_SECRET_ACCESS_KEY``, ``GITHUB_TOKEN``, ``DB_PASSWORD``: a variable whose
    name says it holds a credential."""
    return any(_SECRET_SEGMENT.fullmatch(segment) for segment in name.upper().split("_") if segment)


def secret_env(spec: Spec) -> Iterator[Finding]:
    mappings = [(("runtime", "env"), spec.runtime.env)]
    mappings += [(("nodes", index, "env"), node.env) for index, node in enumerate(spec.nodes)]
    for root, env in mappings:
        for name, value in env.items():
            if name not in OWNED_ENV and _literal(value) and is_secret_name(name):  # owned: rules.runtime says whose
                yield Finding((*root, name), _advice(name))
    if spec.router is not None:
        for name, value in spec.router.extra_env.items():
            if name in ("VLLM_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
                yield Finding(("router", "extra_env", name), f"{name} does not belong in the router's environment: "
                              "it would be written into build/<name>/router/; the servers read the key from "
                              "secrets.api_key: {env: VAR_NAME} or {file: /path/to/key}")
            elif _literal(value) and is_secret_name(name):
                yield Finding(("router", "extra_env", name), _advice(name))


def _literal(value: str) -> bool:
    """A value that may be the credential itself: not empty, not the path of a file holding it
    (HF_TOKEN_PATH, GOOGLE_APPLICATION_CREDENTIALS)."""
    return bool(value) and not re.fullmatch(r"(/|~/)[^\s]*", value)


def _advice(name: str) -> str:
    return (f"{name} looks like a credential, and a value written here lands in build/ and in `docker inspect`; "
            "vllmgen passes secrets by reference only: secrets.hf_token or secrets.api_key as "
            "{env: VAR_NAME} or {file: /path}; keep other credentials out of the spec")


RULES = [secret_env]
