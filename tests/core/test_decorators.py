"""The decorators: the seed's two-line ergonomics, with a safe 401 path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import requests

import freshtoken as ft

from .conftest import CountingSource

Make = Callable[..., ft.TokenManager]


def httpx_401() -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.example/x")
    response = httpx.Response(401, request=request)
    return httpx.HTTPStatusError("401", request=request, response=response)


def requests_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


class TestFunctionDecorator:
    def test_the_fresh_token_is_passed_first_and_arguments_follow(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)

        @tokens.authenticated
        def list_users(token: ft.Token, page: int, *, size: int = 10) -> str:
            """List users."""
            return f"{token.access_token}:{page}:{size}"

        assert list_users(2, size=5) == "token-1:2:5"
        assert list_users.__name__ == "list_users"
        assert list_users.__doc__ == "List users."
        assert list_users.__wrapped__ is not None  # type: ignore[attr-defined]

    def test_a_401_invalidates_and_runs_the_body_once_more_with_a_new_token(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        seen: list[str] = []

        @tokens.authenticated
        def call(token: ft.Token) -> str:
            seen.append(token.access_token)
            if len(seen) == 1:
                raise ft.Unauthorized()
            return "ok"

        assert call() == "ok"
        assert seen == ["token-1", "token-2"]

    def test_a_second_401_propagates(self, make_manager: Make, source: CountingSource) -> None:
        tokens = make_manager(source)

        @tokens.authenticated
        def call(token: ft.Token) -> None:
            raise httpx_401()

        with pytest.raises(httpx.HTTPStatusError):
            call()
        assert source.calls == 2

    @pytest.mark.parametrize(
        "error",
        [requests_error(403), requests_error(500), ValueError("x"), httpx.ConnectError("x")],
    )
    def test_other_errors_are_not_retried(
        self, make_manager: Make, source: CountingSource, error: Exception
    ) -> None:
        tokens = make_manager(source)
        calls = 0

        @tokens.authenticated
        def call(token: ft.Token) -> None:
            nonlocal calls
            calls += 1
            raise error

        with pytest.raises(type(error)):
            call()
        assert calls == 1
        assert source.calls == 1

    def test_retry_if_widens_what_means_401(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        attempts = 0

        @tokens.authenticated(retry_if=lambda e: isinstance(e, PermissionError))
        def call(token: ft.Token) -> str:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise PermissionError("expired")
            return token.access_token

        assert call() == "token-2"

    def test_unauthorized_naming_its_token_invalidates_that_token(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        first = tokens.get()
        tokens.invalidate(first)
        second = tokens.get()

        attempts = 0

        @tokens.authenticated
        def call(token: ft.Token) -> str:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise ft.Unauthorized("stale copy", token=first)  # an old token was rejected
            return token.access_token

        # The manager's current token is not the rejected one: nothing is refetched.
        assert call() == second.access_token
        assert source.calls == 2

    def test_async_functions_are_awaited(self, make_manager: Make, source: CountingSource) -> None:
        tokens = make_manager(source)
        seen: list[str] = []

        @tokens.authenticated
        async def call(token: ft.Token, suffix: str) -> str:
            seen.append(token.access_token)
            if len(seen) == 1:
                raise requests_error(401)
            return token.access_token + suffix

        assert asyncio.run(call("!")) == "token-2!"


class API:
    """The seed's class, with freshtoken."""

    def __init__(self, tokens: ft.TokenManager) -> None:
        self.tokens = tokens
        self.other = tokens

    @ft.authenticated
    def some_request(self, token: ft.Token, path: str) -> str:
        return f"{path}:{token.access_token}"

    @ft.authenticated(attribute="other")
    def via_other(self, token: ft.Token) -> str:
        return token.access_token

    @ft.authenticated
    async def async_request(self, token: ft.Token) -> str:
        return token.access_token


class TestMethodDecorator:
    def test_the_manager_is_found_at_self_tokens(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        api = API(make_manager(source))
        assert api.some_request("/users") == "/users:token-1"
        assert api.via_other() == "token-1"
        assert asyncio.run(api.async_request()) == "token-1"

    def test_a_missing_manager_is_a_configuration_error(self) -> None:
        class NoTokens:
            @ft.authenticated
            def call(self, token: ft.Token) -> None: ...

        with pytest.raises(ft.ConfigurationError, match=r"self\.tokens"):
            NoTokens().call()

    def test_a_plain_function_is_a_configuration_error(self) -> None:
        @ft.authenticated  # type: ignore[arg-type]  # mypy catches this misuse statically too
        def call(token: ft.Token) -> None: ...

        with pytest.raises(ft.ConfigurationError, match=r"tokens\.authenticated"):
            call("not an instance")  # type: ignore[arg-type]


def test_aiohttp_style_status_errors_mean_401() -> None:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from freshtoken._runtime.decorators import means_unauthorized

    info = aiohttp.RequestInfo(URL("https://x"), "GET", CIMultiDictProxy(CIMultiDict()))
    assert means_unauthorized(aiohttp.ClientResponseError(info, (), status=401))
    assert not means_unauthorized(aiohttp.ClientResponseError(info, (), status=403))


class TestSignatures:
    """The wrapper mirrors the decorated signature (minus the token), so calls cost no packing."""

    def test_every_kind_of_parameter_is_forwarded(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)

        @tokens.authenticated
        def call(
            token: ft.Token,
            a: int,
            /,
            b: int,
            c: int = 3,
            *rest: int,
            d: int,
            e: int = 5,
            **kw: int,
        ) -> tuple[object, ...]:
            return (token.access_token, a, b, c, rest, d, e, kw)

        assert call(1, 2, d=4) == ("token-1", 1, 2, 3, (), 4, 5, {})
        assert call(1, b=2, d=4, e=6, z=7) == ("token-1", 1, 2, 3, (), 4, 6, {"z": 7})
        assert call(1, 2, 9, 10, 11, d=4) == ("token-1", 1, 2, 9, (10, 11), 4, 5, {})
        with pytest.raises(TypeError, match="'d'"):
            call(1, 2)  # type: ignore[call-arg]

    def test_keyword_only_without_star_args(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)

        @tokens.authenticated
        async def call(token: ft.Token, *, page: int = 1) -> str:
            return f"{token.access_token}:{page}"

        assert asyncio.run(call(page=2)) == "token-1:2"
        with pytest.raises(TypeError):
            asyncio.run(call(2))  # type: ignore[call-arg]

    def test_methods_keep_their_own_self_name(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        class Client:
            def __init__(this, tokens: ft.TokenManager) -> None:
                this.tokens = tokens

            @ft.authenticated
            def get(this, token: ft.Token, path: str = "/") -> str:
                return f"{path}:{token.access_token}"

        assert Client(make_manager(source)).get() == "/:token-1"
        assert Client(make_manager(source)).get(path="/x") == "/x:token-2"

    def test_signatures_that_cannot_be_mirrored_fall_back_to_forwarding_everything(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)

        @tokens.authenticated
        def clashing(token: ft.Token, _ft_t: int) -> int:
            return _ft_t

        assert clashing(7) == 7
        assert clashing(_ft_t=8) == 8

        class Callable_:
            def __call__(self, token: ft.Token, x: int) -> int:
                return x

        wrapped = tokens.authenticated(Callable_())
        assert wrapped(3) == 3

        @tokens.authenticated
        def no_parameters(*args: object) -> tuple[object, ...]:
            return args

        assert no_parameters(1)[1] == 1
