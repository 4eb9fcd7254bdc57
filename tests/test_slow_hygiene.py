"""The slow tier's rules, checked on its source: hosts only through the fixtures that put them back after
each test, and no fixed sleep standing in for a wait.

A slow test that made its own namespace hosts or dockerd, or took a cluster fixture that is not cleared,
could leave containers behind for the next test (a failed Ray test once did: the next head could not
start). A `time.sleep(N)` outside a loop is a guess at how long something takes, which a loaded machine
breaks; waits poll with a deadline (``tests/runner/support.wait_for``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

RUNNER = ROOT / "tests" / "runner"
SLOW_MODULES = sorted(RUNNER.glob("test_*.py"))
# who may make hosts and daemons: the fixtures and their helpers, never a test module
MAKERS = {"make_cluster", "make_ssh_cluster", "make_hosts", "make_bed"}
MADE = {"one_host_made", "two_hosts_made", "ssh_hosts_made"}  # the uncleared clusters behind the fixtures


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else ""
        return f"{owner}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


@pytest.mark.parametrize("module", SLOW_MODULES, ids=lambda p: p.name)
def test_slow_tests_get_hosts_only_through_the_clearing_fixtures(module: Path) -> None:
    tree = ast.parse(module.read_text())
    # a yield fixture that removes what it made after its tests is a clearing fixture too
    cleared = {id(call) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and _clearing_fixture(f)
               for call in _calls(f)}
    made_here = [name for call in _calls(tree)
                 if ((name := _name(call)) in MAKERS or name == "Dockerd.start") and id(call) not in cleared]
    assert not made_here, f"{module.name} makes its own hosts ({made_here}): take one_host, two_hosts or ssh_hosts"
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    # a fixture that shares one deployment between a module's tests takes the made cluster and puts it back
    uncleared = [f.name for f in functions for arg in f.args.args if arg.arg in MADE and not _clearing_fixture(f)]
    assert not uncleared, f"{module.name}: {uncleared} take a cluster that is not put back after the test"


def _clearing_fixture(function: ast.FunctionDef) -> bool:
    fixture = any("fixture" in ast.unparse(decorator) for decorator in function.decorator_list)
    yields = any(isinstance(node, ast.Yield) for node in ast.walk(function))
    removes = any(_name(call).endswith((".remove", ".clear")) for call in _calls(function))
    return fixture and yields and removes


def _sleeps_outside_loops(tree: ast.AST) -> list[int]:
    found: list[int] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, ast.Call) and _name(node) == "time.sleep" and not in_loop:
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_loop or isinstance(node, (ast.While, ast.For)))

    visit(tree, False)
    return found


@pytest.mark.parametrize("module", [*SLOW_MODULES, RUNNER / "support.py"], ids=lambda p: p.name)
def test_slow_tests_wait_with_deadlines_not_fixed_sleeps(module: Path) -> None:
    lines = _sleeps_outside_loops(ast.parse(module.read_text()))
    assert not lines, f"{module.name}:{lines}: a fixed sleep; poll with a deadline (support.wait_for)"


def test_the_checks_see_what_they_forbid() -> None:
    """The two checks above find a fixed sleep and a host made in a test (they must be able to fail)."""
    bad = ast.parse("import time\ndef test_x(two_hosts_made):\n    make_hosts(2)\n    time.sleep(5)\n"
                    "    while True:\n        time.sleep(1)\n")
    assert _sleeps_outside_loops(bad) == [4]
    assert [_name(call) for call in _calls(bad) if _name(call) in MAKERS] == ["make_hosts"]
    shared = ast.parse("@pytest.fixture(scope='module')\ndef deployment(two_hosts_made):\n    yield 1\n"
                       "    two_hosts_made.clear()\n@pytest.fixture\ndef leaky(two_hosts_made):\n    yield 1\n")
    fixtures = [f for f in ast.walk(shared) if isinstance(f, ast.FunctionDef)]
    assert [_clearing_fixture(f) for f in fixtures] == [True, False]
