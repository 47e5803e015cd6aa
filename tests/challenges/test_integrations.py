"""Challenges through httpx (sync and async), requests and aiohttp against the test server's
resource: a missing scope or a step-up raises the typed error with the server's values and makes
no token request; ``invalid_token`` keeps its refresh and replay; other refusals pass through."""

from __future__ import annotations

import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer, Fault
from tests.integrations.clients import Api


def _warm(manager: ft.TokenManager, server: AuthorizationServer) -> None:
    manager.prefetch()
    server.reset_counters()


def test_a_missing_scope_raises_insufficient_scope_without_a_token_request(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    server.demand(scope="admin reports:read")

    with pytest.raises(ft.InsufficientScope) as caught:
        api.get(server.resource_url)

    error = caught.value
    assert error.scope == "admin reports:read"
    assert error.status == 403
    assert error.token is not None and error.token.access_token == manager.get().access_token
    assert server.resource_requests == 1
    assert server.token_requests == 0
    assert error.token.access_token not in str(error) + repr(error)


def test_a_step_up_raises_step_up_required_without_a_token_request(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    server.demand(acr_values="phr phrh", max_age=120)

    with pytest.raises(ft.StepUpRequired) as caught:
        api.get(server.resource_url)

    assert (caught.value.acr_values, caught.value.max_age) == ("phr phrh", 120)
    assert caught.value.status == 401
    assert server.resource_requests == 1
    assert server.token_requests == 0


def test_the_token_is_kept_after_a_typed_refusal(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    before = manager.get()
    server.demand(scope="admin")
    with pytest.raises(ft.InsufficientScope):
        api.get(server.resource_url)
    server.demand()

    result = api.get(server.resource_url)

    assert result.status == 200
    assert manager.get() is before
    assert server.token_requests == 0


def test_the_connection_is_usable_after_a_typed_refusal(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    server.demand(scope="admin")
    for _ in range(5):  # a leaked connection per refusal would exhaust nothing here, but hang
        with pytest.raises(ft.InsufficientScope):
            api.get(server.resource_url)
    server.demand()

    assert [r.status for r in api.get_many(server.resource_url, 8)] == [200] * 8
    assert server.token_requests == 0


def test_concurrent_refusals_make_no_token_request(
    make: object, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    assert callable(make)
    api = make(manager)
    _warm(manager, server)
    server.demand(scope="admin")

    raised = 0
    for _ in range(3):
        try:
            api.get_many(server.resource_url, 10)
        except ft.InsufficientScope:
            raised += 1

    assert raised == 3
    assert server.token_requests == 0


def test_invalid_token_still_refreshes_and_replays_once(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    server.revoke(manager.get().access_token)

    result = api.get(server.resource_url)

    assert result.status == 200
    assert server.token_requests == 1


def test_a_step_up_after_the_replay_raises_too(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    """The first answer refuses the token (refresh, replay); the replay's answer demands a
    step-up: that one is raised, and no second token is fetched."""
    _warm(manager, server)
    server.revoke(manager.get().access_token)
    server.demand(acr_values="phr")

    with pytest.raises(ft.StepUpRequired):
        api.get(server.resource_url)

    assert server.token_requests == 1
    assert server.resource_requests == 2


def test_a_403_without_a_scope_challenge_passes_through(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)
    server.faults.add(Fault(target="resource", status=403, body='{"error":"forbidden"}'))

    result = api.get(server.resource_url)

    assert result.status == 403
    assert server.token_requests == 0


def test_a_scope_challenge_to_a_request_without_the_token_passes_through(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    """A challenge answers the request, not the token, when the token was not on it (another
    origin)."""
    _warm(manager, server)
    api.get(server.resource_url)  # the token's origin is learned
    with AuthorizationServer() as other:
        result = api.get(other.base_url + "/api/status/403")  # 403 insufficient_scope

    assert result.status == 403
    assert server.token_requests == 0


def test_a_scope_challenge_naming_no_scope_raises_with_scope_none(
    api: Api, manager: ft.TokenManager, server: AuthorizationServer
) -> None:
    _warm(manager, server)

    with pytest.raises(ft.InsufficientScope) as caught:
        api.get(server.base_url + "/api/status/403")

    assert caught.value.scope is None
    assert server.token_requests == 0
