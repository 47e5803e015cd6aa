"""The HTTP integrations' decisions, written once for httpx, requests and aiohttp.

Each integration (:mod:`freshtoken.httpx`, :mod:`freshtoken.requests`, :mod:`freshtoken.aiohttp`)
is a thin driver around :func:`authorize`, a generator in the manner of httpx's auth flows. The flow
decides; the driver does the I/O its library asks for:

* the flow yields :data:`NEED_TOKEN`: the driver answers with ``manager.get()`` (threads) or
  ``await manager.aget()`` (asyncio), through :func:`token_sync` / :func:`token_async`;
* the flow yields a :class:`Send`: the driver puts ``send.headers`` on the request (``None``: sends
  it as it is), sends it, and answers with an :class:`Outcome` describing the response.

What the flow decides:

* whether the token goes on this request at all (:class:`OriginScope`: only to its origins, and
  never over plain ``http://`` to a host other than loopback unless the user opted in);
* the header that presents the token (:func:`present`, the one place a token becomes a header, so
  that DPoP proofs can slot in later);
* what a 401 or 403 to a request that carried the token asks for, read from its
  ``WWW-Authenticate`` challenge (:mod:`~freshtoken._http_auth.challenges`): "this token was
  refused, fetch another" (401 ``invalid_token``), or a scope or a step-up that no new token of
  the same grant would bring, raised as :class:`~freshtoken.InsufficientScope` /
  :class:`~freshtoken.StepUpRequired` without a token request;
* whether the request can be sent again (:func:`replayable`: only bodies held in memory) and then
  replaying it once with a new token, after a compare-and-invalidate of the refused one, so that
  fifty concurrent 401s for one token cause one token request.

Nothing here logs a token: log records name tokens by fingerprint only.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from freshtoken._core.errors import ConfigurationError
from freshtoken._core.token import Token
from freshtoken._oauth.http import is_loopback
from freshtoken._runtime.forksafe import fork_safe_lock

from .challenges import REFRESH, Challenge, Decision, decide, parse_challenges

if TYPE_CHECKING:
    from freshtoken._runtime.manager import TokenManager

__all__ = [
    "NEED_TOKEN",
    "Attempt",
    "Challenge",
    "Flow",
    "Origin",
    "OriginScope",
    "Outcome",
    "Send",
    "authorize",
    "fast_path",
    "is_loopback",
    "logger",
    "needs_recovery",
    "parse_challenges",
    "parse_origin",
    "present",
    "recover",
    "replayable",
    "token_async",
    "token_refused",
    "token_sync",
]

logger = logging.getLogger("freshtoken.http")

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: ``(scheme, host, port)``, lower-cased, with the scheme's default port filled in.
Origin = tuple[str, str, int]


# -- origins ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def origin_of(scheme: str, host: str, port: int | None) -> Origin:
    """The normalised origin of a URL given in parts (``port=None``: the scheme's default).

    Called once per request with the parts the HTTP library already parsed; cached, since a
    client talks to a few origins many times.
    """
    scheme = scheme.lower()
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return (scheme, host, port)


def origin_from_url(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL, or ``None`` when it has none.

    Called once per request: the part before the path is looked up in a small cache, so that a
    client talking to a few hosts parses each origin once, not once per request.
    """
    cut = url.find("/", url.find("//") + 2)
    return _origin_of_prefix(url if cut < 0 else url[:cut])


@functools.lru_cache(maxsize=256)
def _origin_of_prefix(url: str) -> Origin | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return origin_of(parts.scheme, parts.hostname, port)


def parse_origin(text: str) -> Origin:
    """Read one ``origins=`` entry: ``scheme://host[:port]``, nothing more (a ``/`` is allowed)."""
    if not isinstance(text, str):
        raise ConfigurationError(
            f"origins must be strings like 'https://api.example.com', got {type(text).__name__}"
        )
    if "@" in text:  # checked first: the messages below quote the text, and this may be a password
        raise ConfigurationError("an origin must not carry credentials (user:password@)")
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"origin {text!r} has an invalid port") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigurationError(f"origin {text!r} is not of the form http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"origin {text!r} has a path, query or fragment; an origin is scheme://host[:port]"
        )
    origin = origin_of(parts.scheme, parts.hostname, port)
    if not origin[1]:  # "https://." names no host once the root dot is dropped
        raise ConfigurationError(f"origin {text!r} is not of the form http(s)://host[:port]")
    return origin


