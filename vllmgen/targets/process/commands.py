"""The process target's verbs as shell lines (``runner.executor.Commands``): what ``apply --dry-run`` prints
for a process node. A start is what the node's run.sh execs (``process.launch``), detached as the engine starts
it; reads (is it there, its start time) come from the records run.sh writes, so they print nothing."""

from __future__ import annotations

import shlex
from pathlib import Path

from vllmgen.plan import label_names
from vllmgen.plan.words import Anchored, Word
from vllmgen.render.shell import join_words, quote_word
from vllmgen.runner.executor import RunRequest
from vllmgen.targets.process.process import KEEP_ENVIRON, MARKER_ENV, launch, marker


class ProcessShell:
    """The lines of a node's processes on this host."""

    where = "this host"

    def ping(self) -> None:
        return None

    def prepare_deploy_dir(self, local: Path, files: tuple[str, ...], remote: str) -> None:
        return None  # the files are copied on this host

    def run(self, request: RunRequest) -> str:
        """``setsid env NAME=VALUE ... vllm serve ...``: the start of nodes/<node>/run.sh's command, as one
        shell line. Secrets are passed by name; their values are never printed."""
        plan = launch(request.container)

        def fill(word: Word) -> Word:
            return word.resolve("", request.deploy_dir) if isinstance(word, Anchored) and word.anchor == "deploy_dir" else word

        labels = dict(request.container.labels)
        mark = marker(labels.get(label_names.DEPLOYMENT, ""), labels.get(label_names.NODE, ""))
        env = sorted([f"{MARKER_ENV}={quote_word(mark)}", "=".join(KEEP_ENVIRON),
                      *(f"{name}={quote_word(fill(value))}" for name, value in plan.env)])
        return " ".join(["setsid", "env", *env, join_words([fill(word) for word in plan.argv])])

    def remove(self, name: str, stop_timeout: int) -> str:
        return "kill -TERM <the recorded PID, if proven ours> (then SIGKILL to its session's proven members)"

    def exec(self, name: str, argv: tuple[str, ...], detach: bool, env: tuple[str, ...]) -> str:
        return shlex.join(argv)  # no container to enter: on this host, beside the process (ProcessExecutor.exec)

    def list_containers(self, deployment: str) -> None:
        return None

    def started_at(self, name: str) -> None:
        return None

    def serving(self, name: str) -> None:
        return None
