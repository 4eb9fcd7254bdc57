"""Docker endpoints (``nodes[].docker_host``): parsed strictly, because parts of them reach ``ssh``.

``ssh://[user@]host[:port]``, ``tcp://host:port`` or ``unix:///absolute/path``. Nothing that ssh
could read as an option gets through (a user or host starting with '-'), nor anything beyond
those parts (a path, a query, a password, spaces). Pure: the spec validator and the runner
both use it, and validate never loads the runner.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from vllmgen.spec import addresses
from vllmgen.errors import short

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,31}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
FORMS = "ssh://[user@]host[:port], tcp://host:port or unix:///path"


# Docker's tcp:// API has no authentication of its own and, without TLS, no encryption: what vllmgen
# sends there (the secrets in a container's environment, a benchmark's API key) would cross the
# network in cleartext; it also reaches no file of the host, which apply needs. Refused everywhere.
TCP_REFUSED = ("tcp:// is refused: the Docker API over tcp:// would carry the deployment's secrets (the API key, "
               "the HF token in each container's environment) and vllmgen does not set up its TLS; it also "
               "reaches none of the host's files, which apply needs. Use ssh://USER@HOST (Docker's API through ssh)")


class EndpointError(ValueError):
    pass


def refused(value: str) -> str | None:
    """Why vllmgen will not talk to this Docker endpoint, or None: tcp:// (see TCP_REFUSED)."""
    return TCP_REFUSED if value.strip().lower().startswith("tcp://") else None


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # ssh, tcp, unix
    host: str = ""  # without brackets, for IPv6
    port: int | None = None
    user: str | None = None
    path: str = ""  # unix only

    @property
    def ssh_destination(self) -> str:
        """The host as ssh's destination argument (after ``--``); the user goes with ``-l``."""
        return self.host


def _host(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        address = addresses.parse_ip(text[1:-1])  # a scope id must name an interface
        if address is None or address.version != 6:
            raise EndpointError(f"{short(text)} is not an IPv6 address")
        return str(address)
    if not text:
        raise EndpointError("no host")
    if text.startswith("-"):
        raise EndpointError(f"the host {short(text)} starts with '-', which ssh would read as an option")
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    if len(text) > 253 or all(label.isdigit() for label in labels) or not all(_LABEL.fullmatch(x) for x in labels):
        raise EndpointError(f"the host {short(text)} is not a hostname or an IP address")
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise EndpointError(f"the port {short(text)} is not a number from 1 to 65535")
    return int(text)


def _split_port(rest: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise EndpointError("unclosed '[' in the host")
        host, after = rest[: close + 1], rest[close + 1:]
        if after and not after.startswith(":"):
            raise EndpointError(f"unexpected {short(after)} after the host")
        return host, after[1:] if after else None
    host, colon, port = rest.partition(":")
    return host, port if colon else None


def parse(value: str) -> Endpoint:
    """An endpoint, or EndpointError saying which part is wrong."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("ssh", "tcp", "unix"):
        raise EndpointError(f"expected {FORMS}")
    if scheme == "unix":
        if not rest.startswith("/") or any(c.isspace() or ord(c) < 32 for c in rest):
            raise EndpointError("expected unix:///absolute/path/to/docker.sock (no spaces)")
        return Endpoint("unix", path=rest)
    if any(c in rest for c in "/?#"):
        raise EndpointError(f"expected {scheme}://{'[user@]' if scheme == 'ssh' else ''}host{'[:port]' if scheme == 'ssh' else ':port'}"
                            " with no path, query or fragment")
    user = None
    if "@" in rest:
        if scheme != "ssh":
            raise EndpointError("tcp:// takes no user")
        user, _, rest = rest.rpartition("@")
        if ":" in user:
            raise EndpointError("no password in the endpoint: ssh logs in with a key")
        if not _USER.fullmatch(user):
            why = ("starts with '-', which ssh would read as an option" if user.startswith("-")
                   else "is not a user name ([A-Za-z_][A-Za-z0-9._-]*)")
            raise EndpointError(f"the user {short(user)} {why}")
    host_text, port_text = _split_port(rest)
    host = _host(host_text)
    if port_text is None:
        if scheme == "tcp":
            raise EndpointError("tcp:// needs a port (tcp://host:2376)")
        return Endpoint("ssh", host, None, user)
    return Endpoint(scheme, host, _port(port_text), user)
