"""Network checks on the H100's recorded interfaces."""

from __future__ import annotations

import json
import socket

from doctor_fixtures import H100, live_tables, text

from vllmgen.doctor import network
from vllmgen.doctor.probe import LiveProbe


def interfaces() -> network.Interfaces:
    return network.parse_addresses(json.loads(text(H100 / "interfaces.json")))


def test_if_inet6_parser_agrees_with_getifaddrs():
    v6 = network.parse_if_inet6(text(H100 / "proc_net_if_inet6.txt"))
    recorded = json.loads(text(H100 / "interfaces.json"))
    for name, addrs in v6.items():
        assert sorted(addrs) == sorted(a for a in recorded[name] if ":" in a)
    assert v6["lo"] == ["::1/128"]


def test_net_dir_listing_matches_interfaces():
    names = network.parse_net_dir(text(H100 / "sys_class_net.txt"))
    assert names == ["eth0", "ifb0", "ifb1", "lo"] == sorted(interfaces())


def test_ioctl_cross_check_agrees_on_ipv4():
    for line in text(H100 / "ioctl_ipv4.txt").splitlines():
        name, addr, *rest = line.split()
        v4 = [str(a.ip) for a in interfaces()[name] if a.version == 4]
        assert v4 == ([] if addr == "-" else [addr])


def test_node_address():
    assert network.check_address_local("192.0.2.2", interfaces()).detail == "192.0.2.2 is on eth0"
    r = network.check_address_local("1.2.3.4", interfaces())  # the seed's head address
    assert r.status == "fail"
    assert r.detail == "1.2.3.4 is not on any local interface (have: eth0 192.0.2.2/24, ifb0, ifb1, lo 127.0.0.1/8)"
    assert network.check_address_local("fd00::2", interfaces()).status == "ok"
    assert network.check_address_local("not-an-ip", interfaces()).status == "fail"


def test_data_nic():
    assert network.check_data_nic("eth0", "192.0.2.0/24", interfaces()).status == "ok"
    assert network.check_data_nic("eth0", None, interfaces()).status == "ok"
    wrong = network.check_data_nic("eth0", "10.77.0.0/24", interfaces())
    assert wrong.status == "fail" and wrong.detail == "eth0 has 192.0.2.2/24, none in 10.77.0.0/24"
    absent = network.check_data_nic("ib0", None, interfaces())
    assert absent.status == "fail" and absent.detail == "no interface ib0 (have: eth0, ifb0, ifb1, lo)"
    assert network.check_data_nic("ifb0", None, interfaces()).status == "fail"  # no address


def test_ports_free_and_busy_as_recorded_on_the_h100():
    ports = {int(p): e for p, e in json.loads(text(H100 / "ports.json")).items()}
    assert network.check_ports_free(ports).detail == "free: 6379, 8000, 29500"
    [(_, busy_run)] = [r for r in live_tables() if "--port 1150" in r[0]]
    [(status, _, detail)] = [row for row in busy_run if row[1] == "net.ports_free"]
    error = detail.split("1150: ", 1)[1]
    assert status == "FAIL" and error == "[Errno 98] Address already in use"
    r = network.check_ports_free({1150: error, 8000: None})
    assert r.status == "fail" and r.detail == "in use: 1150: [Errno 98] Address already in use"
    assert network.check_ports_free({}).status == "skip"


def test_live_probe_sees_a_bound_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert "Address already in use" in LiveProbe().port_error("127.0.0.1", port)


def test_infiniband_on_the_h100_is_empty():
    devices = text(H100 / "infiniband.txt").split() or None
    assert devices is None  # /sys/class/infiniband exists there but holds nothing
    r = network.check_infiniband(["mlx5"], devices)
    assert r.status == "fail" and "rdma" in r.fix.lower()
    assert network.check_infiniband([], devices).status == "skip"


def test_infiniband_matching_follows_nccl_ib_hca():
    devices = ["mlx5_0", "mlx5_1"]  # names as mlx5_ib creates them; no IB hardware was at hand
    assert network.check_infiniband(["mlx5"], devices).status == "ok"
    assert network.check_infiniband(["=mlx5_0:1"], devices).status == "ok"
    assert network.check_infiniband(["=mlx5"], devices).status == "fail"
    assert network.check_infiniband(["mlx4"], devices).status == "fail"
