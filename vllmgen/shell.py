"""Shell words: every value that reaches a generated script goes through ``quote_word``."""

from __future__ import annotations

import shlex
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


def quote_word(word: Word) -> str:
    if isinstance(word, Anchored):
        var = f'"${{{ANCHOR_VARS[word.anchor]}}}"'
        return f"{var}/{shlex.quote(word.rest)}" if word.rest else var
    return shlex.quote(word)


def join_words(words: list[Word]) -> str:
    return " ".join(quote_word(word) for word in words)
