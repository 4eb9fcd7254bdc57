"""The package's import graph, read statically (every import: top level, under TYPE_CHECKING, inside
functions): no cycles, no private name (``_x``) taken from another module, and every import inside a
function marked ``# lazy: why`` (start-up time, an optional dependency), so none hides a cycle.

A marker sits on the import's line, or on a comment line right above a run of imports (it covers
the run). The checker runs on a small made-up package first, so each rule is shown to fail.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT

MARKER = "# lazy:"

# The runner's step modules take Apply (runner.steps) as a type only, under TYPE_CHECKING, while steps
# imports them to run them (and the Kubernetes target's plan reads the shared Plan, which calls it): a
# cycle of annotations, not of imports that run. Each edge, and why.
TYPE_ONLY_EDGES = {
    ("vllmgen.runner.changes", "vllmgen.runner.steps"): "decisions read Apply's plan and executors",
    ("vllmgen.runner.cluster_step", "vllmgen.runner.steps"): "the cluster step runs on an Apply",
    ("vllmgen.runner.gateway_step", "vllmgen.runner.steps"): "the gateway step runs on an Apply",
    ("vllmgen.runner.servers", "vllmgen.runner.steps"): "the server steps run on an Apply",
    ("vllmgen.targets.docker.daemon_step", "vllmgen.runner.steps"): "the daemon.json step runs on an Apply",
    ("vllmgen.targets.kubernetes.plan", "vllmgen.plan.plan"): "it reads the shared Plan; plan.plan calls it to fill Plan.kubernetes",
}


# The pipeline's stages, in order: a module imports only from its own stage or an earlier one. A target
# (targets/docker, targets/process) is a slice through the stages, so its modules are not checked as
# importers; imported, it counts as render's stage (the compiler's side of a target), but for its spec model.
STAGES = {"vllmgen": 0, "errors": 0, "spec": 1, "plan": 2, "render": 3, "targets": 3, "runner": 4, "review": 5,
          "doctor": 5, "recipes": 5, "bundle": 5, "cli": 6, "__main__": 6}
# each later-stage import that is still there, and why
BACK_EDGES = {
    ("vllmgen.spec.rules.gateway", "vllmgen.plan.exposure"): "where each server listens, computed once; a rule checks it",
    ("vllmgen.spec.rules.parallel", "vllmgen.plan.parallel"): "ranks and ports, computed once; a rule checks them",
    ("vllmgen.spec.rules.core", "vllmgen.targets.docker.daemon_keys"):
        "daemon.json's keys are the Docker target's; issue 18.1 gives each target its part of the spec",
    ("vllmgen.runner.faults", "vllmgen.doctor.gpu"): "the driver-mismatch advice doctor gives, for the same fault",
    ("vllmgen.runner.steps", "vllmgen.doctor.docker"): "preflight reads Docker's facts with doctor's checks",
    ("vllmgen.spec.rules.offline", "vllmgen.plan.exposure"): "where each server listens, computed once; a rule checks it",
    ("vllmgen.spec.rules.pd", "vllmgen.plan.pd"): "the prefill/decode instances and their ports, computed once; a rule checks them",
}
# A target's own part of a stage counts as that stage: its spec model (runtime.py, or spec.py: its `runtime:`
# section) and its rules are the spec's, its planning (plan.py) the plan's; the spec's union of runtimes,
# the rules' list and the shared plan import them as they import their own stage's modules.
TARGET_STAGE_MODULE = re.compile(r"^vllmgen\.targets\.\w+\.(runtime|spec|rules|plan)$")
TARGET_STAGES = {"runtime": "spec", "spec": "spec", "rules": "spec", "plan": "plan"}


@dataclass
class Graph:
    edges: dict[str, set[str]] = field(default_factory=dict)
    private: set[tuple[str, str]] = field(default_factory=set)  # (module, "other.module._name")
    unmarked: set[tuple[str, str]] = field(default_factory=set)  # (module, imported module): in a function
    where: dict[tuple[str, str], str] = field(default_factory=dict)  # a finding -> file:line, for messages


def _imports_in_functions(tree: ast.AST) -> set[int]:
    """The ids of the import statements inside a function (at any depth), in one walk of the tree."""
    found: set[int] = set()
    work: list[tuple[ast.AST, bool]] = [(tree, False)]
    while work:
        node, inside = work.pop()
        inside = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            if inside and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.add(id(child))
            work.append((child, inside))
    return found


def read_graph(root: Path, package: str) -> Graph:
    files = {_module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph = Graph()
    for module, path in files.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        tree = ast.parse(source, str(path))
        nested = _imports_in_functions(tree)
        aliases: dict[str, str] = {}  # a name bound to one of the package's modules
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, name, bound in _targets(node, module, path.name == "__init__.py", files):
                at = f"{path.relative_to(root)}:{node.lineno}"
                if id(node) in nested and not _marked(lines, node.lineno):
                    graph.unmarked.add((module, target))
                    graph.where.setdefault((module, target), at)
                if target.split(".")[0] != package:
                    continue
                graph.edges.setdefault(module, set()).add(target)
                graph.where.setdefault((module, target), at)
                if target in files and bound:
                    aliases[bound] = target
                if name is not None and _private(name) and target != module:
                    graph.private.add((module, f"{target}.{name}"))
                    graph.where.setdefault((module, f"{target}.{name}"), at)
        for node in ast.walk(tree):  # alias._name, where alias is another of the package's modules
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _private(node.attr) and aliases[node.value.id] != module):
                graph.private.add((module, f"{aliases[node.value.id]}.{node.attr}"))
                graph.where.setdefault((module, f"{aliases[node.value.id]}.{node.attr}"),
                                       f"{path.relative_to(root)}:{node.lineno}")
    return graph


def cycles(edges: dict[str, set[str]], ignored: set[tuple[str, str]] = frozenset()) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph = {node: sorted(t for t in targets if (node, t) not in ignored) for node, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = graph.get(node, [])
            if position < len(successors):
                work.append((node, position + 1))
                successor = successors[position]
                if successor not in index:
                    work.append((successor, 0))
                elif successor in on_stack:
                    low[node] = min(low[node], index[successor])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, files: dict[str, Path]):
    """(imported module, imported name or None, the name it is bound to) for each name of one import."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None, alias.asname or ""
        return
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in files:
            yield submodule, None, alias.asname or alias.name
        else:
            yield base, alias.name, alias.asname or alias.name


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _marked(lines: list[str], lineno: int) -> bool:
    """The import on ``lineno`` (1-based) carries the marker, or the comment line above its run of imports does."""
    if MARKER in lines[lineno - 1]:
        return True
    above = lineno - 2
    while above >= 0 and lines[above].strip().startswith(("import ", "from ")) and MARKER not in lines[above]:
        above -= 1
    return above >= 0 and (lines[above].strip().startswith(MARKER) or (
        MARKER in lines[above] and lines[above].strip().startswith(("import ", "from "))))


