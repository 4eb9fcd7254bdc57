"""Strict offline validation of rendered manifests: ``kubernetes-validate --strict`` for every core object
against a pinned Kubernetes version, and for a LeaderWorkerSet, its pod templates as core PodTemplates and
its own fields against the schema below (written from LWS's API types, api/leaderworkerset/v1).

kubernetes-validate knows no CRD: it only warns on one and its command exits 0. Here a kind it cannot
check is a failure unless this module checks it itself, so nothing passes unchecked.

Optional: needs the ``kubernetes-validate`` package (the test extra), so ``render`` never runs it; the
fast tier runs it over every golden, and so can CI: ``python -m vllmgen.targets.kubernetes.strict DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "1.33.0"
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {"type": "object"}  # checked as a core PodTemplateSpec, not here

# LeaderWorkerSet v1 (spec fields from LeaderWorkerSetSpec and LeaderWorkerTemplate, enums and bounds from
# their kubebuilder markers); metadata limited to what vllmgen writes; status is the controller's.
LWS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": LWS_API_VERSION},
        "kind": {"const": "LeaderWorkerSet"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                           "namespace": {"type": "string"}, "labels": _STRING_MAP, "annotations": _STRING_MAP},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["leaderWorkerTemplate"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 1000000},
                "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
                "networkConfig": {
                    "type": "object", "additionalProperties": False, "required": ["subdomainPolicy"],
                    "properties": {"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}},
                },
                "rolloutStrategy": {
                    "type": "object", "additionalProperties": False, "required": ["type"],
                    "properties": {
                        "type": {"enum": ["RollingUpdate"]},
                        "rollingUpdateConfiguration": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"partition": _INT32, "maxUnavailable": _INT_OR_STRING,
                                           "maxSurge": _INT_OR_STRING},
                        },
                    },
                },
                "leaderWorkerTemplate": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["workerTemplate"],
                    "properties": {
                        "leaderTemplate": _POD_TEMPLATE,
                        "workerTemplate": _POD_TEMPLATE,
                        "size": {**_INT32, "minimum": 1},
                        "restartPolicy": {"enum": ["Default", "RecreateGroupOnPodRestart",
                                                   "RecreateGroupAfterStart", "None"]},
                        "subGroupPolicy": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"subGroupPolicyType": {"enum": ["LeaderWorker", "LeaderExcluded"]},
                                           "subGroupSize": {**_INT32, "minimum": 1}},
                        },
                        "volumeClaimTemplates": {"type": "array", "items": {"type": "object"}},
                        "persistentVolumeClaimRetentionPolicy": {
                            "type": "object", "additionalProperties": False,
                            "properties": {"whenDeleted": {"enum": ["Retain", "Delete"]},
                                           "whenScaled": {"enum": ["Retain", "Delete"]}},
                        },
                    },
                },
            },
        },
    },
}


class ManifestError(Exception):
    """An object the strict validation refused (or could not check: never a silent pass)."""


def _core(obj: dict[str, Any], where: str) -> None:
    import kubernetes_validate  # lazy: an optional dependency (strict validation only)

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        raise ManifestError(f"{where}: {path or '<object>'}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        # the library's command only warns here and exits 0: a kind nobody checked is not a pass
        raise ManifestError(f"{where}: no schema for {obj.get('apiVersion')}/{obj.get('kind')} in Kubernetes "
                            f"{KUBERNETES_VERSION}: not validated, refused") from None


def _pod_template(template: Any, where: str) -> None:
    """A pod template of a custom resource, checked as the core object that holds one."""
    _core({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}, where)


def validate_object(obj: dict[str, Any], where: str = "<object>") -> None:
    if obj.get("apiVersion") == LWS_API_VERSION or obj.get("kind") == "LeaderWorkerSet":
        import jsonschema  # lazy: an optional dependency (strict validation only)

        errors = sorted(jsonschema.Draft7Validator(LWS_SCHEMA).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            path = ".".join(str(part) for part in first.path)
            raise ManifestError(f"{where}: {path or '<object>'}: {first.message}")
        template = obj["spec"]["leaderWorkerTemplate"]
        for key in ("leaderTemplate", "workerTemplate"):
            if key in template:
                _pod_template(template[key], f"{where}: spec.leaderWorkerTemplate.{key}")
        return
    _core(obj, where)


def validate_folder(folder: Path) -> int:
    """Every object kustomization.yaml lists, and the Secret template; returns how many were checked."""
    import yaml  # lazy: an optional dependency (strict validation only)

    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    names = [*kustomization["resources"], "secret.template.yaml"]
    for name in names:
        for obj in yaml.safe_load_all((folder / name).read_text(encoding="utf-8")):
            validate_object(obj, name)
    return len(names)


def main(argv: list[str]) -> int:
    failed = 0
    for folder in argv:
        try:
            count = validate_folder(Path(folder))
            print(f"{folder}: {count} objects valid (Kubernetes {KUBERNETES_VERSION}, strict)")
        except ManifestError as exc:
            print(f"{folder}: {exc}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
