"""Shell words: every value that reaches a generated script goes through ``quote_word``."""

from __future__ import annotations

import re
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
        name = ANCHOR_VARS[word.anchor]
        if not word.rest:
            return f'"${{{name}}}"'
        if _quote(word.rest) == word.rest:  # nothing to quote: "${HOME}"/.cache/huggingface
            return f'"${{{name}}}"/{word.rest}'
        # one double-quoted word: "${HOME}"/\~"x" would be SC2140 ("A"B"C": mistaken quotes?)
        return f'"${{{name}}}/{_double_quoted(word.rest)}"'
    return _quote(word)


def _double_quoted(text: str) -> str:
    return _DOUBLE_QUOTED_SPECIAL.sub(r"\\\g<0>", text)


def _quote(text: str) -> str:
    """``shlex.quote``, in the form shellcheck reads as intended: a literal ``$``, backquote or
    backslash goes in double quotes, escaped (in single quotes: SC2016, "expressions don't expand",
    and SC1003, "want to escape a single quote?"), and a leading ``~`` is escaped outside the quotes
    (a quoted one is SC2088, "tilde does not expand")."""
    if text.startswith("~") and text != "~":
        return "\\~" + (_quote(text[1:]) if len(text) > 1 else "")
    quoted = shlex.quote(text)
    if quoted.startswith("'") and _LINTED_IN_SINGLE_QUOTES.search(text):
        return f'"{_double_quoted(text)}"'
    return quoted


_LINTED_IN_SINGLE_QUOTES = re.compile(r"[$`\\]")
_DOUBLE_QUOTED_SPECIAL = re.compile(r'[\\"$`]')


def join_words(words: list[Word]) -> str:
    return " ".join(quote_word(word) for word in words)


def secret_expression(name: str, from_env: str | None, from_file: str | None) -> str:
    """The shell expression that reads a secret where the spec keeps it, as one word: ``"${VAR}"`` or
    ``"$(cat -- PATH)"``. Meant for a variable assignment or a builtin's argument, never an argv."""
    if from_file:
        return f'"$(cat -- {quote_word(host_word(from_file))})"'
    return f'"${{{from_env or name}}}"'


def curl_with_key(secret: str, words: list[str]) -> str:
    """``curl WORDS`` with ``Authorization: Bearer <secret>`` read from stdin (``-H @-``), so the key is on
    no command line: printf is a shell builtin. ``secret``: a ``secret_expression``."""
    return f"printf 'Authorization: Bearer %s\\n' {secret} | " + " ".join(
        shlex.quote(word) for word in ["curl", "-H", "@-", *words])
