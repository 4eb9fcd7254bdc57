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