def format_origin(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class OriginScope:
    """Which origins the token may be sent to.

    Given ``origins``, exactly those. Without, the origin of the first request it is asked about
    (the first request the integration authenticates), learned once. Plain ``http://`` origins
    must be loopback unless ``allow_insecure_http``: a bearer token sent in clear text is a
    token given away.
    """

    __slots__ = ("_allow_insecure_http", "_lock", "_origins")

    def __init__(
        self, origins: Iterable[str] | str | None = None, *, allow_insecure_http: bool = False
    ) -> None:
        self._allow_insecure_http = bool(allow_insecure_http)
        self._lock = fork_safe_lock()
        self._origins: frozenset[Origin] | None = None
        if origins is None:
            return
        if isinstance(origins, str):
            origins = [origins]
        try:
            parsed = frozenset(parse_origin(entry) for entry in origins)
        except TypeError:
            raise ConfigurationError(
                "origins must be an iterable of strings like 'https://api.example.com'"
            ) from None
        if not parsed:
            raise ConfigurationError("origins is empty: the token would never be sent")
        for origin in parsed:
            self._check_transport(origin)
        self._origins = parsed

    @property
    def origins(self) -> frozenset[str] | None:
        """The allowed origins as ``scheme://host:port`` strings (``None``: not learned yet)."""
        if self._origins is None:
            return None
        return frozenset(format_origin(origin) for origin in self._origins)

    def _check_transport(self, origin: Origin) -> None:
        scheme, host, _ = origin
        if scheme == "http" and not self._allow_insecure_http and not is_loopback(host):
            raise ConfigurationError(
                f"refusing to send a token over plain http to {format_origin(origin)}; use https, "
                "or pass allow_insecure_http=True if this network is trusted"
            )

    def admits(self, origin: Origin) -> bool:
        """Whether the token may go to ``origin``; the first origin asked about is learned.

        Raises :class:`~freshtoken.ConfigurationError` when the origin to be learned is plain
        http to a non-loopback host (the caller meant to authenticate that request; sending it
        without a token would only hide the mistake).
        """
        allowed = self._origins
        if allowed is not None:
            return origin in allowed
        self._check_transport(origin)
        with self._lock:
            if self._origins is None:
                self._origins = frozenset({origin})
                logger.debug(
                    "token scoped to %s (the first request's origin)", format_origin(origin)
                )
            return origin in self._origins


class Authenticator:
    """What every integration holds: the manager, and the origins its token may go to.

    ``origins``: the ``scheme://host[:port]`` origins the token may be sent to (default: the
    origin of the first request seen). Requests to other origins go out without a token.
    ``allow_insecure_http``: allow plain ``http://`` origins other than loopback.
    """

    def __init__(
        self,
        manager: TokenManager,
        *,
        origins: Iterable[str] | str | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        from freshtoken._runtime.manager import TokenManager

        if not isinstance(manager, TokenManager):
            raise ConfigurationError(
                f"{type(self).__name__} needs a freshtoken.TokenManager, "
                f"got {type(manager).__name__}"
            )
        self._manager = manager
        self._scope = OriginScope(origins, allow_insecure_http=allow_insecure_http)

    @property
    def manager(self) -> TokenManager:
        return self._manager

    @property
    def origins(self) -> frozenset[str] | None:
        """The origins the token goes to (``None`` until the first request, when not given)."""
        return self._scope.origins

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{name} {self._manager!r} origins={self._scope.origins}>"


# -- presenting a token ------------------------------------------------------------------------


def present(token: Token, method: str, url: object) -> dict[str, str]:
    """The headers that present ``token`` on a ``method`` request to ``url``.

    ``url`` is the request URL as the HTTP library holds it (a string, an ``httpx.URL``, a
    ``yarl.URL``): ``str(url)`` is taken only when a proof needs it, not on every request.

    Bearer (RFC 6750 §2.1) today. This is the single place where a token becomes a header, so a
    DPoP proof (RFC 9449), which is bound to ``method`` and ``url``, will be made here.
    """
    if token.token_type == "Bearer":
        return {"Authorization": token.authorization}
    raise ConfigurationError(
        f"the HTTP integrations present Bearer tokens; this token is of type "
        f"{token.token_type!r} (DPoP proofs are not supported yet)"
    )


# -- reading challenges ----------------------------------------------------------------------


def token_refused(status: int, www_authenticate: str | None) -> bool:
    """Whether a response says the token itself was refused, so a new one may succeed.

    Only a 401 can say so (a 403 is about what the token may do: a new token with the same grant
    changes nothing). A 401 whose Bearer challenge names ``invalid_request``,
    ``insufficient_scope`` or ``insufficient_user_authentication`` is not about the token either;
    a 401 with ``invalid_token``, a Bearer challenge without an error code, or no challenge at all
    (common) is. The table is :func:`~freshtoken._http_auth.challenges.decide`'s.
    """
    return decide(status, www_authenticate).action == REFRESH


# -- replaying a request ---------------------------------------------------------------------


def replayable(body: object) -> bool:
    """Whether a request body can be sent a second time exactly as the first.

    Bodies held in memory can: none, ``bytes``, ``str`` (a form or JSON body is encoded to one of
    these by every library). Streams, iterators, generators and files cannot: the first attempt
    consumed them, and a replay would send something else, or nothing.
    """
    return body is None or isinstance(body, bytes | bytearray | memoryview | str)


# -- the flow --------------------------------------------------------------------------------


class _NeedToken:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_TOKEN"


#: Yielded by the flow: answer with a usable token from the manager.
NEED_TOKEN = _NeedToken()


class Send:
    """Yielded by the flow: set ``headers`` on the request (``None``: leave it), send it, and
    answer with an :class:`Outcome`. (A plain slotted class: one is made per request.)"""

    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str] | None) -> None:
        self.headers = headers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Send) and other.headers == self.headers

    def __hash__(self) -> int:
        return hash(None if self.headers is None else tuple(sorted(self.headers.items())))

    def __repr__(self) -> str:
        return "Send(headers=...)" if self.headers is not None else "Send(headers=None)"


