"""The decorator pattern (``@tokens.authenticated``): a missing scope or a step-up is never
retried, whether the body raises the typed error or its HTTP library's status error, which is
raised as the typed error with the library's error as its cause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import httpx
import pytest
import requests

import freshtoken as ft
from freshtoken._runtime.decorators import challenge_error, means_unauthorized
from freshtoken.httpx import TokenAuth
from freshtoken.testing import AuthorizationServer


@pytest.fixture
def tokens(server: AuthorizationServer) -> Iterator[ft.TokenManager]:
    client = server.client
    grant = ft.ClientCredentials(server.token_url, client.client_id, client.client_secret)
    with ft.TokenManager(grant) as manager:
        manager.prefetch()
        server.reset_counters()
        yield manager


def test_an_httpx_403_scope_error_becomes_insufficient_scope_without_a_retry(
    tokens: ft.TokenManager, server: AuthorizationServer
) -> None:
    server.demand(scope="admin")
    calls = 0

    @tokens.authenticated
    def call(token: ft.Token) -> int:
        nonlocal calls
        calls += 1
        response = httpx.get(server.resource_url, headers={"Authorization": token.authorization})
        response.raise_for_status()
        return response.status_code

    with pytest.raises(ft.InsufficientScope) as caught:
        call()

    assert caught.value.scope == "admin"
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
    assert calls == 1
    assert server.token_requests == 0


def test_a_requests_401_step_up_error_becomes_step_up_required_without_a_retry(
    tokens: ft.TokenManager, server: AuthorizationServer
) -> None:
    server.demand(acr_values="urn:example:mfa", max_age=30)
    calls = 0

    @tokens.authenticated
    def call(token: ft.Token) -> int:
        nonlocal calls
        calls += 1
        response = requests.get(
            server.resource_url, headers={"Authorization": token.authorization}, timeout=10
        )
        response.raise_for_status()
        return response.status_code

    with pytest.raises(ft.StepUpRequired) as caught:
        call()

    assert (caught.value.acr_values, caught.value.max_age) == ("urn:example:mfa", 30)
    assert isinstance(caught.value.__cause__, requests.HTTPError)
    assert calls == 1
    assert server.token_requests == 0


def test_an_aiohttp_error_in_an_async_body_becomes_the_typed_error(
    tokens: ft.TokenManager, server: AuthorizationServer
) -> None:
    server.demand(scope="reports:read")
    calls = 0

    @tokens.authenticated
    async def call(token: ft.Token) -> int:
        nonlocal calls
        calls += 1
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                server.resource_url, headers={"Authorization": token.authorization}
            ) as response,
        ):
            response.raise_for_status()
            return response.status

    async def main() -> None:
        try:
            with pytest.raises(ft.InsufficientScope) as caught:
                await call()
            assert caught.value.scope == "reports:read"
        finally:
            await tokens.aclose()

    asyncio.run(main())
    assert calls == 1
    assert server.token_requests == 0


def test_the_typed_error_of_an_integration_passes_through_unretried(
    tokens: ft.TokenManager, server: AuthorizationServer
) -> None:
    server.demand(scope="admin")
    calls = 0
    client = httpx.Client(auth=TokenAuth(tokens))

    @tokens.authenticated
    def call(token: ft.Token) -> int:
        nonlocal calls
        calls += 1
        return client.get(server.resource_url).status_code

    with client, pytest.raises(ft.InsufficientScope):
        call()

    assert calls == 1
    assert server.token_requests == 0


def test_a_typed_error_raised_by_hand_is_not_retried(tokens: ft.TokenManager) -> None:
    calls = 0

    @tokens.authenticated
    def call(token: ft.Token) -> None:
        nonlocal calls
        calls += 1
        raise ft.StepUpRequired(acr_values="phr", token=token)

    with pytest.raises(ft.StepUpRequired):
        call()
    assert calls == 1


def test_an_invalid_token_error_is_still_retried_once(
    tokens: ft.TokenManager, server: AuthorizationServer
) -> None:
    server.revoke(tokens.get().access_token)
    calls = 0

    @tokens.authenticated
    def call(token: ft.Token) -> int:
        nonlocal calls
        calls += 1
        response = httpx.get(server.resource_url, headers={"Authorization": token.authorization})
        response.raise_for_status()
        return response.status_code

    assert call() == 200
    assert calls == 2
    assert server.token_requests == 1


def _httpx_error(status: int, *challenges: str) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.example/x")
    headers = [("WWW-Authenticate", value) for value in challenges]
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(str(status), request=request, response=response)


@pytest.mark.parametrize(
    ("error", "retried", "typed"),
    [
        (ft.Unauthorized(), True, None),
        (ft.InsufficientScope(), False, None),
        (ft.StepUpRequired(), False, None),
        (_httpx_error(401), True, None),
        (_httpx_error(401, 'Bearer error="invalid_token"'), True, None),
        (_httpx_error(401, 'Bearer error="insufficient_scope"'), False, ft.InsufficientScope),
        (
            _httpx_error(401, 'Basic realm="x"', 'Bearer error="insufficient_user_authentication"'),
            False,
            ft.StepUpRequired,
        ),
        (_httpx_error(403, 'Bearer error="insufficient_scope"'), False, ft.InsufficientScope),
        (_httpx_error(403), False, None),
        (_httpx_error(500, 'Bearer error="insufficient_scope"'), False, None),
        (ValueError("x"), False, None),
    ],
)
def test_what_means_a_refused_token(
    error: BaseException, retried: bool, typed: type[Exception] | None
) -> None:
    assert means_unauthorized(error) is retried
    made = challenge_error(error)
    assert (None if made is None else type(made)) is typed


def test_retry_if_never_makes_a_typed_refusal_retried() -> None:
    assert not means_unauthorized(ft.InsufficientScope(), retry_if=lambda _: True)
