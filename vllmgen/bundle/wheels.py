"""``vllmgen bundle --with-vllmgen``: vllmgen's own wheel and its dependencies' wheels, for an air-gapped
control machine, and their place after ``bundle load`` (then ``pip install --no-index --find-links``).

The wheels are built by pip on the connected machine (``pip wheel`` of vllmgen's source tree: its
own wheel, and each dependency's, downloaded or from pip's cache). They fit a control machine with
the same Python version and platform as the one that bundled.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from vllmgen import __version__
from vllmgen.bundle.archive import BundleError

WHEELS = "wheels"  # the item's key, and the folder under `bundle load --to`


def source_tree() -> Path:
    """vllmgen's source tree (the folder with its pyproject.toml), which the wheel is built from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise BundleError(f"--with-vllmgen builds vllmgen's wheel from its source tree, and {root} has no "
                          "pyproject.toml (vllmgen was installed from a wheel): bundle from a checkout")
    return root


def build(folder: Path, say: Callable[[str], None], *, dependencies: bool = True) -> list[Path]:
    """The wheels into ``folder``: vllmgen's, and (``dependencies``) every one it needs to install.
    Without dependencies nothing is fetched: the build backend (hatchling) must be installed here."""
    folder.mkdir(parents=True, exist_ok=True)
    local = [] if dependencies else ["--no-deps", "--no-build-isolation", "--no-index"]
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder), *local, str(source_tree())]
    say(f"wheels: pip wheel vllmgen {__version__}" + (" and its dependencies" if dependencies else ""))
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BundleError(f"pip wheel failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    wheels = sorted(folder.glob("*.whl"))
    if not any(w.name.startswith("vllmgen-") for w in wheels):
        raise BundleError(f"pip wheel wrote no vllmgen wheel into {folder}")
    return wheels


def install_hint(folder: Path) -> str:
    return f"pip install --no-index --find-links {folder} vllmgen=={__version__}"
