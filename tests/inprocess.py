"""The ``vllmgen`` command run inside the test process: the same entry point (``vllmgen.cli.entry.main``,
with the fast ``render --check`` path) as the console script, its exit status, stdout and stderr, as
``subprocess.run`` would give them, without a new interpreter importing pydantic and building the
spec's models again (~0.55 s of CPU a call; the fast tier made ~100 such calls).

For tests of what the command *does*. A test about the process itself (no traceback at exit, what a
fresh interpreter imports, a signal, the installed script) keeps ``subprocess`` — see test_cli's
``test_the_installed_command_runs_as_its_own_process`` and tests/test_fastcheck.py.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner

from vllmgen.cli.entry import main
from vllmgen.runner import ssh

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_vllmgen(*args: str | Path, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([vllmgen, *args], capture_output=True, text=True, cwd=cwd, env=env)``, in-process.
    ``env``, as for subprocess, is the whole environment the command sees."""
    argv = ["vllmgen", *map(str, args)]
    changes: dict[str, str | None] = {}
    if env is not None:
        changes = {name: None for name in os.environ if name not in env}
        changes.update(env)
    saved_argv, saved_cwd, collecting = sys.argv, os.getcwd(), gc.isenabled()
    handlers = {number: signal.getsignal(number) for number in _SIGNALS}
    code: int = 0
    # a command's ssh masters are its own, as in a process of its own: ended when it returns (at exit there)
    saved_connections, ssh.CONNECTIONS = ssh.CONNECTIONS, ssh.Connections()
    with CliRunner().isolation(input=input, env=changes) as (out, err, _):
        sys.argv = argv
        try:
            if cwd is not None:
                os.chdir(cwd)
            main()
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # as the interpreter does with sys.exit("message")
                sys.stderr.write(f"{exc.code}\n")
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.argv = saved_argv
            os.chdir(saved_cwd)
            ssh.CONNECTIONS.close()
            ssh.CONNECTIONS = saved_connections
            # the command turns the collector off and freezes what it made, for a process about to end
            gc.unfreeze()
            if collecting:
                gc.enable()
            for number, handler in handlers.items():
                if handler is not None:  # None: set outside Python, and left so
                    signal.signal(number, handler)
        stdout, stderr = out.getvalue(), err.getvalue()
    return subprocess.CompletedProcess(argv, code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))
