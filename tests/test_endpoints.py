"""nodes[].docker_host is parsed strictly: nothing ssh could read as an option gets through."""

import pytest

from vllmgen.spec.endpoints import Endpoint, EndpointError, parse


@pytest.mark.parametrize(("text", "expected"), [
    ("ssh://root@192.0.2.1", Endpoint("ssh", "192.0.2.1", None, "root")),
    ("ssh://gpu-1.example.com:2222", Endpoint("ssh", "gpu-1.example.com", 2222, None)),
    ("ssh://ops@[2001:db8::1]:22", Endpoint("ssh", "2001:db8::1", 22, "ops")),
    ("tcp://192.0.2.7:2376", Endpoint("tcp", "192.0.2.7", 2376)),
    ("unix:///var/run/docker.sock", Endpoint("unix", path="/var/run/docker.sock")),
])
def test_accepted(text: str, expected: Endpoint) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "why"), [
    ("ssh://-oProxyCommand=touch X@127.0.0.1", "the user '-oProxyCommand=touch X' starts with '-'"),
    ("ssh://-oProxyCommand=x", "the host '-oProxyCommand=x' starts with '-'"),
    ("ssh://root@-p", "the host '-p' starts with '-'"),
    ("ssh://root:pw@192.0.2.1", "no password"),
    ("ssh://root@192.0.2.1:0", "the port '0'"),
    ("ssh://root@192.0.2.1:22 -v", "the port '22 -v'"),
    ("ssh://root@host name", "is not a hostname"),
    ("ssh://root@192.0.2.1/x", "no path"),
    ("tcp://192.0.2.1", "needs a port"),
    ("tcp://u@192.0.2.1:2376", "takes no user"),
    ("http://192.0.2.1:2375", "expected ssh://"),
    ("unix://relative.sock", "absolute"),
    ("ssh://root@192.0.2.300", "not a hostname or an IP address"),
])
def test_refused(text: str, why: str) -> None:
    with pytest.raises(EndpointError, match=__import__("re").escape(why)):
        parse(text)