class Outcome(Protocol):
    """What the flow needs to know about a response; each library implements it lazily."""

    @property
    def status(self) -> int: ...

    def www_authenticate(self) -> str | None:
        """All ``WWW-Authenticate`` values, joined with ``", "``."""

    def sent_authorization(self) -> str | None:
        """The ``Authorization`` header of the request this response answers (after redirects,
        the last hop's)."""

    def body_replayable(self) -> bool:
        """Whether the request can be sent again (see :func:`replayable`)."""

    def discard(self) -> None:
        """Done with this response before a replay (read it to the end and release it) —
        or nothing, where the library does that itself."""


Flow = Generator["_NeedToken | Send", "Token | Outcome", None]

#: Set while an integration obtains a token, so that a token request made through the same
#: client (a FunctionSource calling the same session) passes through untouched instead of asking
#: the manager for the token it is busy fetching (which would wait for itself).
_ACQUIRING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "freshtoken_acquiring", default=False
)


def token_sync(manager: TokenManager) -> Token:
    """``manager.get()``, marked as token acquisition (see ``_ACQUIRING``) when it has to
    fetch."""
    token = manager._fresh()
    if token is not None:
        return token
    mark = _ACQUIRING.set(True)
    try:
        return manager.get()
    finally:
        _ACQUIRING.reset(mark)


async def token_async(manager: TokenManager) -> Token:
    """``await manager.aget()``, marked as token acquisition (see ``_ACQUIRING``). Drivers
    try ``manager._fresh()`` first: a fresh token needs no coroutine."""
    mark = _ACQUIRING.set(True)
    try:
        return await manager.aget()
    finally:
        _ACQUIRING.reset(mark)


def authorize(
    manager: TokenManager, scope: OriginScope, origin: Origin | None, method: str, url: object
) -> Flow:
    """Send one request with a fresh token; on a 401 for it, invalidate it and replay once.

    The flow ends after the last response it was sent; the driver returns that response. A
    request to an origin the token may not go to is sent as it is, and so is a request made while
    the token is being obtained (a token request through the same client).
    """
    if _ACQUIRING.get() or origin is None or not scope.admits(origin):
        yield Send(None)
        return
    token = yield NEED_TOKEN
    assert isinstance(token, Token)
    headers = present(token, method, url)
    outcome = yield Send(headers)
    assert not isinstance(outcome, Token)
    yield from recover(manager, Attempt(origin, method, url, token, headers), outcome)


