"""Token requests over HTTP at their edges (issue 13, items 2, 5, 6 and 9).

Each test runs against a real server on 127.0.0.1 and is bounded: a regression fails it instead
of hanging the suite.
"""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import freshtoken as ft
from freshtoken._http_auth.authflow import OriginScope
from freshtoken._oauth.discovery import check_url
from freshtoken._oauth.http import HttpRequest, TransportFailure, is_loopback
from freshtoken._oauth.sender import send_async, send_sync
from freshtoken.testing import AuthorizationServer, Fault

from .conftest import FAST, run

# -- item 2: fork ---------------------------------------------------------------------------

CHILDREN = 6
CHILD_LIMIT = 20.0  # seconds the parent waits for all children before failing


def _child(manager: ft.TokenManager, write_end: int, start_at: float) -> None:
    """In a forked child: fetch a fresh token, report its fingerprint (or the error) on the pipe."""
    signal.alarm(int(CHILD_LIMIT))  # a hung child dies instead of outliving the test
    try:
        manager.invalidate(manager.get())
        time.sleep(max(0.0, start_at - time.monotonic()))  # all children at once
        line = f"ok {manager.get().fingerprint}"
    except BaseException as error:  # reported, not raised: this is a child process
        line = f"error {type(error).__name__}"
    os.write(write_end, (line + "\n").encode())
    os._exit(0)


def _collect(read_end: int, pids: list[int]) -> list[str]:
    """Every child's line, waiting at most CHILD_LIMIT; children still running are killed."""
    data = b""
    ends_at = time.monotonic() + CHILD_LIMIT
    while data.count(b"\n") < len(pids) and time.monotonic() < ends_at:
        ready, _, _ = select.select([read_end], [], [], max(0.0, ends_at - time.monotonic()))
        if not ready:
            break
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        data += chunk
    for pid in pids:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return data.decode().splitlines()


def test_forked_children_each_open_their_own_connection() -> None:
    with AuthorizationServer(token_lifetime=3600) as server:
        client = server.add_client()
        grant = ft.ClientCredentials(
            server.token_url, client.client_id, client.client_secret, timeout=5
        )
        with ft.TokenManager(grant, policy=FAST) as manager:
            manager.get()  # the parent's kept-alive connection, inherited by every child
            before = server.token_requests
            server.inject(latency=0.3)  # answers overlap: a shared socket would interleave them
            read_end, write_end = os.pipe()
            start_at = time.monotonic() + 0.5
            pids = []
            for _ in range(CHILDREN):
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the child; its result is checked
                    os.close(read_end)
                    _child(manager, write_end, start_at)
                pids.append(pid)
            os.close(write_end)
            try:
                lines = _collect(read_end, pids)
            finally:
                os.close(read_end)
            server.clear_faults()
            assert manager.get()  # the parent's own connection still works
    assert len(lines) == CHILDREN, lines
    assert all(line.startswith("ok ") for line in lines), lines
    assert len({line.split()[1] for line in lines}) == CHILDREN  # each child its own token
    assert server.counters.token_requests_by_grant.get("client_credentials", 0) >= CHILDREN
    assert server.token_requests - before >= CHILDREN


def test_a_child_recreates_its_lock_and_clients() -> None:
    """A lock held at fork time (by another thread of the parent) would block the child."""
    grant = ft.ClientCredentials("https://idp.example/token", "id", "secret")
    parent_client = grant._clients.sync_client()
    grant._clients._lock.acquire()  # as if a parent thread were inside sync_client()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        signal.alarm(10)
        fresh = grant._clients.sync_client() is not parent_client
        os.write(write_end, b"fresh" if fresh else b"inherited")
        os._exit(0)
    grant._clients._lock.release()
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 10.0)
        answer = os.read(read_end, 64) if ready else b"timeout"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    grant.close()
    assert answer == b"fresh"


# -- item 5: max_wait is an overall deadline ------------------------------------------------

BODY = b'{"access_token":"slow-token","token_type":"Bearer","expires_in":3600}'


