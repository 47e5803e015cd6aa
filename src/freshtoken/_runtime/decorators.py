"""The seed's decorator, done right.

``@tokens.authenticated`` (a function) and ``@ft.authenticated`` (a method, the manager found at
``self.tokens``) pass a fresh token as the first argument after ``self``. Whether the function is
sync or async is decided once, at decoration. When the body raises an error that means HTTP 401,
the token it was given is invalidated (compare-and-invalidate: fifty concurrent 401s cause one
refresh) and the body runs once more with a fresh token; a second 401 propagates.

A refusal whose challenge names a missing scope or a step-up (RFC 6750 ``insufficient_scope``,
RFC 9470 ``insufficient_user_authentication``) is not retried: a new token of the same grant
would be refused the same way. The integrations raise it as :class:`~freshtoken.InsufficientScope`
/ :class:`~freshtoken.StepUpRequired`; an HTTP library's own status error carrying such a
challenge is raised as that typed error too, with the library's error as its ``__cause__``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast, overload

from freshtoken._core.errors import (
    ConfigurationError,
    InsufficientScope,
    StepUpRequired,
    Unauthorized,
)
from freshtoken._core.token import Token
from freshtoken._http_auth.challenges import REFRESH, decide

if TYPE_CHECKING:
    from .manager import TokenManager

__all__ = [
    "authenticated",
    "challenge_error",
    "means_unauthorized",
    "wrap_function",
    "wrap_method",
]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

RetryIf = Callable[[BaseException], bool]

_HTTP_LIBRARIES = frozenset({"httpx", "requests", "aiohttp", "urllib3"})


def _http_error(error: BaseException) -> tuple[int | None, object]:
    """(status, response headers) of an HTTP library's status error; ``(None, None)`` for
    anything else."""
    if type(error).__module__.partition(".")[0] not in _HTTP_LIBRARIES:
        return None, None
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:  # httpx.HTTPStatusError, requests.HTTPError
        return status, getattr(response, "headers", None)
    status = getattr(error, "status", None)  # aiohttp.ClientResponseError
    return (status if isinstance(status, int) else None), getattr(error, "headers", None)


def _challenge(headers: object) -> list[str]:
    """Every ``WWW-Authenticate`` value of ``headers`` (httpx, requests or aiohttp headers)."""
    if headers is None:
        return []
    values: object = None
    if callable(getattr(headers, "get_list", None)):  # httpx.Headers
        values = headers.get_list("www-authenticate")  # type: ignore[attr-defined]
    elif callable(getattr(headers, "getall", None)):  # aiohttp's CIMultiDictProxy
        values = headers.getall("www-authenticate", [])  # type: ignore[attr-defined]
    if isinstance(values, list):
        return [value for value in values if isinstance(value, str)]
    get = getattr(headers, "get", None)
    value = get("www-authenticate") if get is not None else None  # requests, urllib3
    return [value] if isinstance(value, str) else []


def challenge_error(error: BaseException, token: Token | None = None) -> Unauthorized | None:
    """The :class:`~freshtoken.InsufficientScope` / :class:`~freshtoken.StepUpRequired` an HTTP
    library's 401/403 status error stands for, or ``None``."""
    status, headers = _http_error(error)
    if status not in (401, 403):
        return None
    sent = () if token is None else (token.access_token, token.refresh_token or "")
    typed = decide(status, _challenge(headers)).error(sent=sent)
    if typed is not None:
        typed.token = token
    return typed


def means_unauthorized(error: BaseException, retry_if: RetryIf | None = None) -> bool:
    """True when ``error`` says that an API answered 401 to the token, so a new one may work.

    Recognised: :class:`~freshtoken.Unauthorized`; httpx's ``HTTPStatusError`` and requests'
    ``HTTPError`` (``error.response.status_code == 401``); aiohttp's ``ClientResponseError``
    (``error.status == 401``); anything ``retry_if`` accepts. Never
    :class:`~freshtoken.InsufficientScope` or :class:`~freshtoken.StepUpRequired`, nor a 401
    whose challenge names a missing scope or a step-up: a new token would not cure them.
    """
    if isinstance(error, InsufficientScope | StepUpRequired):
        return False
    if isinstance(error, Unauthorized):
        return True
    if retry_if is not None and retry_if(error):
        return True
    status, headers = _http_error(error)
    return status == 401 and decide(401, _challenge(headers)).action == REFRESH


def _rejected_token(error: BaseException, given: Token) -> Token:
    if isinstance(error, Unauthorized) and error.token is not None:
        return error.token
    return given


