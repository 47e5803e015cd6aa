"""The pytest plugin (entry point ``freshtoken``): ``oauth_server`` and ``fake_clock`` fixtures.

``oauth_server`` is a running :class:`~freshtoken.testing.AuthorizationServer` with one client
registered (``oauth_server.client``), fresh for each test so that counters, faults and revocations
never leak between tests. Configure it with the ``oauth_server`` marker::

    @pytest.mark.oauth_server(token_lifetime=1.0, client={"scopes": ["read"]})
    def test_refresh(oauth_server): ...

Marker keywords are :class:`AuthorizationServer` arguments, plus ``client`` (``add_client``
arguments) and ``fake_clock=True`` (the server then runs on the test's ``fake_clock``).
``oauth_server_session`` is one server shared by a whole session, for suites that only need a
working server and want to save the start-up cost (a few milliseconds, mostly key generation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from freshtoken._runtime.clock import FakeClock

if TYPE_CHECKING:
    from freshtoken.testing._server import AuthorizationServer

__all__ = ["fake_clock", "oauth_server", "oauth_server_session", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "oauth_server(**options): configure the oauth_server fixture (AuthorizationServer "
        "arguments, client={add_client arguments}, fake_clock=True)",
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock`: time moves only with ``advance()`` / ``jump_wall()``."""
    return FakeClock()


def _start(options: dict[str, Any]) -> AuthorizationServer:
    # Imported here, not at module level: pytest loads this plugin in every session of every
    # project that installs freshtoken, and most never start a server.
    from freshtoken.testing._server import AuthorizationServer

    client_options = dict(options.pop("client", None) or {})
    server = AuthorizationServer(**options).start()
    try:
        server.add_client(**client_options)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture
def oauth_server(request: pytest.FixtureRequest) -> Iterator[AuthorizationServer]:
    """A running authorization server with one client (``oauth_server.client``)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("oauth_server"))):
        if marker.args:
            raise TypeError("@pytest.mark.oauth_server takes keyword arguments only")
        options.update(marker.kwargs)
    if options.pop("fake_clock", False):
        options["clock"] = request.getfixturevalue("fake_clock")
    server = _start(options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oauth_server_session() -> Iterator[AuthorizationServer]:
    """One server (with one client) for the whole session: share it only between tests that do
    not inject faults, revoke tokens or count requests."""
    server = _start({})
    try:
        yield server
    finally:
        server.stop()
