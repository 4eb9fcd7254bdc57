"""What render hands a target: the shared pieces (templates, the serve config, compose files), so a
target's own module renders only what is its own and never imports the render stage back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vllmgen.plan.plan import Container, NodePlan, Plan

File = tuple[str, str, bool]  # (path under build/<name>/, text, executable)


@dataclass(frozen=True)
class RenderKit:
    context: dict[str, Any]  # the templates' shared context: plan, header, secrets, ports
    template: Callable[..., str]  # template(name, **context) -> text
    serve_config: str  # serve-config.yaml's text
    compose: Callable[[Plan, NodePlan], str]  # a node's compose.yaml
    compose_file: Callable[[Container, str, str], str]  # (container, service name, header) -> compose text
