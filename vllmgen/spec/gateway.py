"""The spec language for the front door: one public address where clients reach the deployment.

With ``secrets.api_key`` the gateway is always on: nginx checks the key on every path and forwards
only the client API (``vllmgen.plan.gateway``); this section only says where it runs and what is public.
The cross-field rules (node names, port clashes, the warning for a keyless public server) are in
``vllmgen.spec.rules.gateway``.
"""

from __future__ import annotations

from pydantic import Field

from vllmgen.spec.formats import Address, HostPath, ImageRef, Model, Name, Port, Size

GATEWAY_PORT = 8800
NGINX_IMAGE = "nginx:1.28.0"  # the official image, pinned (Debian bookworm based)
NGINX_BINARY = "/usr/sbin/nginx"  # Debian's nginx package


class Gateway(Model):
    node: Name | None = Field(None, description="the node whose host runs the gateway (default: the router's node, "
                              "else the head)")
    address: Address | None = Field(
        None, description="the one public listen address (default: the gateway node's address); 0.0.0.0 or :: "
        "listens on every interface")
    port: Port = Field(GATEWAY_PORT, description="the one public port: clients use http://ADDRESS:PORT")
    image: ImageRef = Field(NGINX_IMAGE, description="Docker runtime: the nginx image (pin the tag)")
    nginx: HostPath = Field(NGINX_BINARY, description="process runtime: the nginx executable on the gateway's host")
    metrics_from: Address | None = Field(
        None, description="the one client address allowed to read /metrics through the gateway (with the key); "
        "default: the monitoring node's address, none when monitoring is off")
    max_body_size: Size = Field("64m", description="largest request body (nginx client_max_body_size): audio "
                                "uploads and long prompts")
    timeout_s: int = Field(3600, ge=10, le=86400, description="seconds a request may take end to end "
                           "(long generations, streamed or not)")
