"""The seed's decorator, done right.

``@tokens.authenticated`` (a function) and ``@ft.authenticated`` (a method, the manager found at
``self.tokens``) pass a fresh token as the first argument after ``self``. Whether the function is
sync or async is decided once, at decoration. When the body raises an error that means HTTP 401,
the token it was given is invalidated (compare-and-invalidate: fifty concurrent 401s cause one
refresh) and the body runs once more with a fresh token; a second 401 propagates.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast, overload

from ._errors import ConfigurationError, Unauthorized
from ._token import Token

if TYPE_CHECKING:
    from ._manager import TokenManager

__all__ = ["authenticated", "means_unauthorized", "wrap_function", "wrap_method"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

RetryIf = Callable[[BaseException], bool]

_HTTP_LIBRARIES = frozenset({"httpx", "requests", "aiohttp", "urllib3"})


def means_unauthorized(error: BaseException, retry_if: RetryIf | None = None) -> bool:
    """True when ``error`` says that an API answered 401 to the token.

    Recognised: :class:`~freshtoken.Unauthorized`; httpx's ``HTTPStatusError`` and requests'
    ``HTTPError`` (``error.response.status_code == 401``); aiohttp's ``ClientResponseError``
    (``error.status == 401``); anything ``retry_if`` accepts.
    """
    if isinstance(error, Unauthorized):
        return True
    if retry_if is not None and retry_if(error):
        return True
    if type(error).__module__.partition(".")[0] not in _HTTP_LIBRARIES:
        return False
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(error, "status", None)
    return status == 401


def _rejected_token(error: BaseException, given: Token) -> Token:
    if isinstance(error, Unauthorized) and error.token is not None:
        return error.token
    return given


def _after_error(
    error: Exception, manager: TokenManager, token: Token, retry_if: RetryIf | None
) -> None:
    """Invalidate the token when ``error`` means 401; re-raise ``error`` otherwise."""
    if not means_unauthorized(error, retry_if):
        raise error
    manager.invalidate(_rejected_token(error, token))


def wrap_function(
    fn: Callable[..., Any], manager: TokenManager, retry_if: RetryIf | None
) -> Callable[..., Any]:
    """The wrapper for a function taking the token as its first argument.

    The hot path is one ``get()`` and one call: no lookups, no argument reshuffling.
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            token = await manager.aget()
            try:
                return await fn(token, *args, **kwargs)
            except Exception as error:
                _after_error(error, manager, token, retry_if)
            return await fn(await manager.aget(), *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = manager.get()
        try:
            return fn(token, *args, **kwargs)
        except Exception as error:
            _after_error(error, manager, token, retry_if)
        return fn(manager.get(), *args, **kwargs)

    return wrapper


def wrap_method(
    fn: Callable[..., Any], attribute: str, retry_if: RetryIf | None
) -> Callable[..., Any]:
    """The wrapper for a method taking the token after ``self``; the manager is self.<attribute>."""
    manager_of = _method_manager(attribute)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            manager = manager_of(self)
            token = await manager.aget()
            try:
                return await fn(self, token, *args, **kwargs)
            except Exception as error:
                _after_error(error, manager, token, retry_if)
            return await fn(self, await manager.aget(), *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = manager_of(self)
        token = manager.get()
        try:
            return fn(self, token, *args, **kwargs)
        except Exception as error:
            _after_error(error, manager, token, retry_if)
        return fn(self, manager.get(), *args, **kwargs)

    return wrapper


def _method_manager(attribute: str) -> Callable[[object], TokenManager]:
    from ._manager import TokenManager

    def manager_of(instance: object) -> TokenManager:
        manager = getattr(instance, attribute, None)
        if type(manager) is not TokenManager and not isinstance(manager, TokenManager):
            raise ConfigurationError(
                f"@freshtoken.authenticated found no TokenManager at self.{attribute} of "
                f"{type(instance).__name__}; set it in __init__ or pass attribute='...' (for a "
                "plain function, decorate with @tokens.authenticated on a TokenManager)"
            )
        return manager

    return manager_of


# Coroutine functions are covered by the same signatures: R is then a Coroutine.
_Method = Callable[Concatenate[S, Token, P], R]
_Bound = Callable[Concatenate[S, P], R]


@overload
def authenticated(fn: _Method[S, P, R], /) -> _Bound[S, P, R]: ...


@overload
def authenticated(
    *, attribute: str = "tokens", retry_if: RetryIf | None = None
) -> Callable[[_Method[S, P, R]], _Bound[S, P, R]]: ...


def authenticated(
    fn: _Method[S, P, R] | None = None,
    /,
    *,
    attribute: str = "tokens",
    retry_if: RetryIf | None = None,
) -> _Bound[S, P, R] | Callable[[_Method[S, P, R]], _Bound[S, P, R]]:
    """Decorate a method that takes a fresh token after ``self``.

    The manager is read from ``self.tokens`` (``attribute=`` names another). ``retry_if`` accepts
    more exceptions as meaning 401. Usable bare (``@ft.authenticated``) or with arguments.
    """

    def decorate(method: _Method[S, P, R]) -> _Bound[S, P, R]:
        return cast("_Bound[S, P, R]", wrap_method(method, attribute, retry_if))

    if fn is not None:
        return decorate(fn)
    return decorate
