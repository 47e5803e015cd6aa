"""The httpx drivers and the clients freshtoken opens for itself."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

import freshtoken as ft
from freshtoken._oauth.grants import ClientCredentials
from freshtoken._oauth.http import HttpRequest
from freshtoken._oauth.sender import OwnClients, _timeout, send_sync
from freshtoken.testing import AuthorizationServer

from .conftest import FAST


def test_aget_from_several_loops_in_several_threads_uses_one_client_per_loop(
    server: AuthorizationServer,
) -> None:
    client = server.add_client()
    grant = ClientCredentials(server.token_url, client.client_id, client.client_secret)
    failures: list[BaseException] = []
    clients: list[httpx.AsyncClient] = []

    def worker() -> None:
        async def main() -> None:
            manager = ft.TokenManager(grant, policy=FAST)
            try:
                await manager.aget()
                clients.append(grant._clients.async_client())
                assert grant._clients.async_client() is clients[-1]
            finally:
                await grant.aclose()

        try:
            asyncio.run(main())
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len({id(c) for c in clients}) == 3
    assert all(c.is_closed for c in clients)
    assert server.token_requests == 3


def test_close_forgets_clients_of_other_loops_and_closes_the_sync_one() -> None:
    own = OwnClients()
    sync = own.sync_client()
    assert own.sync_client() is sync

    async def make() -> httpx.AsyncClient:
        return own.async_client()

    other = asyncio.run(make())
    own.close()
    assert sync.is_closed
    assert len(own._async) == 0
    assert not other.is_closed  # never opened a connection; nothing to leak
    asyncio.run(other.aclose())

    async def inside_loop() -> None:
        current = own.async_client()
        own.close()  # sync close from async code leaves the running loop's client to aclose()
        assert not current.is_closed
        await own.aclose()
        assert current.is_closed

    asyncio.run(inside_loop())


def test_a_deadline_caps_every_timeout_phase() -> None:
    base = httpx.Timeout(10.0, connect=5.0, pool=None)
    capped = _timeout(base, HttpRequest("POST", "https://x", timeout=None, max_time=2.0))
    assert (capped.connect, capped.read, capped.write, capped.pool) == (2.0, 2.0, 2.0, 2.0)
    own = _timeout(base, HttpRequest("POST", "https://x", timeout=1.0, max_time=None))
    assert (own.connect, own.read) == (1.0, 1.0)
    past = _timeout(base, HttpRequest("POST", "https://x", max_time=-3.0))
    assert past.read == 0.001


def test_transport_errors_become_failure_values() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.DecodingError("broken")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        reply = send_sync(client, HttpRequest("POST", "https://as.example.com/token"))
    assert reply is not None
    assert reply.kind == "error"  # type: ignore[union-attr]
    assert reply.detail == "DecodingError"  # type: ignore[union-attr]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_cap_is_not_read_to_the_end(chunked: bool) -> None:
    big = b"x" * (1024 * 1024 + 1)

    def handler(request: httpx.Request) -> httpx.Response:
        if chunked:
            return httpx.Response(200, content=iter([big[:600_000], big[600_000:], b"more"]))
        return httpx.Response(200, content=big)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        reply = send_sync(client, HttpRequest("POST", "https://as.example.com/token"))
    assert reply is not None
    assert reply.kind == "too_large"  # type: ignore[union-attr]


def test_an_async_body_over_the_cap_is_not_read_to_the_end() -> None:
    from freshtoken._oauth.sender import send_async

    async def stream() -> object:
        yield b"x" * 700_000
        yield b"x" * 700_000
        yield b"never read"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())  # type: ignore[arg-type]

    async def main() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send_async(client, HttpRequest("POST", "https://as.example.com/token"))

    reply = asyncio.run(main())
    assert reply.kind == "too_large"  # type: ignore[attr-defined]


def test_debug_logs_name_method_url_outcome_and_duration_only(
    server: AuthorizationServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="freshtoken.http")
    client = server.add_client()
    server.inject(drop=True, times=1)
    grant = ClientCredentials(
        server.token_url + "?tenant=t-secret", client.client_id, client.client_secret
    )
    with ft.TokenManager(grant, policy=FAST) as tokens:
        tokens.get()
    lines = [r.getMessage() for r in caplog.records if r.name == "freshtoken.http"]
    assert len(lines) == 2
    assert lines[0].startswith(f"POST {server.token_url} -> network RemoteProtocolError in ")
    assert lines[1].startswith(f"POST {server.token_url} -> HTTP 200 in ")
    assert all("t-secret" not in line for line in lines)


def test_safe_url_keeps_ipv6_hosts_and_drops_query_and_user_info() -> None:
    from freshtoken._oauth.http import safe_url

    assert safe_url("http://u:p@[::1]:8080/token?x=1#f") == "http://[::1]:8080/token"
    assert safe_url("https://as.example.com/t") == "https://as.example.com/t"
