"""Where tokens come from: the source protocol, the fetch context, and FunctionSource.

A *source* obtains one new token when the manager asks. It knows nothing of caching, waiting or
concurrency: the manager guarantees that at most one ``fetch``/``afetch`` of a manager runs at a
time. HTTP grants (``_oauth/grants.py``) are sources; so is :class:`FunctionSource`, which wraps any
sync or async callable (the seed's ``getAccessToken`` works as it is).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from freshtoken._core.errors import (
    ConfigurationError,
    FreshTokenError,
    TokenRequestError,
    TokenResponseError,
)
from freshtoken._core.events import Event, describe_error
from freshtoken._core.policy import RefreshPolicy
from freshtoken._core.token import ParsedToken, Token, parse_token_response

from .clock import Clock

if TYPE_CHECKING:
    import httpx

__all__ = [
    "FetchContext",
    "adopt",
    "FunctionSource",
    "TokenSource",
    "callable_name",
    "check_key",
    "require_identity",
    "run_coroutine_sync",
    "sends_refresh_token",
    "underivable",
    "unidentified_input",
]

T = TypeVar("T")

TokenLike = str | Mapping[str, object] | Token
TokenFunction = Callable[[], TokenLike] | Callable[[], Awaitable[TokenLike]]


@dataclass(frozen=True, slots=True)
class FetchContext:
    """What a source may use for one fetch.

    ``deadline``
        Monotonic time by which the fetch, retries included, must be over.
    ``current``
        The latest token known (it may carry the newest refresh token), or ``None``.
    ``http`` / ``async_http``
        The user's httpx clients, when given to the manager (``None``: the source's own).
    ``emit``
        Reports events (``skew_detected`` ...) to the manager's sinks.
    ``key``
        The source's key (for events and stores).
    ``rejected``
        Fingerprint of the token last invalidated after a 401: a shared store holding that token
        must not hand it out again.
    ``rejected_at``
        Wall-clock time of that invalidation, until a token is obtained after it: a shared
        store must not hand out a token issued before it.
    ``request_deadline``
        Monotonic time by which a request already sent must have its answer. It may lie past
        ``deadline``: no new attempt or sleep starts after ``deadline`` (the hard deadline while
        the current token is usable), but cutting a request in flight there would only turn a
        slow answer into a failure for the callers now waiting on it.
    ``urgent``
        No usable token exists: callers fail or wait until this fetch succeeds, so its retries
        come at ``policy.recovery_interval`` rather than backing off exponentially.
    """

    clock: Clock
    policy: RefreshPolicy
    deadline: float
    current: Token | None
    emit: Callable[[Event], None]
    key: str
    http: httpx.Client | None = None
    async_http: httpx.AsyncClient | None = None
    rejected: str | None = None
    request_deadline: float | None = None
    rejected_at: float | None = None
    urgent: bool = False

    @property
    def request_cap(self) -> float:
        """Seconds a request sent now may take (see ``request_deadline``)."""
        end = self.deadline if self.request_deadline is None else self.request_deadline
        return max(end, self.deadline) - self.clock.monotonic()

    def note_skew(self, parsed: ParsedToken) -> Token:
        """Emit ``skew_detected`` when parsing found one; returns the token."""
        if parsed.skew is not None:
            self.emit(
                Event(
                    "skew_detected",
                    self.key,
                    fingerprint=parsed.token.fingerprint,
                    skew=parsed.skew,
                )
            )
        return parsed.token


@runtime_checkable
class TokenSource(Protocol):
    """Obtains one new token per call. Implemented by the grants and by FunctionSource."""

    @property
    def key(self) -> str:
        """The token's identity in a shared store: no secret may be recoverable from it."""
        ...

    def fetch(self, ctx: FetchContext) -> Token:
        """Obtain a token, blocking the calling thread."""
        ...

    async def afetch(self, ctx: FetchContext) -> Token:
        """Obtain a token on the running event loop."""
        ...


def sends_refresh_token(source: TokenSource, ctx: FetchContext) -> bool:
    """Whether ``source``'s next fetch from ``ctx`` would send a refresh token.

    With a shared store, other processes may hold that refresh token too, so it may only be sent
    while holding the store's lease. The grants say exactly (a rotating grant sends the newest
    refresh token it knows, from ``ctx.current`` or the one it was configured with; the others
    never send one; a token function cannot). A source that does not say is taken to send the
    refresh token of ``ctx.current`` when that token has one: the careful answer for wrappers.
    """
    probe = getattr(source, "_sends_refresh_token", None)
    if callable(probe):
        return bool(probe(ctx))
    return ctx.current is not None and ctx.current.refresh_token is not None


def adopt(source: TokenSource, token: Token, ctx: FetchContext) -> Token:
    """``token``, loaded from a shared store, as ``source`` would hand it out: a store keeps the
    token's fields only, so what lives in this process alone (a grant's DPoP key, which signs
    the proofs of a DPoP-bound token) is put back by the source, through an optional
    ``_adopt(token, ctx)``. Sources without one hand stored tokens out as they are."""
    hook = getattr(source, "_adopt", None)
    if callable(hook):
        adopted: Token = hook(token, ctx)
        return adopted
    return token


