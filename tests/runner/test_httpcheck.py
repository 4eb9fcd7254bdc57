"""HTTP checks never follow a redirect: a real server on loopback answers 3xx toward another port,
where a second real server records every request it gets (the key must never arrive there)."""

import pytest
from loopback_http import Quiet, recorder, serving, url

from vllmgen.runner.http import DirectHttp


@pytest.fixture
def attacker():
    handler = recorder()
    with serving(handler) as server:
        yield server, handler.seen


@pytest.fixture
def redirector(attacker):
    target = f"http://127.0.0.1:{attacker[0].server_address[1]}/v1/models"

    class Handler(Quiet):
        def do_GET(self):  # noqa: N802
            self.send_response(int(self.path.rsplit("/", 1)[-1]))
            self.send_header("Location", target)
            self.end_headers()

        do_POST = do_GET

    with serving(Handler) as server:
        yield url(server)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_redirect_is_reported_and_never_followed_with_the_key(redirector, attacker, code, method):
    result = DirectHttp().request(method, f"{redirector}/redirect/{code}", {"Authorization": "Bearer the-deployments-key"},
                          body={"x": 1} if method == "POST" else None, timeout=5)
    assert result.status == code
    assert "not followed" in result.body and f":{attacker[0].server_address[1]}/" in result.body
    assert attacker[1] == []  # nothing reached the other server, with or without the key


def test_the_recorder_does_record(attacker):  # the check above could not pass by a deaf recorder
    port = attacker[0].server_address[1]
    result = DirectHttp().request("GET", f"http://127.0.0.1:{port}/v1/models", {"Authorization": "Bearer k"}, timeout=5)
    assert result.status == 200 and attacker[1][0]["Authorization"] == "Bearer k"
