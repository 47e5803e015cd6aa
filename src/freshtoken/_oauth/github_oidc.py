"""GitHub Actions OIDC: the runner's ID token as a token source, assertion or subject token.

A job granted ``permissions: id-token: write`` finds two variables in its environment:
``ACTIONS_ID_TOKEN_REQUEST_URL`` (the runner's ID-token endpoint, with its query string) and
``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` (a bearer token for that endpoint). ``GET <url>&audience=<aud>``
with that bearer token answers ``{"value": "<JWT>"}``: an ID token whose ``aud`` is the audience
asked for, which cloud providers and token endpoints trust as a federated credential.

The ID token lives a few minutes; asking for one per token request would double every request,
so it is kept until shortly before its ``exp`` (:func:`reuse_margin`). Inside a grant the request
runs as part of the grant's own flow, so ``aget()`` never blocks its loop on it; called on its
own (``source()``), it is fetched in the calling thread.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Generator, Mapping
from urllib.parse import quote, urlsplit

from freshtoken._core.errors import ConfigurationError, TokenResponseError
from freshtoken._core.policy import RefreshPolicy
from freshtoken._core.token import Token, parse_token_response
from freshtoken._runtime.credential import NamedCredential
from freshtoken._runtime.forksafe import fork_safe_lock
from freshtoken._runtime.source import FetchContext

from .discovery import check_url
from .http import HttpRequest, HttpResponse, Reply, Step
from .response import describe_body, is_json, read_json
from .retry import exchange
from .sender import OwnClients, run_async, run_sync

__all__ = ["REQUEST_TOKEN_VARIABLE", "REQUEST_URL_VARIABLE", "GitHubActionsOIDC", "reuse_margin"]

REQUEST_URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"

#: How long a standalone call (``source()``) may spend on the runner's endpoint, retries included.
STANDALONE_DEADLINE = 30.0


def reuse_margin(lifetime: float) -> float:
    """Seconds before its ``exp`` at which a cached ID token is no longer handed out.

    A minute for the usual 5 to 10 minute ID tokens (the token endpoint that receives it must still
    find it valid after the request's round trip and a clock difference), half the life for a
    shorter one, so a short-lived token is still reused at all.
    """
    return min(60.0, max(0.0, lifetime) / 2)


class GitHubActionsOIDC(NamedCredential):
    """``GitHubActionsOIDC(audience=None)``: the GitHub Actions runner's OIDC ID token.

    Use it as a token source (``TokenManager(GitHubActionsOIDC(audience="api://x"))``), as a
    grant's ``assertion`` or ``subject_token``, or as client authentication
    (``auth=ClientAssertion(GitHubActionsOIDC(...))``). ``audience`` is the ``aud`` the ID token is
    minted for (the runner's default, the repository owner's URL, when ``None``). The runner's URL
    and bearer token are read from the environment when a token is needed; both missing raises
    :class:`~freshtoken.ConfigurationError` saying which variable and why it may be absent. The
    bearer token is never logged, shown or put in an error.

    Its identity in a shared store is the audience and the runner's endpoint (a digest), so no
    ``key=`` is needed: two jobs never share one record.
    """

    __slots__ = ("_audience", "_cached", "_clients", "_lock", "_random", "_timeout", "fetches")

    def __init__(self, audience: str | None = None, *, timeout: float | None = None) -> None:
        if audience is not None and (not isinstance(audience, str) or not audience.strip()):
            raise ConfigurationError("GitHubActionsOIDC audience must be a non-empty string")
        if audience is not None and (
            not audience.isascii() or any(not ch.isprintable() for ch in audience)
        ):
            raise ConfigurationError("GitHubActionsOIDC audience must be printable ASCII")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ConfigurationError("GitHubActionsOIDC timeout must be a positive number")
        self._audience = audience
        self._timeout = None if timeout is None else float(timeout)
        self._lock = fork_safe_lock()
        self._cached: tuple[str, float] | None = None  # (ID token, wall time it stops being used)
        self._clients = OwnClients()
        self._random = random.Random()
        #: How many ID tokens were requested from the runner (the rest came from the cache).
        self.fetches = 0

    @property
    def audience(self) -> str | None:
        return self._audience

    def __repr__(self) -> str:
        return f"GitHubActionsOIDC(audience={self._audience!r})"

    # -- the environment ---------------------------------------------------------------------

    @staticmethod
    def _environment() -> tuple[str, str]:
        url = os.environ.get(REQUEST_URL_VARIABLE, "")
        token = os.environ.get(REQUEST_TOKEN_VARIABLE, "")
        for name, value in ((REQUEST_URL_VARIABLE, url), (REQUEST_TOKEN_VARIABLE, token)):
            if not value:
                raise ConfigurationError(
                    f"{name} is not set: GitHub Actions gives a job an OIDC token only when the "
                    "workflow or job grants `permissions: id-token: write` (and never to "
                    "workflows run from a fork's pull request)"
                )
        check_url(url, REQUEST_URL_VARIABLE, allow_insecure_http=False)
        if not token.isascii() or any(not 33 <= ord(ch) <= 126 for ch in token):
            raise ConfigurationError(f"{REQUEST_TOKEN_VARIABLE} is not a header-safe token")
        return url, token

    def _request_url(self, url: str) -> str:
        if self._audience is None:
            return url
        joiner = "&" if urlsplit(url).query else "?"
        return f"{url}{joiner}audience={quote(self._audience, safe='')}"

    @property
    def key(self) -> str:
        """``github-actions-oidc:<digest of endpoint and audience>``."""
        url, _ = self._environment()
        material = f"{self._request_url(url)}\n{self._audience or ''}".encode()
        return "github-actions-oidc:" + hashlib.sha256(material).hexdigest()[:32]

    # -- the flow ----------------------------------------------------------------------------

    def cached(self, now: float) -> str | None:
        """The kept ID token when it may still be handed out at wall time ``now``."""
        with self._lock:
            if self._cached is not None and now < self._cached[1]:
                return self._cached[0]
        return None

    def flow(
        self,
        *,
        clock_time: Callable[[], float],
        clock_monotonic: Callable[[], float],
        deadline: float,
        policy: RefreshPolicy,
        max_attempts: int = 3,
        reuse: bool = True,
    ) -> Generator[Step, Reply, str]:
        """The current ID token: the kept one (with ``reuse``), or one asked of the runner; a
        sans-I/O flow. ``clock_time`` must be the real wall clock: the ID token's ``exp`` is."""
        kept = self.cached(clock_time()) if reuse else None
        if kept is not None:
            return kept
        url, bearer = self._environment()
        request_url = self._request_url(url)

        def build() -> HttpRequest:
            return HttpRequest(
                "GET",
                request_url,
                {"Authorization": f"Bearer {bearer}", "Accept": "application/json"},
                timeout=self._timeout,
                max_time=deadline - clock_monotonic(),
            )

        done = yield from exchange(
            build,
            clock_time=clock_time,
            clock_monotonic=clock_monotonic,
            deadline=deadline,
            policy=policy,
            max_attempts=max_attempts,
            draw=self._random.random,
            what="GitHub Actions ID-token endpoint",
        )
        value = _id_token(done.response)
        with self._lock:
            self.fetches += 1
        parsed = parse_token_response({"access_token": value}, now=done.sent_at)
        self._keep(value, parsed.token, done.sent_at)
        return value

    def _keep(self, value: str, token: Token, received: float) -> None:
        if token.expires_at is None:
            return  # no exp: nothing tells how long it may be reused
        expires = token.expires_at.timestamp()
        until = expires - reuse_margin(expires - received)
        with self._lock:
            self._cached = (value, until)

    # -- a callable credential ---------------------------------------------------------------

    def __call__(self) -> str:
        """The current ID token; asks the runner in this thread when none is kept."""
        kept = self.cached(time.time())
        if kept is not None:
            return kept
        flow = self.flow(
            clock_time=time.time,
            clock_monotonic=time.monotonic,
            deadline=time.monotonic() + STANDALONE_DEADLINE,
            policy=RefreshPolicy(),
        )
        return run_sync(flow, self._clients.sync_client())

    # -- a token source ----------------------------------------------------------------------

    def _sends_refresh_token(self, ctx: FetchContext) -> bool:
        return False

    def prepare(self, ctx: FetchContext) -> Generator[Step, Reply, str]:
        """Inside a grant's flow: make sure an ID token is kept, so that the grant's request,
        built synchronously, finds it without I/O (and ``aget()`` never blocks its loop)."""
        return (
            yield from self.flow(
                clock_time=time.time,
                clock_monotonic=ctx.clock.monotonic,
                deadline=ctx.deadline,
                policy=ctx.policy,
            )
        )

    def _token_flow(self, ctx: FetchContext) -> Generator[Step, Reply, Token]:
        # As a source the manager is the cache: it asks only when it wants a new token, and
        # handing back the kept one would make it ask again at once.
        value = yield from self.flow(
            clock_time=time.time,
            clock_monotonic=ctx.clock.monotonic,
            deadline=ctx.deadline,
            policy=ctx.policy,
            reuse=False,
        )
        return ctx.note_skew(parse_token_response({"access_token": value}, now=ctx.clock.time()))

    def fetch(self, ctx: FetchContext) -> Token:
        """The ID token as an access token (its ``exp`` is its expiry)."""
        client = ctx.http if ctx.http is not None else self._clients.sync_client()
        return run_sync(self._token_flow(ctx), client)

    async def afetch(self, ctx: FetchContext) -> Token:
        """As :meth:`fetch`, on the running loop."""
        client = ctx.async_http if ctx.async_http is not None else self._clients.async_client()
        return await run_async(self._token_flow(ctx), client)

    def close(self) -> None:
        """Close the HTTP clients this source opened for itself."""
        self._clients.close()

    async def aclose(self) -> None:
        await self._clients.aclose()


def _id_token(response: HttpResponse) -> str:
    """The ``value`` of the runner's answer; a typed error naming what was wrong."""
    status = response.status
    if status in (401, 403):
        raise ConfigurationError(
            f"the GitHub Actions ID-token endpoint refused the request (HTTP {status}): "
            f"{REQUEST_TOKEN_VARIABLE} is not valid for it (did its job end?)"
        )
    if status != 200 or not is_json(response):
        raise TokenResponseError(
            f"the GitHub Actions ID-token endpoint answered HTTP {status} with "
            f"{describe_body(response)}, not a JSON ID-token response",
            status=status,
        )
    data = read_json(response, what="GitHub Actions ID-token response")
    value = data.get("value") if isinstance(data, Mapping) else None
    if not isinstance(value, str) or not value.strip():
        raise TokenResponseError(
            "the GitHub Actions ID-token response has no string `value`", status=status
        )
    return value.strip()