@functools.cache
def package_graph() -> Graph:
    """vllmgen's graph, read when a test first asks, not while tests are collected (each pytest-xdist
    worker collects every module)."""
    return read_graph(ROOT, "vllmgen")


def test_no_import_cycles():
    assert cycles(package_graph().edges, set(TYPE_ONLY_EDGES)) == []


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _stage_index(module: str) -> int:
    match = TARGET_STAGE_MODULE.match(module)
    return STAGES[TARGET_STAGES[match.group(1)]] if match else STAGES[_stage(module)]


def back_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(module, target) for module, targets in edges.items() for target in targets
            if _stage(module) != "targets" and _stage_index(target) > _stage_index(module)}


def test_no_module_imports_from_a_later_stage():
    assert sorted(back_edges(package_graph().edges) - set(BACK_EDGES)) == []
    assert set(BACK_EDGES) - back_edges(package_graph().edges) == set()  # a stale entry: drop it


def test_no_private_name_imported_across_modules():
    found = package_graph().private
    assert sorted(f"{package_graph().where[item]}: {item[1]}" for item in found) == []


def test_every_import_inside_a_function_says_why_it_is_lazy():
    found = package_graph().unmarked
    assert sorted(f"{package_graph().where[item]}: {item[1]} (mark it '{MARKER} why', or import it at the top)"
                  for item in found) == []


def test_the_type_only_edges_are_still_there_and_under_type_checking():
    """A stale entry is dropped; an entry that became a real import is a real cycle."""
    assert set(TYPE_ONLY_EDGES) - {(m, t) for m, targets in package_graph().edges.items() for t in targets} == set()
    for module, target in TYPE_ONLY_EDGES:
        path = ROOT / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) == "TYPE_CHECKING" for node in ast.walk(block)}
        runtime = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and id(node) not in guarded
                   and node.module is not None and (node.module == target or f"{node.module}.{node.names[0].name}" == target)]
        assert runtime == [], f"{module} imports {target} outside TYPE_CHECKING"


def test_the_checker_finds_each_kind_of_problem(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n_HIDDEN = 1\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import a  # a cycle, even under TYPE_CHECKING\n"
        "def f():\n    from pkg.c import _secret\n    return _secret\n"
        "def g():\n    # lazy: start-up time\n    import json\n    import csv\n    from ..c import d  # lazy: too\n"
        "    return json, csv, d\n"
    )
    (package / "c.py").write_text("from pkg import a\n_secret = d = 1\nx = a._HIDDEN\n")
    graph = read_graph(tmp_path, "pkg")
    assert cycles(graph.edges) == [["pkg.a", "pkg.c", "pkg.sub.b"]]  # b -> a -> b, and b -> c -> a -> b
    assert cycles(graph.edges, {("pkg.a", "pkg.sub.b")}) == []
    assert graph.private == {("pkg.sub.b", "pkg.c._secret"), ("pkg.c", "pkg.a._HIDDEN")}
    assert graph.unmarked == {("pkg.sub.b", "pkg.c")}  # f's; g's run of imports is marked
    assert graph.edges["pkg.sub.b"] == {"pkg.a", "pkg.c"}
    assert back_edges({"vllmgen.spec.x": {"vllmgen.plan.y", "vllmgen.errors", "vllmgen.targets.k.runtime"},
                       "vllmgen.spec.z": {"vllmgen.targets.k.plan"},
                       "vllmgen.targets.docker.z": {"vllmgen.runner.w"}}) == {("vllmgen.spec.x", "vllmgen.plan.y"),
                                                                             ("vllmgen.spec.z", "vllmgen.targets.k.plan")}
