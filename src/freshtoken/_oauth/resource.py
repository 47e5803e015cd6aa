"""OAuth 2.0 Protected Resource Metadata (RFC 9728): which authorization server a resource trusts.

A resource publishes ``/.well-known/oauth-protected-resource`` (for a resource with a path, the
well-known segment goes between host and path, RFC 9728 §3.1), and names that URL in the
``resource_metadata`` parameter of its 401 challenge (§5.1). The document gives the resource's
identifier (``resource``, what a client sends as its RFC 8707 ``resource``) and the issuers of the
authorization servers that issue tokens for it (``authorization_servers``); the Model Context
Protocol's authorization rules have clients learn their authorization server this way.

The checks are those of discovery (``_oauth/discovery.py``), for the same reason: a document that
could name any identifier or any server would send tokens elsewhere. ``resource`` must be exactly
the identifier the metadata URL was derived from (§3.3), every authorization server an ``https``
URL (plain ``http`` to loopback only, unless ``allow_insecure_http``), the body strict JSON of at
most :data:`~freshtoken._core.token.MAX_RESPONSE_BYTES`, and redirects are not followed. A document
that breaks a rule raises :class:`~freshtoken.ConfigurationError` naming the field; an unreachable
resource is retried like a token request and ends in :class:`~freshtoken.TokenEndpointUnavailable`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

from freshtoken._core.errors import ConfigurationError, TokenResponseError
from freshtoken._core.policy import RefreshPolicy
from freshtoken._core.redact import safe_server_text
from freshtoken._runtime.clock import SYSTEM_CLOCK
from freshtoken._runtime.forksafe import fork_safe_lock

from .discovery import check_url, discover
from .http import HttpRequest, Reply, Step, safe_url
from .response import is_json, read_json
from .retry import DEFAULT_MAX_ATTEMPTS, exchange
from .sender import OwnClients, run_async, run_sync

__all__ = [
    "WELL_KNOWN",
    "Lookup",
    "ResourceMetadata",
    "RetryOptions",
    "adiscover_resource",
    "clear_cache",
    "discover_resource",
    "fetch_metadata",
    "metadata_location",
    "token_endpoint",
]

#: RFC 9728 §3: the well-known URI suffix.
WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: More authorization servers than this in one document is not a configuration but an attack.
_MAX_SERVERS = 32
#: Seconds a standalone :func:`discover_resource` may take, retries included.
_STANDALONE_TIME = 30.0

_CACHE: dict[str, ResourceMetadata] = {}
_CACHE_LOCK = fork_safe_lock()


def clear_cache() -> None:
    """Forget every protected-resource document the grants fetched (tests; a moved server)."""
    with _CACHE_LOCK:
        _CACHE.clear()


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """A protected resource's RFC 9728 metadata, checked.

    ``resource``: its identifier (send it as RFC 8707 ``resource``). ``authorization_servers``:
    the issuer URLs of the authorization servers it accepts tokens from, in the document's order.
    ``scopes_supported``: the scopes it names (empty when it names none). ``metadata_url``: where
    the document was read.
    """

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...]
    metadata_url: str


def metadata_location(url: str, *, allow_insecure_http: bool = False) -> tuple[str, str]:
    """(metadata URL, expected resource identifier) for ``url``: the resource's URL, or its
    metadata URL (a URL whose path starts with the well-known segment).

    RFC 9728 §3.1: ``https://api.example.com/v1`` has its metadata at
    ``https://api.example.com/.well-known/oauth-protected-resource/v1``, and the other way round.
    """
    check_url(url, "the resource URL", allow_insecure_http=allow_insecure_http)
    parts = urlsplit(url)
    path = parts.path
    if path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/"):
        rest = path[len(WELL_KNOWN) :]
        return url, urlunsplit((parts.scheme, parts.netloc, rest, parts.query, ""))
    inserted = "" if path == "/" else path  # §3.1: the terminating slash after the host goes
    metadata = urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + inserted, parts.query, ""))
    return metadata, url


def _same_resource(claimed: str, expected: str) -> bool:
    """Exact equality, except that an empty path and ``/`` are the same (RFC 3986 §6.2.3)."""
    if claimed == expected:
        return True
    if urlsplit(expected).path not in ("", "/") or urlsplit(expected).query:
        return False
    return claimed in (expected + "/", expected.removesuffix("/"))


def _shown(value: object) -> str:
    return repr(safe_server_text(value, 120)) if isinstance(value, str) else "none"


def _checked(
    document: object, *, url: str, expected: str, allow_insecure_http: bool
) -> ResourceMetadata:
    where = f"the protected-resource metadata at {safe_url(url)}"
    if not isinstance(document, dict):
        raise ConfigurationError(f"{where} is not a JSON object")
    claimed = document.get("resource")
    if not isinstance(claimed, str) or not _same_resource(claimed, expected):
        raise ConfigurationError(
            f"{where} names resource {_shown(claimed)}, not {expected!r}: a document must "
            "describe the resource it was fetched for (RFC 9728 §3.3)"
        )
    servers = document.get("authorization_servers")
    if not isinstance(servers, list) or not servers:
        raise ConfigurationError(
            f"{where} has no authorization_servers (a non-empty list of issuer URLs)"
        )
    if len(servers) > _MAX_SERVERS:
        raise ConfigurationError(
            f"{where} lists {len(servers)} authorization_servers, more than {_MAX_SERVERS}"
        )
    for index, server in enumerate(servers):
        what = f"authorization_servers[{index}] of {where}"
        if not isinstance(server, str):
            raise ConfigurationError(f"{what} is not a string")
        check_url(server, what, allow_insecure_http=allow_insecure_http)
        if urlsplit(server).query:
            raise ConfigurationError(f"{what} has a query, which an issuer may not (RFC 8414 §2)")
    scopes = document.get("scopes_supported")
    kept = (
        tuple(scopes)
        if isinstance(scopes, list) and all(isinstance(scope, str) for scope in scopes)
        else ()
    )
    return ResourceMetadata(claimed, tuple(dict.fromkeys(servers)), kept, url)


class RetryOptions(TypedDict):
    """The keyword arguments of :func:`~freshtoken._oauth.retry.exchange` a fetch fixes."""

    clock_time: Callable[[], float]
    clock_monotonic: Callable[[], float]
    deadline: float
    policy: RefreshPolicy
    max_attempts: int
    draw: Callable[[], float]


@dataclass(frozen=True, slots=True)
class Lookup:
    """How the lookups of one fetch are made: the transport rule and the retry budget."""

    allow_insecure_http: bool
    timeout: float | None
    retry: RetryOptions

    def discover(self, issuer: str) -> Generator[Step, Reply, str]:
        """The token endpoint of ``issuer`` (RFC 8414 / OIDC discovery, cached)."""
        return discover(
            issuer, allow_insecure_http=self.allow_insecure_http, timeout=self.timeout, **self.retry
        )


def fetch_metadata(
    url: str, lookup: Lookup, *, cache: bool = False
) -> Generator[Step, Reply, ResourceMetadata]:
    """The checked metadata of the resource ``url`` names (see :func:`metadata_location`);
    a sans-I/O flow. ``cache``: keep it for the life of the process, per metadata URL."""
    metadata_url, expected = metadata_location(url, allow_insecure_http=lookup.allow_insecure_http)
    if cache:
        with _CACHE_LOCK:
            cached = _CACHE.get(metadata_url)
        if cached is not None:
            return cached

    def build() -> HttpRequest:
        return HttpRequest(
            "GET",
            metadata_url,
            {"Accept": "application/json"},
            timeout=lookup.timeout,
            max_time=lookup.retry["deadline"] - lookup.retry["clock_monotonic"](),
        )

    done = yield from exchange(build, what="protected-resource metadata endpoint", **lookup.retry)
    response = done.response
    if response.status != 200 or not is_json(response):
        why = f"HTTP {response.status}"
        if 300 <= response.status < 400:
            why += ", a redirect: metadata is never fetched through one"
        elif response.status == 200:
            why += ", not JSON"
        raise ConfigurationError(
            f"no protected-resource metadata at {safe_url(metadata_url)} ({why}); RFC 9728 §3"
        )
    try:
        document = read_json(response, what="protected-resource metadata")
    except TokenResponseError as error:
        raise ConfigurationError(f"{safe_url(metadata_url)}: {error}") from None
    metadata = _checked(
        document,
        url=metadata_url,
        expected=expected,
        allow_insecure_http=lookup.allow_insecure_http,
    )
    if cache:
        with _CACHE_LOCK:
            metadata = _CACHE.setdefault(metadata_url, metadata)
    return metadata


def token_endpoint(
    metadata_url: str, lookup: Lookup, *, issuer: str | None, token_url: str | None
) -> Generator[Step, Reply, tuple[str, str]]:
    """(token endpoint, resource identifier) for a grant configured with ``resource_metadata``.

    The authorization server is ``issuer`` when given (it must be listed), else the first
    listed one whose discovery succeeds. A ``token_url`` given as well must be the token endpoint
    of a listed server: a token for this resource is asked of no server it does not trust.
    """
    metadata = yield from fetch_metadata(metadata_url, lookup, cache=True)
    where = f"the protected-resource metadata at {safe_url(metadata.metadata_url)}"
    candidates = metadata.authorization_servers
    if issuer is not None:
        if issuer not in candidates:
            raise ConfigurationError(
                f"issuer {issuer!r} is not among the authorization_servers of {where}"
            )
        candidates = (issuer,)
    problem: ConfigurationError | None = None
    for candidate in candidates:
        try:
            endpoint = yield from lookup.discover(candidate)
        except ConfigurationError as error:
            problem = error
            continue
        if token_url is None or endpoint == token_url:
            return endpoint, metadata.resource
    if token_url is not None:
        raise ConfigurationError(
            f"token_url {safe_url(token_url)} is not the token endpoint of any authorization "
            f"server listed by {where}"
        )
    assert problem is not None
    raise problem


def _standalone(url: str, allow_insecure_http: bool, timeout: float | None) -> Lookup:
    if not isinstance(allow_insecure_http, bool):
        raise ConfigurationError("allow_insecure_http must be True or False")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise ConfigurationError("timeout must be a positive number of seconds or None")
    clock = SYSTEM_CLOCK
    return Lookup(
        allow_insecure_http,
        None if timeout is None else float(timeout),
        {
            "clock_time": clock.time,
            "clock_monotonic": clock.monotonic,
            "deadline": clock.monotonic() + _STANDALONE_TIME,
            "policy": RefreshPolicy(),
            "max_attempts": DEFAULT_MAX_ATTEMPTS,
            "draw": random.random,
        },
    )


def discover_resource(
    url: str, *, allow_insecure_http: bool = False, timeout: float | None = None
) -> ResourceMetadata:
    """Fetch and check the RFC 9728 metadata of a protected resource (blocking).

    ``url`` is the resource's URL (``https://api.example.com/mcp``) or its metadata URL (the
    ``resource_metadata`` of a 401 challenge, ``https://api.example.com/.well-known/
    oauth-protected-resource/mcp``). Returns ``.resource`` (the identifier) and
    ``.authorization_servers`` (issuer URLs). Raises :class:`~freshtoken.ConfigurationError`
    naming what is wrong with the document, :class:`~freshtoken.TokenEndpointUnavailable` when the
    resource cannot be reached.
    """
    lookup = _standalone(url, allow_insecure_http, timeout)
    clients = OwnClients()
    try:
        return run_sync(fetch_metadata(url, lookup), clients.sync_client())
    finally:
        clients.close()


async def adiscover_resource(
    url: str, *, allow_insecure_http: bool = False, timeout: float | None = None
) -> ResourceMetadata:
    """:func:`discover_resource` on the running event loop."""
    lookup = _standalone(url, allow_insecure_http, timeout)
    clients = OwnClients()
    try:
        return await run_async(fetch_metadata(url, lookup), clients.async_client())
    finally:
        await clients.aclose()
