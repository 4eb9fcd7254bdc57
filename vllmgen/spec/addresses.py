"""Node addresses: IPv4, IPv6 (with an optional %scope naming an interface) or a hostname.

One place that knows the three forms, so the spec checks them, the rules compare them in a
canonical form (``fd00::1`` is ``fd00:0:0::0001``), and every URL or ``host:port`` built from
one brackets an IPv6 address.
"""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_ifname(value: str) -> bool:
    return IFNAME.fullmatch(value) is not None and value not in {".", ".."}


def parse_ip(value: str) -> IP | None:
    """The address ``value`` writes, or None when it is not an IP address (a scope id must be
    an interface name: Python's parser accepts any text there)."""
    if not value or not (value[0].isalnum() or value[0] == ":"):
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    scope = getattr(address, "scope_id", None)
    if scope is not None and not is_ifname(scope):
        return None
    return address


def is_hostname(value: str) -> bool:
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if len(value) > 253 or all(label.isdigit() for label in labels):  # 192.0.2.300: a bad IP
        return False
    return all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


def canonical(value: str) -> str:
    """One spelling per address: the compressed IP (with its scope), or the lower-case hostname."""
    address = parse_ip(value)
    if address is None:
        return value.lower().rstrip(".")
    return str(address)


def url_host(value: str) -> str:
    """``value`` as the host part of a URL or ``host:port``: IPv6 in brackets."""
    address = parse_ip(value)
    return f"[{value}]" if address is not None and address.version == 6 else value


def host_port(value: str, port: int) -> str:
    return f"{url_host(value)}:{port}"