def callable_name(fn: object) -> str:
    """The callable's module and qualified name (for keys and messages; names no secret)."""
    if isinstance(fn, functools.partial):  # its own name is functools.partial: name what it calls
        return callable_name(fn.func)
    module = getattr(fn, "__module__", None) or type(fn).__module__
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def underivable(fn: object) -> str | None:
    """What kind of callable ``fn`` is when its name does not identify what it returns.

    Only a plain module-level function is identified by its name: every other callable carries
    state its name does not show (the instance of a bound method, the arguments of a partial, the
    free or default values of a nested function or lambda, the attributes of an object), so two
    of them with one name may return two principals' tokens. ``None`` for a plain function.
    """
    if inspect.ismethod(fn):
        return "a bound method"
    if isinstance(fn, functools.partial):
        return "a functools.partial"
    if not isinstance(fn, types.FunctionType):
        return "a callable object"
    if fn.__name__ == "<lambda>":
        return "a lambda"
    if fn.__closure__ or "<locals>" in fn.__qualname__:
        return "a closure"
    return None


def check_key(key: object) -> str | None:
    """``key`` as given to a source or grant: ``None`` (derive it) or a non-empty string."""
    if key is not None and (not isinstance(key, str) or not key):
        raise ConfigurationError("key must be a non-empty string naming the token")
    return key


def require_identity(source: TokenSource) -> None:
    """Refuse a source whose key may name other principals' tokens too (for a shared store).

    A source says so through an optional ``unidentified`` attribute: what of its token request
    the key cannot tell apart, or ``None``. Sources without it are trusted to name their token.
    """
    unidentified = getattr(source, "unidentified", None)
    if unidentified is not None:
        raise ConfigurationError(
            f"{unidentified}, so its identity cannot be derived: in a shared store this manager "
            "could be handed another principal's token. Pass key='...' naming the token "
            "(FunctionSource(fn, key=...) or the grant's key=)"
        )


def run_coroutine_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run an async callable to completion from synchronous code.

    In a thread with no running loop this is ``asyncio.run``; inside a running loop (a sync
    ``get()`` called from async code) the coroutine runs on a fresh loop in a helper thread, so the
    caller's loop is never re-entered.
    """

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, T] = {}
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=runner, name="freshtoken-sync-bridge", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box["value"]


def unidentified_input(role: str, fn: object) -> str | None:
    """``"the <role> <name> is <kind>"`` when ``fn`` is an underivable callable, else ``None``."""
    kind = underivable(fn) if callable(fn) else None
    return None if kind is None else f"the {role} {callable_name(fn)} is {kind}"


class FunctionSource:
    """A token source around a callable returning a ``str``, a token-response mapping or a Token.

    ``fn`` may be sync or async; it is called with no arguments, once per fetch. A string is taken
    as the access token (a JWT's ``exp`` gives its expiry); a mapping is parsed as an RFC 6749 §5.1
    response. Anything else, ``None`` included, raises :class:`~freshtoken.TokenResponseError`. An
    exception raised by ``fn`` reaches the caller as :class:`~freshtoken.TokenRequestError` with
    the original chained as ``__cause__`` (freshtoken's own errors pass through as they are).

    ``key`` names the token in a shared store (default: the callable's module and qualified name,
    which identifies the token only for a plain module-level function; see :func:`underivable`).
    """

    __slots__ = ("_fn", "_is_async", "_key", "_unidentified")

    def __init__(self, fn: TokenFunction, *, key: str | None = None) -> None:
        if not callable(fn):
            raise TypeError("FunctionSource needs a callable returning a token")
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async __call__ on an object
        )
        given = check_key(key)
        self._key = f"function:{callable_name(fn)}" if given is None else given
        self._unidentified = None if given is not None else unidentified_input("token callable", fn)

    @property
    def key(self) -> str:
        return self._key

    @property
    def unidentified(self) -> str | None:
        """What the key cannot tell apart (see :func:`require_identity`), or ``None``."""
        return self._unidentified

    def __repr__(self) -> str:
        return f"FunctionSource({self._key!r})"

    def _name(self) -> str:
        return self._key.removeprefix("function:")

    def _convert(self, value: object, ctx: FetchContext) -> Token:
        if isinstance(value, Token):
            return value
        if isinstance(value, str):
            value = {"access_token": value}
        if value is None:
            raise TokenResponseError(
                f"the token callable {self._name()} returned None instead of a token "
                "(no access_token)",
                field="access_token",
            )
        if isinstance(value, Mapping):
            return ctx.note_skew(parse_token_response(value, now=ctx.clock.time()))
        raise TokenResponseError(
            f"the token callable {self._name()} returned {type(value).__name__}; expected a str, "
            "a token-response mapping or a Token",
        )

    def _wrapped(self, error: Exception) -> TokenRequestError:
        return TokenRequestError(
            f"the token callable {self._name()} raised {describe_error(error)}"
        )

    def _sends_refresh_token(self, ctx: FetchContext) -> bool:
        """A token function is called without arguments: it never sends the store's token."""
        return False

    def fetch(self, ctx: FetchContext) -> Token:
        try:
            if self._is_async:
                value: object = run_coroutine_sync(self._fn)  # type: ignore[arg-type]
            else:
                value = self._fn()
                if inspect.isawaitable(value):
                    awaitable = value
                    value = run_coroutine_sync(lambda: awaitable)
        except FreshTokenError:
            raise
        except Exception as error:
            raise self._wrapped(error) from error
        return self._convert(value, ctx)

    async def afetch(self, ctx: FetchContext) -> Token:
        try:
            if self._is_async:
                value: object = await self._fn()  # type: ignore[misc]
            else:
                value = await asyncio.to_thread(self._fn)
                if inspect.isawaitable(value):
                    value = await value
        except FreshTokenError:
            raise
        except Exception as error:
            raise self._wrapped(error) from error
        return self._convert(value, ctx)
