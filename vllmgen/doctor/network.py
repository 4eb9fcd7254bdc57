"""Network checks: the node's address is local, the data NIC holds its subnet, ports are free, IB HCAs exist.

Interface addresses arrive as {name: ["192.0.2.5/24", "fe80::1/64", ...]}, which `probe.py` reads
with ioctl (IPv4) and /proc/net/if_inet6 (IPv6), since GPU hosts may have no `ip` command.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from vllmgen.doctor.checks import CheckResult, fail, ok, skip, warn

IfAddr = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Interfaces = dict[str, list[IfAddr]]

IB_FIX = (
    "install the RDMA stack (rdma-core or MLNX_OFED/DOCA) and load the HCA driver (mlx5_ib), "
    "or drop the HCAs from the spec so NCCL uses TCP sockets"
)


def parse_addresses(raw: Mapping[str, Sequence[str]]) -> Interfaces:
    """{'eth0': ['192.0.2.5/24']} -> {'eth0': [IPv4Interface('192.0.2.5/24')]}; bad entries are dropped."""
    out: Interfaces = {}
    for name, addrs in raw.items():
        parsed = []
        for a in addrs:
            try:
                parsed.append(ipaddress.ip_interface(a))
            except ValueError:
                continue
        out[name] = parsed
    return out


def parse_if_inet6(text: str) -> dict[str, list[str]]:
    """/proc/net/if_inet6 rows: address (32 hex), ifindex, prefix length (hex), scope, flags, name."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) != 6 or len(cols[0]) != 32:
            continue
        addr = ipaddress.IPv6Address(int(cols[0], 16))
        out.setdefault(cols[5], []).append(f"{addr}/{int(cols[2], 16)}")
    return out


def parse_net_dir(text: str) -> list[str]:
    """`ls /sys/class/net` (one name per line or space-separated) -> sorted names."""
    return sorted(text.split())


def _describe(interfaces: Interfaces) -> str:
    parts = []
    for name in sorted(interfaces):
        v4 = [str(a) for a in interfaces[name] if a.version == 4]
        parts.append(f"{name} {' '.join(v4)}".strip())
    return ", ".join(parts) or "none"


def check_address_local(address: str, interfaces: Interfaces) -> CheckResult:
    name = "net.node_address"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return fail(name, f"{address!r} is not an IP address", "give the node's IP address in the spec")
    for nic, addrs in sorted(interfaces.items()):
        if any(a.ip == ip for a in addrs):
            return ok(name, f"{ip} is on {nic}")
    return fail(
        name,
        f"{ip} is not on any local interface (have: {_describe(interfaces)})",
        "run doctor on the node the address belongs to, or fix the node's address in the spec",
    )


def check_data_nic(nic: str, subnet: str | None, interfaces: Interfaces) -> CheckResult:
    """The NIC that GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME will name, and its subnet."""
    name = "net.data_nic"
    if nic not in interfaces:
        return fail(
            name,
            f"no interface {nic} (have: {', '.join(sorted(interfaces)) or 'none'})",
            "set the node's data NIC in the spec to one of the interfaces above",
        )
    v4 = [a for a in interfaces[nic] if a.version == 4]
    if subnet is None:
        if v4:
            return ok(name, f"{nic} has {', '.join(map(str, v4))}")
        return fail(name, f"{nic} has no IPv4 address", f"configure an address on {nic}")
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return fail(name, f"{subnet!r} is not a subnet", "write the subnet as CIDR, e.g. 192.0.2.0/24")
    inside = [a for a in interfaces[nic] if a.version == net.version and a.ip in net]
    if inside:
        return ok(name, f"{nic} has {', '.join(map(str, inside))} in {net}")
    have = ", ".join(map(str, v4)) or "no IPv4 address"
    return fail(
        name,
        f"{nic} has {have}, none in {net}",
        f"pick the NIC that carries {net}, or fix the subnet in the spec",
    )


def check_ports_free(results: Mapping[int, str | None]) -> CheckResult:
    """`results` maps each port to None (bind worked) or the bind error text."""
    name = "net.ports_free"
    if not results:
        return skip(name, "no ports to check")
    busy = {p: err for p, err in sorted(results.items()) if err}
    if busy:
        listed = "; ".join(f"{p}: {err}" for p, err in busy.items())
        return fail(
            name,
            f"in use: {listed}",
            "stop what listens there (ss -ltnp shows it) or move the spec's ports",
        )
    return ok(name, f"free: {', '.join(map(str, sorted(results)))}")


def _hca_name(entry: str) -> tuple[str, bool]:
    # NCCL_IB_HCA syntax: "mlx5" is a prefix, "=mlx5_0" is exact, ":1" names a port.
    exact = entry.startswith("=")
    return entry.lstrip("=^").split(":")[0], exact


def check_infiniband(expected_hcas: Sequence[str], devices: Sequence[str] | None) -> CheckResult:
    """Each declared HCA (NCCL_IB_HCA style) matches a device in /sys/class/infiniband."""
    name = "net.infiniband"
    wanted = [h for h in expected_hcas if h and not h.startswith("^")]
    if not wanted:
        return skip(name, "no HCAs declared")
    if not devices:
        return fail(name, f"HCAs {', '.join(wanted)} declared, but /sys/class/infiniband is empty or absent", IB_FIX)
    missing = []
    for entry in wanted:
        hca, exact = _hca_name(entry)
        if not any(d == hca if exact else d.startswith(hca) for d in devices):
            missing.append(entry)
    if missing:
        return fail(name, f"no device for {', '.join(missing)} (have: {', '.join(devices)})", IB_FIX)
    return ok(name, f"{', '.join(devices)} match {', '.join(wanted)}")


def check_hostname_resolution(hostname: str | None, resolved: Sequence[str] | None, multi_node: bool,
                              nic_pinned: bool) -> CheckResult:
    """Gloo, torch.distributed and vLLM's DP group fall back to the address the host name resolves to;
    Debian's /etc/hosts maps it to 127.0.1.1, and the group then splits (a known vLLM failure)."""
    name = "net.hostname"
    if not multi_node:
        return skip(name, "one node: nothing connects across hosts")
    if hostname is None or resolved is None:
        return skip(name, "host name not resolved here")
    loopback = [a for a in resolved if a.startswith("127.") or a == "::1"]
    if not loopback or len(loopback) < len(resolved):
        return ok(name, f"{hostname} resolves to {', '.join(resolved)}")
    detail = f"{hostname} resolves only to loopback ({', '.join(resolved)})"
    fix = f"map {hostname} to this node's address in /etc/hosts (not 127.0.1.1)"
    if nic_pinned:
        return warn(name, detail + "; vllmgen pins VLLM_HOST_IP and GLOO_SOCKET_IFNAME, other tools may not", fix)
    return fail(name, detail + ": with no data NIC set, Gloo and the DP group pick it and split", fix
                + ", or set cluster.nic")
