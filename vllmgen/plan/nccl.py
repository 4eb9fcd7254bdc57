"""The transport NCCL chose, read back from an engine's log (``NCCL_DEBUG=INFO``). Pure.

NCCL logs one line per channel and peer once a communicator is set up, e.g.

    host:123:456 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM
    host:123:456 [1] NCCL INFO Channel 00/0 : 1[1] -> 0[0] [send] via NET/Socket/0
    host:123:456 [0] NCCL INFO Channel 00/0 : 2[2] -> 0[0] [receive] via NET/IB/0/GDRDMA

and which network it found (``NET/IB : No device found``, ``NET/Socket : Using [0]lo:127.0.0.1``).
``transports`` reduces them to one transport per (rank, peer) pair: P2P/CUMEM, P2P/IPC, P2P/direct
pointer, SHM, NET/IB, NET/Socket. ``warnings`` says when a deployment with InfiniBand HCAs in its
spec fell back to sockets between nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHANNEL = re.compile(
    r"NCCL INFO Channel \d+/\d+ : (?P<src>\d+)\[[^\]]*\] -> (?P<dst>\d+)\[[^\]]*\]"
    r"(?: \[(?:send|receive)\])? via (?P<via>\S+)"
)
_NET = re.compile(r"NCCL INFO NET/(?P<net>IB|Socket) : (?P<what>.*)$")
_VERSION = re.compile(r"NCCL version (?P<version>\S+)")


@dataclass(frozen=True)
class Link:
    src: int
    dst: int
    transport: str  # P2P/CUMEM, P2P/IPC, SHM, NET/IB, NET/Socket, ...


@dataclass(frozen=True)
class NcclReport:
    version: str | None
    links: tuple[Link, ...]
    networks: tuple[str, ...]  # "IB: No device found", "Socket: Using [0]lo:127.0.0.1"

    @property
    def transports(self) -> tuple[str, ...]:
        return tuple(sorted({link.transport for link in self.links}))

    def summary(self) -> str:
        if not self.links:
            return "NCCL: no channel lines in the log (one GPU, or NCCL_DEBUG=INFO not set)"
        pairs = ", ".join(f"{l.src}->{l.dst} {l.transport}" for l in self.links)
        head = f"NCCL {self.version}" if self.version else "NCCL"
        return f"{head}: {pairs}" + (f" ({'; '.join(self.networks)})" if self.networks else "")


def _transport(via: str) -> str:
    """'P2P/CUMEM/read' -> 'P2P/CUMEM', 'NET/IB/0/GDRDMA' -> 'NET/IB', 'SHM/direct/direct' -> 'SHM'."""
    parts = via.split("/")
    if parts[0] in ("P2P", "NET") and len(parts) > 1:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def parse(log: str) -> NcclReport:
    links: dict[tuple[int, int], str] = {}
    networks: list[str] = []
    version = None
    for line in log.splitlines():
        if "NCCL" not in line:
            continue
        if version is None and (found := _VERSION.search(line)):
            version = found["version"]
        if found := _CHANNEL.search(line):
            links.setdefault((int(found["src"]), int(found["dst"])), _transport(found["via"]))
        elif found := _NET.search(line):
            text = f"{found['net']}: {found['what'].strip()}"
            if text not in networks:
                networks.append(text)
    return NcclReport(version, tuple(Link(s, d, t) for (s, d), t in sorted(links.items())), tuple(networks))


def warnings(report: NcclReport, *, multi_node: bool, ib_hcas: bool) -> list[str]:
    if multi_node and ib_hcas and "NET/Socket" in report.transports:
        return ["NCCL fell back to sockets (NET/Socket) although the spec names InfiniBand HCAs: check the "
                "HCA names (NCCL_IB_HCA), /dev/infiniband and the IB link state (ibstat)"]
    return []
