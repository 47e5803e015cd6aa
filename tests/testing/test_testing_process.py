"""Process mode: the same server in a subprocess, driven through its admin endpoints."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from freshtoken.testing import AuthorizationServer, Client, Fault
from freshtoken.testing._keys import public_key_pem
from freshtoken.testing._process import AdminClient, ServerProcess, serve
from tests.testing._helpers import JWT_BEARER, assertion, bearer, client_auth, token_request


@pytest.fixture(scope="module")
def remote() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(process=True, token_lifetime=30) as server:
        yield server


def test_process_mode_end_to_end(remote: AuthorizationServer, http: httpx.Client) -> None:
    assert "process" in repr(remote)
    remote.reset_counters()
    client = remote.add_client(scopes=["read"])
    response = token_request(http, remote, {"grant_type": "client_credentials"}, client=client)
    assert response.status_code == 200
    assert response.json()["expires_in"] == 30
    token = response.json()["access_token"]
    assert http.get(remote.resource_url, headers=bearer(token)).status_code == 200

    handle = remote.inject(status=503, times=1)
    assert handle.active
    assert (
        token_request(http, remote, {"grant_type": "client_credentials"}, client=client).status_code
        == 503
    )
    assert (handle.hits, handle.remaining) == (1, 0)
    assert handle.cancel() is True
    later = remote.inject(status=503, start=3600)
    remote.clear_faults()
    assert later.state.finished

    minted = remote.issue_token(client_id=client.client_id, lifetime=5)
    assert remote.revoke(minted) is True
    assert http.get(remote.resource_url, headers=bearer(minted)).json()["reason"] == "revoked"
    remote.revoke_client(client.client_id)
    remote.revoke_all()
    assert http.get(remote.resource_url, headers=bearer(token)).json()["reason"] == "revoked"

    remote.add_user("u", "p")
    password = token_request(
        http, remote, {"grant_type": "password", "username": "u", "password": "p"}, client=client
    )
    assert password.status_code == 200
    key = ed25519.Ed25519PrivateKey.generate()
    remote.add_issuer("idp", key.public_key())
    grant = assertion(key, "EdDSA", iss="idp", aud=remote.token_url)
    assert (
        token_request(http, remote, {"grant_type": JWT_BEARER, "assertion": grant}).status_code
        == 200
    )

    counters = remote.counters
    assert counters.token_requests == 4
    assert counters.token_requests_by_client == {client.client_id: 3}
    assert remote.unauthorized == {"revoked": 2}
    remote.reset_counters()
    assert remote.token_requests == 0


def test_process_errors_come_back_as_exceptions(remote: AuthorizationServer) -> None:
    remote.add_client("taken")
    with pytest.raises(ValueError, match="already registered"):
        remote.add_client("taken")


def test_admin_endpoint_is_protected(remote: AuthorizationServer, http: httpx.Client) -> None:
    url = remote.base_url + "/_admin/counters"
    assert http.post(url).status_code == 403
    assert http.post(url, headers={"X-Freshtoken-Admin": "guess"}).status_code == 403
    assert http.get(url).status_code == 403


def test_admin_client_against_a_thread_server(http: httpx.Client) -> None:
    """The control operations over HTTP, measured in-process (coverage does not follow the
    subprocess): the same AdminClient the process mode uses."""
    with AuthorizationServer(admin_key="k") as server:
        admin = AdminClient("127.0.0.1", server.port, "k")
        try:
            client = server.add_client(scopes=["s"])
            admin.add_client(Client.from_dict({**client.to_dict(), "client_id": "via-admin"}))
            admin.add_user("u", "p")
            key = ed25519.Ed25519PrivateKey.generate()
            admin.add_issuer("idp", public_key_pem(key.public_key()))
            fault_id = admin.add_fault(Fault(status=503), 1, 0.0, None)
            assert admin.fault_state(fault_id).remaining == 1
            assert (
                token_request(
                    http, server, {"grant_type": "client_credentials"}, client=client
                ).status_code
                == 503
            )
            assert admin.fault_state(fault_id).hits == 1
            assert admin.cancel_fault(fault_id) is True
            admin.clear_faults()
            token = admin.issue_token(client_id="via-admin", lifetime=5)
            assert http.get(server.resource_url, headers=bearer(token)).status_code == 200
            assert admin.revoke(token) is True
            admin.revoke_client("via-admin")
            admin.revoke_all()
            assert admin.counter_snapshot().token_requests == 1
            admin.reset_counters()
            assert admin.counter_snapshot().token_requests == 0
            with pytest.raises(ValueError, match="already registered"):
                admin.add_client(client)
        finally:
            admin.close()


def test_admin_endpoint_errors(http: httpx.Client) -> None:
    with AuthorizationServer(admin_key="k") as server:
        headers = {"X-Freshtoken-Admin": "k"}
        assert http.get(server.base_url + "/_admin/counters", headers=headers).status_code == 403
        unknown = http.post(server.base_url + "/_admin/frobnicate", headers=headers, json={})
        assert (unknown.status_code, unknown.json()["error"]) == (400, "KeyError")
        bad_json = http.post(server.base_url + "/_admin/counters", headers=headers, content=b"{")
        assert bad_json.status_code == 400
        listed = http.post(server.base_url + "/_admin/clients", headers=headers)
        assert listed.json() == {"result": []}
        server.add_client("c1")
        listed = http.post(server.base_url + "/_admin/clients", headers=headers)
        assert [c["client_id"] for c in listed.json()["result"]] == ["c1"]
        missing = http.post(
            server.base_url + "/_admin/add_user", headers=headers, json={"username": "x"}
        )
        assert missing.json()["error"] == "TypeError"


def test_server_process_stops_when_stdin_closes() -> None:
    server = AuthorizationServer(process=True).start()
    process = server._remote.process
    server.stop()
    assert process.returncode == 0
    assert not server.running
    with pytest.raises(RuntimeError, match="not running"):
        server.add_client()


def test_spawn_failure_is_reported(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError, match="exited with code"):
        ServerProcess.spawn(host="127.0.0.1", port=0, config={"token_lifetime": -1})
    assert "token_lifetime" in capfd.readouterr().err


def test_serve_protocol_in_process() -> None:
    """``serve`` (the child's main): settings in, port out, serve until stdin's EOF."""
    read_fd, write_fd = os.pipe()
    settings = {"host": "127.0.0.1", "port": 0, "admin_key": "k", "config": {"token_lifetime": 9}}
    stdout = io.StringIO()
    with os.fdopen(read_fd, "r") as stdin, os.fdopen(write_fd, "w") as feed:
        feed.write(json.dumps(settings) + "\n")
        feed.flush()
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(serve(stdin, stdout)))
        thread.start()
        while not stdout.getvalue():
            thread.join(0.01)
        port = json.loads(stdout.getvalue())["port"]
        with httpx.Client() as http:
            counters = http.post(
                f"http://127.0.0.1:{port}/_admin/counters", headers={"X-Freshtoken-Admin": "k"}
            )
        assert counters.json()["result"]["token_requests"] == 0
        feed.close()
        thread.join()
    assert result == [0]


def test_process_add_client_with_given_credentials(
    remote: AuthorizationServer, http: httpx.Client
) -> None:
    client = remote.add_client(
        "pc", "s:e+c%r", auth_methods=["client_secret_basic"], token_lifetime=2
    )
    response = http.post(
        remote.token_url, data={"grant_type": "client_credentials"}, headers=client_auth(client)
    )
    assert response.json()["expires_in"] == 2
