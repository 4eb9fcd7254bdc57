"""``offline: true``: the environment that keeps vLLM from reaching out, and the rules that refuse
what would still fetch at run time (air-gapped hosts, ``vllmgen bundle``).

Values set in the host's shell never reach a container, so the variables go into every serving
container's (or process's) own environment. What vLLM would download at start anyway — a model
given only by its Hugging Face id, a draft model or tokenizer by id — is refused with its position,
and so is an image tag that floats (what it names changes between the bundle and the load).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from vllmgen.spec.rules.core import Finding
from vllmgen.spec.model import Spec

# Hugging Face hub and transformers read local files only; vLLM and its libraries send no usage data.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
FLOATING_TAGS = frozenset({"latest", "nightly", "main", "master", "dev", "edge", "stable"})
# serve flags whose value vLLM downloads when it is a repo id, not a folder
FETCHING_FLAGS = ("--tokenizer", "--speculative-model", "--hf-config-path")


def floating(reference: str) -> bool:
    """An image reference whose content may change: no digest, and no tag or a moving one."""
    if "@sha256:" in reference:
        return False
    last = reference.rsplit("/", 1)[-1]  # a registry's ':port' sits before the last '/'
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag is None or tag in FLOATING_TAGS or not re.search(r"[0-9]", tag)


def _images(spec: Spec) -> Iterator[tuple[tuple, str]]:
    if spec.runtime.kind == "docker":
        yield ("image", "base"), spec.image.base
    if spec.router is not None:
        yield ("router", "base_image"), spec.router.base_image
    if spec.monitoring.enabled:
        yield ("monitoring", "prometheus_image"), spec.monitoring.prometheus_image
        yield ("monitoring", "grafana_image"), spec.monitoring.grafana_image


def offline_rules(spec: Spec) -> Iterator[Finding]:
    if not spec.offline:
        return
    why = "offline: true"
    if spec.model.host_path is None:
        yield Finding(("model", "source"), f"{why}, and vLLM would download {spec.model.source} from the Hugging Face "
                      "Hub at start: set model.host_path to the weights' folder (vllmgen bundle carries it)")
    if spec.model.modelscope:
        yield Finding(("model", "modelscope"), f"{why}: ModelScope downloads at start; set model.host_path instead")
    for path, reference in _images(spec):
        if floating(reference):
            yield Finding(path, f"{why}: the tag of {reference} moves, so the image bundled and the image the spec "
                          "names can differ: pin a release tag or a digest")
    draft = (spec.serve.speculative_config or {}).get("model")
    if isinstance(draft, str) and not draft.startswith("/"):
        yield Finding(("serve", "speculative_config", "model"),
                      f"{why}: vLLM would download the draft model {draft} at start; give a folder on the host")
    args = spec.serve.extra_args
    for index, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag not in FETCHING_FLAGS:
            continue
        at = index if value else index + 1
        value = value or (args[index + 1] if index + 1 < len(args) else "")
        if value and not value.startswith("/"):
            yield Finding(("serve", "extra_args", at), f"{why}: vLLM would download {value} ({flag}) at start; "
                          "give a folder on the host")
    sources = [("runtime", "env", name) for name in spec.runtime.env] + [
        ("nodes", index, "env", name) for index, node in enumerate(spec.nodes) for name in node.env]
    for path in sources:
        if path[-1] in OFFLINE_ENV:
            yield Finding(path, f"{path[-1]} is set by vllmgen from offline: true")


RULES = [offline_rules]
