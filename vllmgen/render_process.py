"""Render the process runtime's per-node files: run.sh, start.sh, stop.sh and a systemd unit.

``render`` calls ``node_artifacts`` with its own template function (so this module does not
import it). The process translation of the node's container is ``process.launch``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vllmgen.plan import NodePlan, Plan
from vllmgen.process import launch, unit_name

_RESTART = {"no": "no", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}


def node_files(plan: Plan, node: NodePlan, context: dict[str, Any],
               template: Callable[..., str]) -> list[tuple[str, str, bool]]:
    """(path, text, executable) for one node."""
    container = node.container
    unit = unit_name(plan.name, node.name)
    node_context = {**context, "node": node, "launch": launch(container), "unit": unit,
                    "restart": _RESTART[container.restart], "memlock": bool(container.ulimits),
                    "env_secrets": [s.from_env for s in container.secrets if s.from_env]}
    base = f"nodes/{node.name}"
    return [
        (f"{base}/run.sh", template("process-run.sh.j2", **node_context), True),
        (f"{base}/start.sh", template("process-start.sh.j2", **node_context), True),
        (f"{base}/stop.sh", template("process-stop.sh.j2", **node_context), True),
        (f"{base}/{unit}", template("process.service.j2", **node_context), False),
    ]
