"""apply, status, down and plan for the Kubernetes target: vllmgen reaches no cluster, so it says so and
prints the kubectl command to run; nothing pretends to have applied.

Exit codes: ``apply``/``status``/``down`` exit 4 (EXIT_RUNNER: the step that would act on the cluster did
not run; 1 would claim a drift or an unhealthy deployment vllmgen never saw, 2 a mistyped command), and 0
with ``--dry-run``, whose promise is only to print what would run. ``doctor`` exits 4 too: its checks are of
the host that runs a node, and a pod's host is the scheduler's choice, so none ran (0 would claim they
passed). ``plan`` compares the rendered objects
with the committed build/<name>/ (what ``kubectl apply -k`` would send): 0 nothing changes, 1 objects
change, as for the other targets.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from vllmgen.errors import EXIT_DRIFT, EXIT_RUNNER
from vllmgen.plan import label_names
from vllmgen.plan.plan import Plan
from vllmgen.render.artifacts import Artifact
from vllmgen.render.write import check
from vllmgen.targets.kubernetes.plan import KubernetesPlan
from vllmgen.targets.kubernetes.render import KUSTOMIZATION, SECRET_TEMPLATE
from vllmgen.targets.registry import Answer

NO_CLUSTER = "vllmgen reaches no Kubernetes cluster"


def kubectl(command: str, k8s: KubernetesPlan, folder: Path) -> str:
    where = ["-n", k8s.namespace] if k8s.namespace else []
    kind = "leaderworkerset" if k8s.layout == "leaderworkerset" else "deployment"
    leader = f"{k8s.name}-0" if k8s.layout == "leaderworkerset" else f"deployment/{k8s.name}"  # LWS: group 0's
    words = {
        "bench": ["kubectl", *where, "exec", "-it", leader, "--", "vllm", "bench", "serve", "--help"],
        "apply": ["kubectl", "apply", "-k", folder.as_posix()],
        "down": ["kubectl", "delete", "-k", folder.as_posix()],
        "status": ["kubectl", *where, "get", f"{kind},pods,services", "-l", f"{label_names.DEPLOYMENT}={k8s.name}"],
        "doctor": ["kubectl", "get", "nodes", "-o",
                   "custom-columns=NODE:.metadata.name,GPUS:.status.allocatable.nvidia\\.com/gpu"],
    }[command]
    return shlex.join(words)


def act(command: str, k8s: KubernetesPlan, folder: Path, *, dry_run: bool, stale: bool) -> Answer:
    """What apply/status/down answer for a Kubernetes spec."""
    run = kubectl(command, k8s, folder)
    if dry_run:
        return Answer(f"# vllmgen {command} --dry-run: {NO_CLUSTER}; the command to run:\n{run}\n", 0)
    done = {"apply": "nothing was applied", "status": "no status was read", "down": "nothing was removed",
            "bench": "no benchmark was run (vllm bench serve runs inside the leader pod)",
            "doctor": "no host was checked. doctor checks the host a node runs on (Docker, GPUs, network, "
                      "storage); a pod runs where the scheduler places it, so those checks do not apply. The "
                      "manifests are checked offline by `vllmgen render --check` (every object strictly "
                      "validated); the GPUs each cluster node offers"}[command]
    gitops = f" (or let Argo CD / Flux apply {folder.as_posix()})" if command == "apply" else ""
    lines = [f"{NO_CLUSTER}: {done}. Run it yourself{gitops}:", f"  {run}"]
    if stale and command == "apply":
        lines.insert(0, f"{folder.as_posix()} is out of date with the spec: run `vllmgen render` first")
    if command == "apply" and k8s.secret_keys:
        lines.append(f"  (first the Secret {k8s.secret_name}: {folder.as_posix()}/README.md)")
    return Answer("\n".join(lines) + "\n", EXIT_RUNNER)


def _object_name(text: str) -> str:
    """'Kind name' from the second header line vllmgen writes into every object file."""
    lines = text.splitlines()
    return lines[1].removeprefix("# ") if len(lines) > 1 and lines[1].startswith("# ") else "?"


def changes(artifacts: list[Artifact], folder: Path) -> Answer:
    """The objects whose file differs from the committed build/: created, changed, deleted."""
    not_objects = (KUSTOMIZATION, SECRET_TEMPLATE)  # README, manifest.json: `render --check` shows those
    rendered = {a.path: a for a in artifacts if a.path.endswith(".yaml") and "/" not in a.path
                and a.path not in not_objects}
    on_disk = {p.name for p in folder.glob("*.yaml") if p.name not in not_objects} if folder.is_dir() else set()
    lines = []
    for path in sorted(rendered.keys() | on_disk):
        if path not in rendered:
            text = (folder / path).read_text(encoding="utf-8", errors="replace")
            lines.append(f"  delete  {_object_name(text)}  ({path})")
        elif path not in on_disk:
            lines.append(f"  create  {_object_name(rendered[path].content)}  ({path})")
        elif (folder / path).read_bytes() != rendered[path].data:
            lines.append(f"  change  {_object_name(rendered[path].content)}  ({path})")
    head = (f"# {NO_CLUSTER}: the rendered objects against {folder.as_posix()}/ (what `kubectl apply -k` sends); "
            f"`kubectl diff -k {folder.as_posix()}` compares with the cluster\n")
    if not lines:
        return Answer(head + "no object changes\n", 0)
    return Answer(head + f"{len(lines)} object(s) change:\n" + "\n".join(lines) + "\n", EXIT_DRIFT)


def intercept(command: str, plan: Plan, artifacts: list[Artifact] | None, build_dir: Path, *,
              dry_run: bool = False) -> Answer:
    """The registry's manual for Kubernetes: what apply/plan/status/down/bench/doctor answer, from what the CLI
    already planned (and rendered: ``plan`` and ``apply`` compare the artifacts with build/<name>/)."""
    k8s = plan.kubernetes
    if k8s is None:  # the registry calls this only for runtime.kind: kubernetes, whose plan fills it
        raise RuntimeError(f"the Kubernetes manual was asked about a runtime.kind: {plan.runtime} plan")
    folder = build_dir / plan.name
    if command == "plan":
        if artifacts is None:
            raise RuntimeError("vllmgen plan on Kubernetes compares the rendered objects with build/: none were given")
        return changes(artifacts, folder)
    stale = command == "apply" and artifacts is not None and bool(check(artifacts, folder))
    return act(command, k8s, folder, dry_run=dry_run, stale=stale)
