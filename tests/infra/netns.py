"""Hosts on one machine: network namespaces joined by veth pairs, private addresses only.

Each test host is a namespace with loopback up and, when it has peers, an interface named
``vg0`` on 10.77.<net>.0/24. Names carry the test process id, so parallel sessions never meet.
Removing a namespace removes its interfaces; nothing outside the namespaces is changed.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

NIC = "vg0"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Hosts:
    names: list[str]
    addresses: list[str]
    created: list[str] = field(default_factory=list)

    def path(self, index: int) -> str:
        return f"/var/run/netns/{self.names[index]}"

    def remove(self) -> None:
        for name in self.created:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.created.clear()


def make_hosts(count: int, *, net: int = 0, tag: str = "") -> Hosts:
    """``count`` namespaces; with two, a veth pair between them (10.77.<net>.1 and .2)."""
    if count > 2:
        raise ValueError("two hosts at most (one veth pair)")
    base = f"vg{os.getpid() % 100000}{tag}"
    names = [f"{base}h{i}" for i in range(count)]
    addresses = [f"10.77.{net}.{i + 1}" for i in range(count)] if count == 2 else ["127.0.0.1"]
    hosts = Hosts(names, addresses)
    try:
        for name in names:
            _ip("netns", "add", name)
            hosts.created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        if count == 2:
            a, b = f"{base}a", f"{base}b"  # at most 15 characters
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            for index, end in enumerate((a, b)):
                _ip("link", "set", end, "netns", names[index])
                _ip("-n", names[index], "link", "set", end, "name", NIC)
                _ip("-n", names[index], "addr", "add", f"{addresses[index]}/24", "dev", NIC)
                _ip("-n", names[index], "link", "set", NIC, "up")
    except BaseException:
        hosts.remove()
        raise
    return hosts