class Attempt:
    """A request about to be sent with ``token`` in ``headers``: what :func:`recover` needs to
    know of it if the answer is a 401. (A plain slotted class: one is made per request.)"""

    __slots__ = ("headers", "method", "origin", "token", "url")

    def __init__(
        self, origin: Origin, method: str, url: object, token: Token, headers: dict[str, str]
    ) -> None:
        self.origin = origin
        self.method = method
        self.url = url
        self.token = token
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Attempt {self.method} {format_origin(self.origin)} {self.token.fingerprint}>"


def fast_path(
    manager: TokenManager, scope: OriginScope, origin: Origin | None, method: str, url: object
) -> Attempt | None:
    """The first step of :func:`authorize` for the common case, without a generator: the token
    may go to ``origin`` and a fresh one is cached. Returns the attempt (its ``headers`` go on
    the request), or ``None`` when the driver must run :func:`authorize` (another origin, a
    token request in progress, or no fresh token at hand).

    A generator, its ``Send`` steps and its ``StopIteration`` cost a few microseconds, as much as
    everything else an integration does for a request; on aiohttp's ~100 µs requests that was
    6 % (``benchmarks/http_instructions.py``). The drivers take this path first, send, and start
    the :func:`recover` flow only when :func:`needs_recovery` says the answer calls for it.
    """
    if origin is None or _ACQUIRING.get() or not scope.admits(origin):
        return None
    token = manager._fresh()
    if token is None:
        return None
    return Attempt(origin, method, url, token, present(token, method, url))


def needs_recovery(status: int) -> bool:
    """Whether the answer to a request that carried the token needs :func:`recover`: a 401 (the
    token may have been refused) or a 403 (its challenge may name a missing scope)."""
    return status in (401, 403)


def _raise_typed(decision: Decision, outcome: Outcome, token: Token, where: str) -> None:
    """Raise the typed error ``decision`` stands for (if any), after releasing the response."""
    error = decision.error(sent=(token.access_token, token.refresh_token or ""))
    if error is None:
        return
    error.token = token
    logger.debug(
        "HTTP %d from %s for token %s: %s; not refreshed",
        decision.status,
        where,
        token.fingerprint,
        decision.action,
    )
    outcome.discard()
    raise error


def recover(manager: TokenManager, attempt: Attempt, outcome: Outcome) -> Flow:
    """The rest of :func:`authorize`, from the answer (``outcome``) to ``attempt``: on a 401 for
    its token, invalidate that token and replay the request once with a new one; on a challenge
    naming a missing scope or a step-up, raise the typed error (no token request: see
    :mod:`~freshtoken._http_auth.challenges`)."""
    origin, method, url = attempt.origin, attempt.method, attempt.url
    token, headers = attempt.token, attempt.headers
    if not needs_recovery(outcome.status):
        return
    where = format_origin(origin)
    if outcome.sent_authorization() != headers["Authorization"]:
        logger.debug(
            "HTTP %d from %s for a request that did not carry the token", outcome.status, where
        )
        return
    decision = decide(outcome.status, outcome.www_authenticate())
    _raise_typed(decision, outcome, token, where)
    if decision.action != REFRESH:
        logger.debug(
            "HTTP %d from %s for token %s: the challenge is not about the token",
            outcome.status,
            where,
            token.fingerprint,
        )
        return
    manager.invalidate(token)
    if not outcome.body_replayable():
        logger.debug(
            "401 from %s for token %s: invalidated; not replayed, the request body is a stream",
            where,
            token.fingerprint,
        )
        return
    fresh = yield NEED_TOKEN
    assert isinstance(fresh, Token)
    replay = present(fresh, method, url)
    if fresh.access_token == token.access_token:
        logger.debug(
            "401 from %s for token %s: the source gave the same token again; not replayed",
            where,
            token.fingerprint,
        )
        return
    logger.debug(
        "401 from %s for token %s: replaying once with token %s",
        where,
        token.fingerprint,
        fresh.fingerprint,
    )
    outcome.discard()
    final = yield Send(replay)
    assert not isinstance(final, Token)
    if not needs_recovery(final.status):
        return
    decision = decide(final.status, final.www_authenticate())
    _raise_typed(decision, final, fresh, where)
    if decision.action == REFRESH:
        # The second 401 goes back to the caller (one replay only), but the token it refused is
        # dropped too, so the next request fetches instead of earning the same 401. This happens
        # when one event revoked both tokens (a revocation of every token of the client).
        manager.invalidate(fresh)
        logger.debug(
            "401 from %s for the replayed token %s too: invalidated, returned as it is",
            where,
            fresh.fingerprint,
        )
