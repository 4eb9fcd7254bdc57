"""The router's container and files: router/Dockerfile, start.sh (health-gated), stop.sh, compose.yaml.

The router container is a ``Container`` like a node's, planned (``Plan.router_container``), so the start
script, compose file, runner, dry run and ``vllmgen plan`` all read the same definition.
"""

from __future__ import annotations

from vllmgen.plan.plan import Plan
from vllmgen.plan.router import ROLE, RouterPlan
from vllmgen.render.compose_yaml import compose_file
from vllmgen.render.shell import quote_word
from vllmgen.render.templates import header, template
from vllmgen.targets.docker.dockercli import run_options


def dockerfile(router: RouterPlan, header: str) -> str:
    return (
        f"# {header}\n"
        f"# vllm-router for '{router.container_name}': docker build -t {router.image} -f router/Dockerfile router\n"
        f"FROM {router.base_image}\n\n"
        "# a base that already has this exact version (a mirror image for air-gapped hosts) downloads nothing\n"
        f"RUN python3 -c \"import importlib.metadata as m, sys; sys.exit(m.version('vllm-router') != '{router.version}')\" \\\n"
        f"    || pip install --no-cache-dir vllm-router=={router.version}\n\n"
        'ENTRYPOINT ["vllm-router"]\n'
    )


def artifacts(plan: Plan) -> dict[str, str]:
    """router/ files, by path."""
    router = plan.router
    assert router is not None
    container = plan.router_container
    assert container is not None
    top = header(plan)
    context = {"plan": plan, "header": top, "router": router, "container": container,
               "options": run_options(container), "workers": [worker.url for worker in router.workers]}
    compose_text = (f"{top}\nvllm-router of '{plan.name}' on node {router.node}: start every API server first; "
                    f"docker compose -f compose.yaml up -d --build")
    compose = compose_file(container, ROLE, compose_text)
    # compose builds the image from the Dockerfile beside it
    compose = compose.replace(f'    image: "{container.image}"\n',
                              f'    image: "{container.image}"\n    build:\n      context: "."\n', 1)
    return {
        "router/Dockerfile": dockerfile(router, top),
        "router/start.sh": template("router-start.sh.j2", **context),
        "router/stop.sh": _stop(container.name, top),
        "router/compose.yaml": compose,
    }


def _stop(name: str, top: str) -> str:
    return (
        "#!/usr/bin/env bash\n"
        f"# {top}\n"
        "# Stops and removes the router container.\n"
        "set -euo pipefail\n\n"
        f"container={quote_word(name)}\n"
        'if docker container inspect "${container}" >/dev/null 2>&1; then\n'
        '    docker rm --force "${container}" >/dev/null\n'
        "    printf 'removed %s\\n' \"${container}\"\n"
        "else\n"
        "    printf '%s is not there\\n' \"${container}\"\n"
        "fi\n"
    )
