"""The jinja2 environment every template renders in, and the header line of every generated file.

Shell and Dockerfile templates are rendered with ``finalize=quote``: every ``{{ value }}`` is
shell-quoted unless a filter marked it as already-safe shell text, so a template cannot forget
to quote.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jinja2

from vllmgen.plan.plan import Plan, SecretEnv
from vllmgen.plan.words import Anchored, Word, host_word
from vllmgen.render.shell import curl_with_key, join_words, quote_word, secret_expression

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ShellText(str):
    """Text that is already valid, quoted shell: ``finalize`` passes it through."""


def templates_dir() -> Path:
    packaged = Path(__file__).parent.parent / "templates"  # inside a built wheel
    return packaged if packaged.is_dir() else Path(__file__).parent.parent.parent / "templates"


def _finalize_shell(value: Any) -> str:
    if isinstance(value, ShellText):
        return value
    if isinstance(value, (list, tuple)):
        raise TypeError("render a list of words with the 'words' filter")
    return quote_word(value if isinstance(value, Anchored) else str(value))


def _words(words: list[Word] | tuple[Word, ...]) -> ShellText:
    return ShellText(join_words(list(words)))


def shell_variable(name: str) -> ShellText:
    """An environment variable name, for use inside ``${...}``; checked, never quoted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a shell variable name: {name!r}")
    return ShellText(name)


def _env_value(value: str) -> ShellText:
    """A Dockerfile ENV value: read by Docker's own lexer, not a shell (nor shellcheck), which takes
    single-quoted text literally; the shell forms of ``quote_word`` are for RUN lines."""
    return ShellText(shlex.quote(str(value)))


def safe_text(value: str) -> ShellText:
    """Text for a comment line: control characters could end the comment, so they go."""
    return ShellText(re.sub(r"[\x00-\x1f\x7f]", "?", str(value)))


def _curl_check(url: str, key: SecretEnv | None) -> str:
    """The runbook's check: ``curl URL``, with the API key read from where the spec keeps it and sent
    through curl's stdin (never its argv)."""
    if key is None:
        return shlex.join(["curl", "-sS", url])
    return curl_with_key(secret_expression(key.name, key.from_env, key.from_file), ["-sS", url])


@functools.cache
def _environment(shell: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_finalize_shell if shell else None,
        auto_reload=False,  # templates do not change while we run: no stat() per node and template
    )
    env.filters.update(words=_words, var=shell_variable, host_path=host_word, safe_text=safe_text, env_value=_env_value,
                       curl_check=_curl_check)
    env.bytecode_cache = _bytecode_cache(env)
    return env


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, like __pycache__: compiling them is most of a small
    render's time. Keyed by template path and source checksum (jinja2) and by the environment's
    compile options (the file name pattern); an unreadable or unwritable cache is only a miss."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache(env: jinja2.Environment) -> _TemplateCache | None:
    root = os.environ.get("VLLMGEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vllmgen"
    )
    directory = os.path.join(root, "templates")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return None
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return None  # code is loaded from it: it must be ours alone
    # everything that changes the code jinja2 generates for the same template source
    options = (
        jinja2.__version__, env.block_start_string, env.block_end_string, env.variable_start_string,
        env.variable_end_string, env.comment_start_string, env.comment_end_string, env.line_statement_prefix,
        env.line_comment_prefix, env.trim_blocks, env.lstrip_blocks, env.newline_sequence,
        env.keep_trailing_newline, sorted(env.extensions), env.optimized, env.is_async, env.autoescape,
        getattr(env.finalize, "__qualname__", None),
    )
    fingerprint = hashlib.sha256(repr(options).encode()).hexdigest()[:12]
    return _TemplateCache(directory, f"{fingerprint}-%s.cache")


def template(name: str, **context: Any) -> str:
    # secrets.env.example is shell too: users `source` it; process.service.j2 is not shell
    shell = name.endswith((".sh.j2", "Dockerfile.j2", ".env.example.j2"))
    return _environment(shell).get_template(name).render(**context)


def header(plan: Plan) -> str:
    return f"generated by vllmgen from {plan.spec_file}; do not edit"
