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


@pytest.hookimpl(trylast=True)  # after -m has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier may run on several workers (pytest-xdist, `-n auto`); the slow tier may not: its tests
    share namespaces, dockerds and /dev/shm, and two vLLMs at once starve each other."""
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    refused = pytest.mark.skip(reason="not run: slow tests run one at a time, without -n (pytest-xdist)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(refused)  # before any fixture of theirs starts a host
