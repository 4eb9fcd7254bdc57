"""The front door (nginx): where it listens, what it forwards, and its config, decided from the spec.

Why nginx: a well-kept proxy in Debian (1.22) and as an official image, sub-millisecond overhead, and
its ``map`` over ``$http_authorization`` lets the key live in a file written when the gateway starts
(gateway/entrypoint.sh), never in build/. Every path needs ``Authorization: Bearer <key>`` (401);
only the client API in ``CLIENT_PATHS`` is forwarded, each to exactly its own path upstream; every
other path is 404, ``/metrics`` too unless it comes from the monitoring address. ``vllmgen.plan.exposure``
decides the addresses; ``vllmgen.render.gateway_artifacts`` writes the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vllmgen.plan import exposure
from vllmgen.spec import addresses
from vllmgen.spec.gateway import Gateway
from vllmgen.spec.model import Spec

ROLE = "gateway"
CONF_IN_CONTAINER = "/etc/vllmgen/gateway/nginx.conf"
ENTRYPOINT_IN_CONTAINER = "/etc/vllmgen/gateway/entrypoint.sh"
CONF_FILE = "gateway/nginx.conf"
ENTRYPOINT_FILE = "gateway/entrypoint.sh"
KEY_ENV = "VLLM_API_KEY"
# What clients may call: vLLM's OpenAI-compatible API (and /health, for load balancers). Not forwarded:
# /invocations, /tokenize, /detokenize, /pooling, /classify, /openapi.json, /docs, /version, /load,
# /ping, /scale_elastic_ep, the sleep/reset/LoRA admin paths, and the router's /add_worker,
# /remove_worker, /list_workers, /flush_cache.
CLIENT_PATHS = (
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/score",
    "/v1/rerank",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/health",
)


@dataclass(frozen=True)
class GatewayPlan:
    node: str
    node_address: str
    docker_host: str | None
    listen: str  # the public address nginx binds
    port: int
    upstreams: tuple[str, ...]  # host:port of the router, or of every API server
    metrics_from: str | None
    image: str
    nginx: str
    max_body_size: str
    timeout_s: int
    container_name: str

    @property
    def public_host(self) -> str:
        """The public address (the node's, when listening on every interface)."""
        return self.node_address if self.listen in exposure.EVERY_INTERFACE else self.listen

    @property
    def url(self) -> str:
        """What clients use."""
        return f"http://{addresses.host_port(self.public_host, self.port)}"


def plan_gateway(spec: Spec, router_upstream: str | None) -> GatewayPlan | None:
    node = exposure.gateway_node(spec)
    if node is None:
        return None
    settings = spec.gateway or Gateway()
    if router_upstream is not None:
        upstreams: tuple[str, ...] = (router_upstream,)
    else:
        upstreams = tuple(addresses.host_port(exposure.reach(exposure.server_bind(spec, server), server),
                                              spec.serve.port) for server in exposure.api_server_nodes(spec))
    metrics_from = settings.metrics_from
    if metrics_from is None and spec.monitoring.enabled:
        watcher = next((n for n in spec.nodes if n.name == spec.monitoring.node), spec.head)
        metrics_from = watcher.address if addresses.parse_ip(watcher.address) else None
    return GatewayPlan(
        node=node.name,
        node_address=node.address,
        docker_host=node.docker_host,
        listen=settings.address or exposure.private_bind(node),
        port=settings.port,
        upstreams=upstreams,
        metrics_from=metrics_from,
        image=settings.image,
        nginx=settings.nginx,
        max_body_size=settings.max_body_size,
        timeout_s=settings.timeout_s,
        container_name=f"{spec.container_prefix}-{ROLE}",
    )


def nginx_conf(gateway: GatewayPlan, deployment: str, header: str) -> str:
    """nginx.conf. Relative paths are under nginx's prefix: the private runtime folder entrypoint.sh
    makes, which also holds key.map (``map $http_authorization $vllmgen_key_ok``)."""
    listen = addresses.host_port(gateway.listen, gateway.port) if gateway.listen else str(gateway.port)
    timeout = f"{gateway.timeout_s}s"
    lines = [
        f"# {header}",
        f"# The front door of '{deployment}' on {gateway.node}: clients use {gateway.url}.",
        "# Every path needs 'Authorization: Bearer <key>' (else 401); only the client API below is",
        "# forwarded, each to its own path upstream; every other path answers 404.",
        "# Started by entrypoint.sh, which writes key.map beside a copy of this file in a private folder.",
        "worker_processes auto;",
        "pid nginx.pid;",
        "error_log stderr warn;",
        "",
        "events {",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    default_type application/json;",
        "    access_log /dev/stdout;",
        "    client_body_temp_path temp/client_body;",
        "    proxy_temp_path temp/proxy;",
        "    fastcgi_temp_path temp/fastcgi;",
        "    uwsgi_temp_path temp/uwsgi;",
        "    scgi_temp_path temp/scgi;",
        "    # the key, written at start (never in build/): $vllmgen_key_ok is 1 for the right header only",
        "    include key.map;",
        "",
        "    upstream vllmgen_api {",
        *(f"        server {upstream};" for upstream in gateway.upstreams),
        "        keepalive 64;",
        "    }",
        "",
        "    server {",
        f"        listen {listen};",
        f"        client_max_body_size {gateway.max_body_size};",
        f"        client_body_timeout {timeout};",
        f"        send_timeout {timeout};",
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";',
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        "        # streamed answers (SSE) go out as they come; request bodies are not spooled to disk",
        "        proxy_buffering off;",
        "        proxy_request_buffering off;",
        "        proxy_redirect off;",
        "        proxy_connect_timeout 10s;",
        f"        proxy_read_timeout {timeout};",
        f"        proxy_send_timeout {timeout};",
        "",
        "        if ($vllmgen_key_ok != 1) {",
        "            return 401 '{\"error\": \"missing or wrong API key\"}\\n';",
        "        }",
        "",
    ]
    for path in CLIENT_PATHS:
        lines += [f"        location = {path} {{", f"            proxy_pass http://vllmgen_api{path};", "        }"]
    lines += ["        location = /metrics {"]
    if gateway.metrics_from:
        lines += [f'            if ($remote_addr != "{addresses.canonical(gateway.metrics_from)}") {{',
                  "                return 404 '{\"error\": \"not found\"}\\n';", "            }",
                  "            proxy_pass http://vllmgen_api/metrics;"]
    else:
        lines += ["            return 404 '{\"error\": \"not found\"}\\n';"]
    lines += [
        "        }",
        "        location / {",
        "            return 404 '{\"error\": \"not found\"}\\n';",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def entrypoint(header: str) -> str:
    """gateway/entrypoint.sh (POSIX sh: the nginx image has no bash). The key reaches it as $VLLM_API_KEY,
    as vLLM's does; it is checked against RFC 6750's token characters, so it needs no escaping in nginx's
    config (only ``.`` and ``+`` are regex characters: written ``[.]`` and ``[+]``), written with
    noclobber into a fresh 0700 folder on a tmpfs, and removed again once nginx has read it."""
    return f"""#!/bin/sh
# {header}
# Starts the gateway: the API key ($VLLM_API_KEY) becomes key.map in a private runtime folder (a
# tmpfs: the container's own /dev/shm, or $XDG_RUNTIME_DIR), nginx reads it with a copy of nginx.conf,
# and the file is deleted once nginx runs. nginx starts with an empty environment (but the marker).
#   usage: entrypoint.sh NGINX_CONF [NGINX_EXECUTABLE]
set -eu
export LC_ALL=C
conf="$1"
nginx="${{2:-nginx}}"
key="${{{KEY_ENV}:-}}"
unset {KEY_ENV}
case "${{key}}" in
    "")
        echo "gateway: {KEY_ENV} is empty or not set; the gateway does not start without the API key" >&2
        exit 64 ;;
    *[!A-Za-z0-9._~+/=-]* | *=*[!=]*)
        echo "gateway: the API key may use only A-Z a-z 0-9 - . _ ~ + / (and = at its end): RFC 6750's token" >&2
        exit 64 ;;
esac
pattern="$(printf '%s' "${{key}}" | sed -e 's/[.]/[.]/g' -e 's/[+]/[+]/g')"
unset key

umask 077
run_dir="$(mktemp -d "${{XDG_RUNTIME_DIR:-/dev/shm}}/vllmgen-gateway.XXXXXXXX")"
# nginx's workers (another user when nginx starts as root) use temp/; key.map stays 0600
chmod 0711 "${{run_dir}}"
mkdir -m 0711 "${{run_dir}}/temp"
set -C  # noclobber: both files are new (O_EXCL); a link put in their place is never followed
cat -- "${{conf}}" > "${{run_dir}}/nginx.conf"
# shellcheck disable=SC2016 # $http_authorization is nginx's variable, written as it is
printf 'map $http_authorization $vllmgen_key_ok {{\\n    default 0;\\n    "~^Bearer %s$" 1;\\n}}\\n' "${{pattern}}" \\
    > "${{run_dir}}/key.map"
unset pattern
# nginx reads key.map once, at start (its PID file is written after): then the key lives only in nginx
(
    tries=0
    while [ ! -s "${{run_dir}}/nginx.pid" ] && [ "${{tries}}" -lt 600 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    rm -f -- "${{run_dir}}/key.map"
) &
# the process runtime's marker (process.MARKER_ENV, not a secret) stays: it proves nginx is ours to stop
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin ${{VLLMGEN_NODE:+"VLLMGEN_NODE=${{VLLMGEN_NODE}}"}} "${{nginx}}" -p "${{run_dir}}/" -c "${{run_dir}}/nginx.conf" \\
    -e stderr -g 'daemon off;'
"""  # noqa: E501 - the script's own line


def config_inputs(conf: str, script: str) -> str:
    """What the gateway container's config-hash covers besides its definition: both files it runs."""
    return json.dumps([conf, script])
