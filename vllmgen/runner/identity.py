"""When a running container is the spec's: the labels ``apply`` puts on what it starts.

The plan's config-hash (in build/, what start.sh sets) covers the container's definition and the
rendered serve config. What apply starts also depends on two things known only when it runs: the
image actually built (a rebuild, say with ``--base-image``, has a new ID) and the secret values (a
rotated API key). The runner's ``io.vllmgen.config-hash`` covers all three, and two more labels say
which part changed: ``io.vllmgen.image-id`` and ``io.vllmgen.secrets``.

``io.vllmgen.secrets`` is an HMAC-SHA256 of the values under a key that is in no label, log or
file in build/: ``$VLLMGEN_FINGERPRINT_KEY``, else a random key made once on the control machine
(``~/.config/vllmgen/fingerprint-key``, mode 0600). Without the key the label cannot be turned
back into a value, however short the value. Applying from another control machine with another key
replaces the containers once; share the key (the variable) between machines that apply.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from vllmgen.errors import RunnerError
from vllmgen.plan.plan import LABEL_PREFIX

HASH_LABEL = f"{LABEL_PREFIX}.config-hash"
IMAGE_LABEL = f"{LABEL_PREFIX}.image-id"
SECRETS_LABEL = f"{LABEL_PREFIX}.secrets"
KEY_ENV = "VLLMGEN_FINGERPRINT_KEY"
NO_SECRETS = "none"


def key_file(environ: Mapping[str, str]) -> Path:
    config = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or str(Path.home()), ".config")
    return Path(config) / "vllmgen" / "fingerprint-key"


def fingerprint_key(environ: Mapping[str, str] | None = None) -> bytes:
    environ = os.environ if environ is None else environ
    if environ.get(KEY_ENV):
        return _checked(environ[KEY_ENV].encode(), f"${KEY_ENV}")
    path = key_file(environ)
    try:
        try:
            return _checked(path.read_bytes().strip(), str(path))
        except FileNotFoundError:
            pass
        _make_key(path)
        return _checked(path.read_bytes().strip(), str(path))
    except OSError as exc:
        raise RunnerError(f"cannot read or make the secrets' fingerprint key {path}: {exc.strerror or exc}; "
                          f"set {KEY_ENV} (16 characters or more) instead") from None


def _make_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=".fingerprint-key.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temp, path)  # whole, and only if no other apply made one meanwhile
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: a rename is whole too
            os.rename(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


MIN_KEY_BYTES = 16


def _checked(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:  # a short or empty key makes the label a plain, guessable hash
        raise RunnerError(f"the secrets' fingerprint key in {where} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def secrets_fingerprint(values: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """A keyed fingerprint of every secret value; ``none`` without secrets (no key is needed then)."""
    if not values:
        return NO_SECRETS
    message = json.dumps(sorted(values.items())).encode()
    return hmac.new(fingerprint_key(environ), message, hashlib.sha256).hexdigest()[:16]


def run_labels(plan_hash: str, image_id: str, fingerprint: str) -> dict[str, str]:
    combined = hashlib.sha256(json.dumps([plan_hash, image_id, fingerprint]).encode()).hexdigest()[:16]
    return {HASH_LABEL: combined, IMAGE_LABEL: image_id, SECRETS_LABEL: fingerprint}


def same_definition(labels: Mapping[str, str], plan_hash: str) -> bool:
    """Whether a container's labels say it was started from this plan (whatever image and secrets)."""
    if IMAGE_LABEL not in labels:  # started by start.sh or compose: the plan's hash as it is
        return labels.get(HASH_LABEL) == plan_hash
    again = run_labels(plan_hash, labels[IMAGE_LABEL], labels.get(SECRETS_LABEL, NO_SECRETS))
    return labels.get(HASH_LABEL) == again[HASH_LABEL]


def why_replaced(labels: Mapping[str, str], wanted: Mapping[str, str], plan_hash: str) -> str | None:
    """Why a container with ``labels`` is not the one ``wanted``; None when it is."""
    if labels.get(HASH_LABEL) == wanted[HASH_LABEL]:
        return None
    if not same_definition(labels, plan_hash):
        return f"its definition changed (config-hash {labels.get(HASH_LABEL)} -> {wanted[HASH_LABEL]})"
    if IMAGE_LABEL not in labels:
        return "it was started outside apply (start.sh or compose): which image and secrets it runs is unknown"
    if labels.get(IMAGE_LABEL) != wanted[IMAGE_LABEL]:
        return f"the image was rebuilt ({_short(labels.get(IMAGE_LABEL))} -> {_short(wanted[IMAGE_LABEL])})"
    return "a secret's value changed (its fingerprint differs)"


def _short(image_id: str | None) -> str:
    return (image_id or "none").removeprefix("sha256:")[:12]
