import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# CI runs the same examples every time (a red build names a reproducible input); exploring new ones
# is a separate, deliberate run: VLLMGEN_HYPOTHESIS=explore pytest tests/test_lint_properties.py
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("VLLMGEN_HYPOTHESIS", "deterministic"))


@pytest.fixture
def root() -> Path:
    return ROOT


# The slow tier's files by their measured cost (seconds, one at a time, 2026-12-04), heaviest first. The slow
# tier runs on three workers, a file to a worker (`--dist loadfile`), and starting the heaviest first lets them
# end together (the longest file alone is a seventh of the tier).
SLOW_FILE_SECONDS = {
    "tests/runner/test_dp_e2e.py": 190, "tests/runner/test_bundle_real.py": 117, "tests/runner/test_gateway_e2e.py": 104,
    "tests/runner/test_router_e2e.py": 93, "tests/runner/test_ssh_hosts.py": 86, "tests/runner/test_ray_netns.py": 78,
    "tests/runner/test_gateway_process_e2e.py": 64,
    "tests/runner/test_engine.py": 58, "tests/test_write.py": 55,
    "tests/runner/test_process_cpu.py": 44,
    "tests/test_lint_properties.py": 42, "tests/runner/test_pd_process_e2e.py": 41, "tests/test_install.py": 40,
    "tests/runner/test_daemon_json_real.py": 39, "tests/runner/test_idempotence_real.py": 35,
}
# how the slow tier may be spread over pytest-xdist workers: a module's tests share one deployment (module
# fixtures), so a module must stay on one worker
WHOLE_FILES = {"loadfile", "loadscope"}


def pytest_configure_node(node) -> None:  # noqa: ANN001 - pytest-xdist's hook, on the controller
    """A worker's own options say `--dist no`: pass it the controller's, for the check below."""
    node.workerinput["dist"] = node.config.getoption("dist")


@pytest.hookimpl(trylast=True)  # after -m has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Heaviest slow files first, then the other files with slow tests, then the fast tier's (a stable sort by
    file: each file's tests stay together, in file order); in one session the fast files fill the cores the
    slow tier's last files leave idle. Under pytest-xdist the slow tier runs only a file to a worker: each
    worker's hosts are its own (namespace names carry its pid), and a module's tests share one deployment."""
    weight: dict[str, float] = {}
    for item in items:
        file = item.nodeid.split("::", 1)[0]
        weight[file] = max(weight.get(file, 0), SLOW_FILE_SECONDS.get(file, 1 if item.get_closest_marker("slow") else 0))
    items.sort(key=lambda item: -weight[item.nodeid.split("::", 1)[0]])
    if not hasattr(config, "workerinput") or config.workerinput.get("dist") in WHOLE_FILES:
        return
    refused = pytest.mark.skip(reason="not run: under pytest-xdist the slow tier needs --dist loadfile")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(refused)  # before any fixture of theirs starts a host
