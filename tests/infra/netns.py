"""Hosts on one machine: network namespaces on one bridge, private addresses only.

Each test host is a namespace with loopback up and, when there are several, an interface named
``vg0`` with 10.77.<net>.<i+1>/24, cabled to a bridge that lives in a namespace of its own (the
"switch"): nothing is created in the root namespace, not even for a moment (every veth pair is
made inside the switch, its peer end born in the host's namespace). Names carry the test process
id, so parallel sessions never meet. Removing the namespaces removes their interfaces.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

NIC = "vg0"
BRIDGE = "br0"


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


@dataclass
class Hosts:
    names: list[str]
    addresses: list[str]
    created: list[str] = field(default_factory=list)

    def path(self, index: int) -> str:
        return f"/var/run/netns/{self.names[index]}"

    def remove(self) -> None:
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.created.clear()


def make_hosts(count: int, *, net: int = 0, tag: str = "") -> Hosts:
    """``count`` namespaces; with two or more, all on one bridge (10.77.<net>.1, .2, ...)."""
    if not 1 <= count <= 200:
        raise ValueError("1 to 200 hosts")
    base = f"vg{os.getpid() % 100000}{tag}"
    names = [f"{base}h{i}" for i in range(count)]
    addresses = [f"10.77.{net}.{i + 1}" for i in range(count)] if count > 1 else ["127.0.0.1"]
    hosts = Hosts(names, addresses)
    try:
        for name in names:
            _ip("netns", "add", name)
            hosts.created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        if count > 1:
            switch = f"{base}sw"
            _ip("netns", "add", switch)
            hosts.created.append(switch)
            _ip("-n", switch, "link", "add", BRIDGE, "type", "bridge")
            _ip("-n", switch, "link", "set", BRIDGE, "up")
            for index, name in enumerate(names):
                port = f"p{index}"
                _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", NIC, "netns", name)
                _ip("-n", switch, "link", "set", port, "master", BRIDGE)
                _ip("-n", switch, "link", "set", port, "up")
                _ip("-n", name, "addr", "add", f"{addresses[index]}/24", "dev", NIC)
                _ip("-n", name, "link", "set", NIC, "up")
    except BaseException:
        hosts.remove()
        raise
    return hosts
