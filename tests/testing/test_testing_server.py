"""Server lifecycle, discovery, JWKS, revocation endpoint, and the HTTP/1.1 layer."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from freshtoken.testing import AuthorizationServer, FakeClock
from freshtoken.testing._http import HttpServer, Request, Response
from tests.testing._helpers import bearer, client_auth, get_token, token_request


def test_lifecycle_and_addresses() -> None:
    server = AuthorizationServer()
    assert "stopped" in repr(server)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
    before = threading.active_count()
    with server:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.issuer == server.base_url == server.audience
        assert server.token_url.endswith("/token")
        assert server.jwks_url.endswith("/jwks.json")
        assert server.resource_url.endswith("/api/resource")
        assert server.revocation_url.endswith("/revoke")
        assert "thread" in repr(server)
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        with pytest.raises(LookupError):
            _ = server.client
    server.stop()  # idempotent
    assert threading.active_count() == before
    assert "stopped" in repr(server)


def test_server_threads_are_daemons() -> None:
    with AuthorizationServer():
        names = [t for t in threading.enumerate() if t.name.startswith("freshtoken-testing")]
        assert names
        assert all(t.daemon for t in names)


def test_port_in_use_raises() -> None:
    with AuthorizationServer() as first:
        clash = AuthorizationServer(port=first.port)
        with pytest.raises(OSError):
            clash.start()
        assert not clash.running


def test_fixed_port_can_be_reused_after_stop() -> None:
    with AuthorizationServer() as first:
        port = first.port
    with AuthorizationServer(port=port) as second:
        assert second.port == port


def test_process_mode_refuses_a_clock() -> None:
    with pytest.raises(ValueError, match="clock"):
        AuthorizationServer(process=True, clock=FakeClock())


def test_discovery_documents(server: AuthorizationServer, http: httpx.Client) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        document = http.get(server.base_url + path).json()
        assert document["issuer"] == server.issuer
        assert document["token_endpoint"] == server.token_url
        assert document["jwks_uri"] == server.jwks_url
        assert "client_credentials" in document["grant_types_supported"]
        assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    jwks = http.get(server.jwks_url).json()
    assert [k["kty"] for k in jwks["keys"]] == ["EC"]
    assert "d" not in jwks["keys"][0]


def test_unknown_path_is_404(server: AuthorizationServer, http: httpx.Client) -> None:
    response = http.get(server.base_url + "/nope")
    assert response.status_code == 404
    assert "date" in response.headers
    assert http.post(server.base_url + "/_admin/counters").status_code == 404


def test_revocation_endpoint(server: AuthorizationServer, http: httpx.Client) -> None:
    mine, theirs = server.add_client(), server.add_client()
    token = get_token(http, server, mine)
    other = get_token(http, server, theirs)
    denied = http.post(server.revocation_url, data={"token": other}, headers=client_auth(mine))
    assert denied.status_code == 200
    assert http.get(server.resource_url, headers=bearer(other)).status_code == 200
    revoked = http.post(server.revocation_url, data={"token": token}, headers=client_auth(mine))
    assert revoked.status_code == 200
    assert http.get(server.resource_url, headers=bearer(token)).json()["reason"] == "revoked"
    assert (
        http.post(
            server.revocation_url, data={"token": "junk"}, headers=client_auth(mine)
        ).status_code
        == 200
    )
    server.add_user("u", "p")
    refresh = token_request(
        http, server, {"grant_type": "password", "username": "u", "password": "p"}, client=mine
    ).json()["refresh_token"]
    assert (
        http.post(
            server.revocation_url, data={"token": refresh}, headers=client_auth(mine)
        ).status_code
        == 200
    )
    again = token_request(
        http, server, {"grant_type": "refresh_token", "refresh_token": refresh}, client=mine
    )
    assert again.json()["error"] == "invalid_grant"
    assert http.post(server.revocation_url, data={}, headers=client_auth(mine)).status_code == 400
    assert http.post(server.revocation_url, data={"token": token}).status_code == 401
    assert http.get(server.revocation_url).status_code == 405
    no_client = server.issue_token(claims={"client_id": 5})
    assert (
        http.post(
            server.revocation_url, data={"token": no_client}, headers=client_auth(mine)
        ).status_code
        == 200
    )


# -- the HTTP layer --------------------------------------------------------------------------


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_chunked_request_body(server: AuthorizationServer) -> None:
    token = server.issue_token()
    request = (
        f"POST /api/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    ).encode()
    response = raw_exchange(server.port, request)
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert b'"body_length":11' in response
    assert b"Connection: close" in response


def test_chunked_body_streamed_by_httpx(server: AuthorizationServer, http: httpx.Client) -> None:
    token = server.issue_token()

    def body() -> object:
        yield b"abc"
        yield b"defg"

    response = http.post(server.resource_url, content=body(), headers=bearer(token))  # type: ignore[arg-type]
    assert response.json()["body_length"] == 7


def test_expect_continue_and_http10(server: AuthorizationServer) -> None:
    continued = raw_exchange(
        server.port,
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nhi",
    )
    assert continued.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401")
    http10 = raw_exchange(server.port, b"GET /api/x HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in http10
    head = raw_exchange(server.port, b"HEAD /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert head.endswith(b"\r\n\r\n")


def test_keep_alive_serves_many_requests_on_one_connection(server: AuthorizationServer) -> None:
    request = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 404")
    http10 = b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(http10)
            assert b"Connection: close" not in sock.recv(65536)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / SPDY/3\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nno-colon-here\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n bad: indent\r\n\r\n", b"400"),
        (b"POST /api/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
        (b"POST /api/x HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),
        (b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
        (b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        (b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX", b"400"),
        (b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFF\r\n", b"413"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
    ],
)
def test_bad_requests(server: AuthorizationServer, request_bytes: bytes, status: bytes) -> None:
    response = raw_exchange(server.port, request_bytes)
    assert response.startswith(b"HTTP/1.1 " + status), response[:80]


def test_client_closing_mid_request_is_harmless(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    for data in (b"POST /api/x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", b"GET / HT", b""):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(data)
    assert http.get(server.jwks_url).status_code == 200


def test_handler_errors_become_500(
    server: AuthorizationServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshtoken.testing._app import ServerCore

    core = server._core
    assert isinstance(core, ServerCore)

    def boom(request: Request) -> Response:
        raise RuntimeError("bug")

    monkeypatch.setattr(core.resource, "handle", boom)
    response = http.get(server.resource_url)
    assert (response.status_code, response.json()) == (500, {"error": "server_error"})


def test_http_server_answers_500_when_the_handler_raises() -> None:
    async def handler(request: Request) -> Response | None:
        raise RuntimeError("bug")

    http_server = HttpServer(handler)
    http_server.start()
    try:
        with pytest.raises(RuntimeError, match="already"):
            http_server.start()
        assert http_server.loop.is_running()
        with httpx.Client() as http:
            assert http.get(f"http://127.0.0.1:{http_server.port}/").status_code == 500
    finally:
        http_server.stop()
    http_server.stop()


def test_stop_closes_idle_keep_alive_connections(server: AuthorizationServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        sock.sendall(b"GET /nope HTTP/1.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 404")
        server.stop()
        assert sock.recv(65536) == b""
    finally:
        sock.close()


def test_request_helpers() -> None:
    request = Request("GET", "/a?b=1&b=2&c=", "HTTP/1.1", {"x-y": "z"})
    assert (request.path, request.query, request.header("X-Y")) == (
        "/a",
        {"b": ["1", "2"], "c": [""]},
        "z",
    )
    response = Response(200, headers=[("A", "1"), ("a", "2")])
    response.set_header("A", "3")
    assert (response.headers, response.get_header("a"), response.get_header("b")) == (
        [("A", "3")],
        "3",
        None,
    )
    assert Request("GET", "", "HTTP/1.1", {}).path == "/"
