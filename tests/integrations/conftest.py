"""Fixtures of the HTTP integration tests: real servers on 127.0.0.1, real clients.

Every test runs against :class:`~freshtoken.testing.AuthorizationServer` (its protected resource
validates the JWT strictly, with no leeway) through the real client library; ``api`` is the
library under test behind one small synchronous facade (see :mod:`.clients`), parametrized over
httpx (sync and async), requests and aiohttp, so that each behaviour is stated once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer

from .clients import KINDS, Api, LoopThread, make_api

try:  # the grant, when the grants module is in the tree; else the same request by hand
    from freshtoken._oauth.grants import ClientCredentials
except ImportError:  # pragma: no cover - only before _grants.py existed
    ClientCredentials = None  # type: ignore[assignment,misc]


class RecordingSource:
    """client_credentials against the test server, keeping every access token it hands out so
    that tests can search logs for them. A real source, not a stand-in: it delegates to
    :class:`freshtoken.ClientCredentials`."""

    def __init__(self, server: AuthorizationServer) -> None:
        client = server.client
        assert client.client_secret is not None
        self.issued: list[str] = []
        self._server = server
        self._grant = (
            ClientCredentials(server.token_url, client.client_id, client.client_secret)
            if ClientCredentials is not None
            else None
        )
        self._client_id = client.client_id
        self._secret = client.client_secret

    @property
    def key(self) -> str:
        return f"tests:client_credentials:{self._client_id}"

    def _post(self) -> ft.Token:  # pragma: no cover - only before _grants.py existed
        response = httpx.post(
            self._server.token_url,
            auth=(self._client_id, self._secret),
            data={"grant_type": "client_credentials"},
            timeout=10,
        )
        return ft.Token.from_response(response.json())

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        token = self._grant.fetch(ctx) if self._grant is not None else self._post()
        self.issued.append(token.access_token)
        return token

    async def afetch(self, ctx: ft.FetchContext) -> ft.Token:
        if self._grant is not None:
            token = await self._grant.afetch(ctx)
        else:  # pragma: no cover - only before _grants.py existed
            token = await asyncio.to_thread(self._post)
        self.issued.append(token.access_token)
        return token

    def close(self) -> None:
        if self._grant is not None:
            self._grant.close()

    async def aclose(self) -> None:
        if self._grant is not None:
            await self._grant.aclose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "token_lifetime(seconds): the lifetime of the server fixture's tokens"
    )


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[AuthorizationServer]:
    """The authorization server and protected API (tokens live 60 s unless the test's
    ``token_lifetime`` marker says otherwise), with one client."""
    marker = request.node.get_closest_marker("token_lifetime")
    lifetime = float(marker.args[0]) if marker is not None else 60.0
    with AuthorizationServer(token_lifetime=lifetime) as running:
        running.add_client()
        yield running


@pytest.fixture
def other_server() -> Iterator[AuthorizationServer]:
    """A second server on another port: another origin, with keys of its own."""
    with AuthorizationServer() as running:
        yield running


@pytest.fixture
def source(server: AuthorizationServer) -> RecordingSource:
    return RecordingSource(server)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    with LoopThread() as loop:
        yield loop


@pytest.fixture
def manager(source: RecordingSource, loop_thread: LoopThread) -> Iterator[ft.TokenManager]:
    tokens = ft.TokenManager(source)
    yield tokens
    loop_thread.run(tokens.aclose())  # closes the async client made on that loop
    tokens.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which library (and sync or async) the test drives."""
    return str(request.param)


@pytest.fixture
def make(kind: str, loop_thread: LoopThread) -> Iterator[Callable[..., Api]]:
    """``make(manager, **auth_options)``: an ``Api`` of the library under test."""
    made: list[Api] = []

    def build(tokens: ft.TokenManager, **options: Any) -> Api:
        api = make_api(kind, tokens, loop_thread, **options)
        made.append(api)
        return api

    yield build
    for api in made:
        api.close()


@pytest.fixture
def api(make: Callable[..., Api], manager: ft.TokenManager) -> Api:
    """The library under test, authenticated by ``manager`` with default options."""
    return make(manager)