def _after_error(
    error: Exception, manager: TokenManager, token: Token, retry_if: RetryIf | None
) -> None:
    """Invalidate the token when ``error`` means 401; re-raise ``error`` otherwise (as the typed
    error a scope or step-up challenge stands for, when it carries one)."""
    if not means_unauthorized(error, retry_if):
        typed = challenge_error(error, token)
        if typed is not None:
            raise typed from error
        raise error
    manager.invalidate(_rejected_token(error, token))


_TEMPLATE = """\
{async_}def {name}({params}):
    _ft_m = {manager}
    _ft_t = {await_}_ft_m.{get}()
    try:
        return {await_}_ft_fn({head}_ft_t, {call})
    except Exception as _ft_e:
        _ft_after(_ft_e, _ft_m, _ft_t, _ft_retry_if)
    return {await_}_ft_fn({head}{await_}_ft_m.{get}(), {call})
"""


def _forwarding(fn: Callable[..., Any], skip: int) -> tuple[str, str, dict[str, object]] | None:
    """(parameter list, call arguments, defaults) mirroring ``fn`` minus its first ``skip``
    parameters, or ``None`` when the signature cannot be mirrored exactly.

    A wrapper with the exact signature costs almost nothing per call on CPython 3.11+, where a
    ``*args, **kwargs`` wrapper costs several hundred nanoseconds of packing and unpacking.
    """
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(parameters) < skip or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters[:skip]
    ):
        return None
    params: list[str] = []
    call: list[str] = []
    defaults: dict[str, object] = {}
    star_seen = False
    last_positional_only = -1
    for p in parameters[skip:]:
        if p.name.startswith("_ft_"):
            return None
        text = p.name
        if p.default is not p.empty:
            defaults[f"_ft_d{len(defaults)}"] = p.default
            text += f"=_ft_d{len(defaults) - 1}"
        if p.kind is p.POSITIONAL_ONLY:
            last_positional_only = len(params)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            call.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            star_seen = True
            text = f"*{p.name}"
            call.append(text)
        elif p.kind is p.KEYWORD_ONLY:
            if not star_seen:
                params.append("*")
                star_seen = True
            call.append(f"{p.name}={p.name}")
        else:
            text = f"**{p.name}"
            call.append(text)
        params.append(text)
    if last_positional_only >= 0:
        params.insert(last_positional_only + 1, "/")
    return ", ".join(params), ", ".join(call), defaults


def _build(
    fn: Callable[..., Any],
    *,
    method: bool,
    manager: TokenManager | None,
    manager_of: Callable[[object], TokenManager] | None,
    retry_if: RetryIf | None,
) -> Callable[..., Any]:
    """Generate the wrapper: sync or async (decided once, here), function or method.

    One template serves all four shapes, so the 401 path is written once.
    """
    is_async = inspect.iscoroutinefunction(fn)
    mirrored = _forwarding(fn, 2 if method else 1)
    defaults: dict[str, object] = {}
    if mirrored is None:
        params = call = "*args, **kwargs"
    else:
        params, call, defaults = mirrored
    self_name = "self"
    if method:
        if mirrored is not None:
            self_name = next(iter(inspect.signature(fn).parameters))
        params = f"{self_name}, {params}" if params else self_name
    source = _TEMPLATE.format(
        async_="async " if is_async else "",
        await_="await " if is_async else "",
        get="aget" if is_async else "get",
        name="wrapper",
        params=params,
        manager=f"_ft_manager_of({self_name})" if method else "_ft_manager",
        head=f"{self_name}, " if method else "",
        call=call,
    )
    namespace: dict[str, object] = {
        "_ft_fn": fn,
        "_ft_manager": manager,
        "_ft_manager_of": manager_of,
        "_ft_after": _after_error,
        "_ft_retry_if": retry_if,
        **defaults,
    }
    label = getattr(fn, "__qualname__", type(fn).__qualname__)
    exec(compile(source, f"<freshtoken wrapper of {label}>", "exec"), namespace)  # noqa: S102 - the source is built from the function's own parameter names
    return functools.wraps(fn)(cast("Callable[..., Any]", namespace["wrapper"]))


def wrap_function(
    fn: Callable[..., Any], manager: TokenManager, retry_if: RetryIf | None
) -> Callable[..., Any]:
    """The wrapper for a function taking the token as its first argument."""
    return _build(fn, method=False, manager=manager, manager_of=None, retry_if=retry_if)


def wrap_method(
    fn: Callable[..., Any], attribute: str, retry_if: RetryIf | None
) -> Callable[..., Any]:
    """The wrapper for a method taking the token after ``self``; the manager is self.<attribute>."""
    return _build(
        fn, method=True, manager=None, manager_of=_method_manager(attribute), retry_if=retry_if
    )


def _method_manager(attribute: str) -> Callable[[object], TokenManager]:
    from .manager import TokenManager

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
