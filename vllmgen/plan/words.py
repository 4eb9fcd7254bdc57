"""A command's words, as the plan holds them: text, or a path that starts at a directory known only on
the host ($HOME, the deployment's folder). Each target writes an anchored word its own way: quoted
shell (vllmgen.render.shell), compose's ${HOME}, a Docker mount resolved on the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ANCHOR_VARS = {"home": "HOME", "deploy_dir": "deploy_dir"}


@dataclass(frozen=True)
class Anchored:
    """A word that starts with a directory known only on the host: $HOME or the deployment dir."""

    anchor: Literal["home", "deploy_dir"]
    rest: str

    def resolve(self, home: str, deploy_dir: str) -> str:
        base = home if self.anchor == "home" else deploy_dir
        return f"{base}/{self.rest}" if self.rest else base


Word = str | Anchored


def host_word(path: str) -> Word:
    """A host path as a word: '~/x' becomes $HOME-anchored, since quoting would stop '~' expanding."""
    if path == "~" or path.startswith("~/"):
        return Anchored("home", path[2:])
    return path