class DripServer:
    """Answers every request with a valid token response, dripped one byte every ``gap`` s.

    ``sent`` counts the body bytes that went out before the client hung up."""

    def __init__(self, gap: float = 0.1) -> None:
        self.gap = gap
        self.sent = 0
        self.hung_up = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DripServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                self._drip(conn)

    def _drip(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        conn.recv(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        try:
            conn.sendall(head % len(BODY))
            for byte in BODY:
                if self._stop.wait(self.gap):
                    return
                conn.sendall(bytes([byte]))
                self.sent += 1
        except OSError:
            self.hung_up.set()
            return
        # the whole body went out: the client never cut it off


@pytest.fixture
def drip() -> Iterator[DripServer]:
    with DripServer() as server:
        yield server


MAX_WAIT = 1.0
SLACK = 2.0  # generous: the point is "about max_wait", not the ~7 s the drip takes
DRIP = 0.05  # seconds between body bytes: a token response takes several seconds


def _dripping_manager(server: AuthorizationServer) -> ft.TokenManager:
    client = server.add_client()
    server.inject(Fault.dripping(DRIP))
    policy = ft.RefreshPolicy(max_wait=MAX_WAIT, backoff_initial=0.001, backoff_max=0.005)
    grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
    return ft.TokenManager(grant, policy=policy)


def test_a_dripping_endpoint_cannot_hold_get_past_max_wait(server: AuthorizationServer) -> None:
    with _dripping_manager(server) as manager:
        started = time.monotonic()
        with pytest.raises(ft.TokenEndpointUnavailable):
            manager.get()
        waited = time.monotonic() - started
    assert waited < MAX_WAIT + SLACK
    assert server.counters.tokens_issued >= 1  # the server answered; only too slowly


def test_a_dripping_endpoint_cannot_hold_aget_past_max_wait(server: AuthorizationServer) -> None:
    async def main() -> float:
        async with _dripping_manager(server) as manager:
            started = time.monotonic()
            with pytest.raises(ft.TokenEndpointUnavailable):
                await manager.aget()
            return time.monotonic() - started

    assert run(main) < MAX_WAIT + SLACK


def test_a_negative_drip_is_refused() -> None:
    with pytest.raises(ValueError, match="drip"):
        Fault(drip=-1)


def test_a_gentle_drip_within_max_wait_still_gets_its_token(server: AuthorizationServer) -> None:
    client = server.add_client()
    server.inject(drip=0.001)
    grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
    with ft.TokenManager(grant, policy=FAST) as manager:
        assert manager.get()


def test_the_drivers_report_a_passed_deadline_as_a_timeout(drip: DripServer) -> None:
    request = HttpRequest("POST", drip.url, max_time=0.3)
    with httpx.Client() as client:
        assert send_sync(client, request) == TransportFailure("timeout", "deadline")

    async def main() -> object:
        async with httpx.AsyncClient() as client:
            return await send_async(client, request)

    assert run(main) == TransportFailure("timeout", "deadline")


# -- item 6: a user's client lends its transport, not its credentials ----------------------


def _seen(store: list[httpx.Request]) -> dict[str, list[object]]:
    return {"request": [store.append]}


def _aseen(store: list[httpx.Request]) -> dict[str, list[object]]:
    async def hook(request: httpx.Request) -> None:
        store.append(request)

    return {"request": [hook]}


USER_SETTINGS: dict[str, object] = {
    "auth": ("api-user", "api-password"),
    "cookies": {"session": "api-session-cookie"},
    "headers": {"X-Api-Key": "api-key-value", "User-Agent": "user-app/1"},
}


def _assert_only_the_grants_credentials(sent: list[httpx.Request], client: object) -> None:
    assert sent, "the user's client was not used"
    for request in sent:
        assert "x-api-key" not in request.headers
        assert "cookie" not in request.headers
        scheme, _, value = request.headers["authorization"].partition(" ")
        assert scheme == "Basic"
        assert base64.b64decode(value).decode().startswith(f"{client}:")
        wire = repr(dict(request.headers)) + request.content.decode()
        for secret in ("api-password", "api-session-cookie", "api-key-value", "user-app"):
            assert secret not in wire


def test_a_user_client_sends_none_of_its_own_auth_cookies_or_headers(
    server: AuthorizationServer,
) -> None:
    client = server.add_client()
    sent: list[httpx.Request] = []
    grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
    with (
        httpx.Client(event_hooks=_seen(sent), **USER_SETTINGS) as http,  # type: ignore[arg-type]
        ft.TokenManager(grant, http=http, policy=FAST) as manager,
    ):
        assert manager.get()
        assert http.cookies.get("session") == "api-session-cookie"  # the user's jar untouched
    _assert_only_the_grants_credentials(sent, client.client_id)
    assert server.counters.token_requests_by_client == {client.client_id: 1}


def test_a_user_async_client_sends_none_of_its_own_auth_cookies_or_headers(
    server: AuthorizationServer,
) -> None:
    client = server.add_client()
    sent: list[httpx.Request] = []
    grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)

    async def main() -> None:
        async with (
            httpx.AsyncClient(event_hooks=_aseen(sent), **USER_SETTINGS) as http,  # type: ignore[arg-type]
            ft.TokenManager(grant, async_http=http, policy=FAST) as manager,
        ):
            assert await manager.aget()

    run(main)
    _assert_only_the_grants_credentials(sent, client.client_id)
    assert server.counters.token_requests_by_client == {client.client_id: 1}


def test_a_user_client_still_lends_its_timeouts() -> None:
    """Transport settings do apply: the user's 0.2 s read timeout cuts a 1 s gap off."""
    with DripServer(gap=1.0) as drip, httpx.Client(timeout=httpx.Timeout(5.0, read=0.2)) as http:
        reply = send_sync(http, HttpRequest("POST", drip.url))
    assert reply == TransportFailure("timeout", "ReadTimeout")


# -- item 9: resource URIs and the one loopback rule ---------------------------------------


def test_a_urn_resource_is_accepted_and_sent(server: AuthorizationServer) -> None:
    client = server.add_client()
    sent: list[httpx.Request] = []
    grant = ft.ClientCredentials(
        server.token_url, client.client_id, client.client_secret, resource="urn:example:api"
    )
    with (
        httpx.Client(event_hooks=_seen(sent)) as http,  # type: ignore[arg-type]
        ft.TokenManager(grant, http=http, policy=FAST) as manager,
    ):
        assert manager.get()
    assert b"resource=urn%3Aexample%3Aapi" in sent[0].content


@pytest.mark.parametrize(
    ("resource", "problem"),
    [
        ("https://api.example/#frag", "fragment"),
        ("urn:example:api#part", "fragment"),
        ("/relative/path", "relative reference"),
        ("api.example", "relative reference"),
        ("1http://x", "relative reference"),
        ("urn:", "nothing after it"),
        ("urn:a b", "whitespace"),
    ],
)
def test_a_resource_that_is_not_an_absolute_uri_is_refused(resource: str, problem: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=problem):
        ft.ClientCredentials("https://idp.example/token", "id", "s", resource=resource)


def test_a_bad_resource_in_a_list_is_named_by_its_index() -> None:
    with pytest.raises(ft.ConfigurationError, match=r"resource\[1\] has a fragment"):
        ft.ClientCredentials(
            "https://idp.example/token", "id", "s", resource=["urn:a", "https://b/#c"]
        )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("api.localhost", True),
        ("localhost.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost.example", False),
        ("notlocalhost", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_one_loopback_rule_for_origins_and_token_urls(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    origin = f"http://{shown}:8080"
    origin_ok = _origin_allowed(origin)
    try:
        check_url(origin + "/token", "token_url", allow_insecure_http=False)
        token_url_ok = True
    except ft.ConfigurationError:
        token_url_ok = False
    assert origin_ok is token_url_ok is loopback


def _origin_allowed(url: str) -> bool:
    try:
        OriginScope([url])
    except ft.ConfigurationError:
        return False
    return True
