"""Finding the token endpoint from an issuer: RFC 8414, then OpenID Connect Discovery 1.0.

``issuer=`` is resolved at the first fetch, not at construction (constructors do no I/O): the
RFC 8414 document ``/.well-known/oauth-authorization-server`` is tried first, then
``/.well-known/openid-configuration``. The document's ``issuer`` must equal the configured issuer
exactly (RFC 8414 §3.3, OIDC Discovery §4.3: otherwise a document could redirect tokens to another
server), and its ``token_endpoint`` must pass the same ``https://`` rule as a configured URL.

Results are cached for the life of the process, per issuer: every source of an issuer shares one
discovery. Transient failures (connection errors, 5xx) are retried like token requests and end in
:class:`~freshtoken.TokenEndpointUnavailable`; a document that is missing or wrong raises
:class:`~freshtoken.ConfigurationError` at the ``get()`` that needed it (and, as it is not
retryable, the manager gives later callers the same error for ``policy.error_cooldown``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from urllib.parse import urlsplit, urlunsplit

from freshtoken._core.errors import ConfigurationError, TokenResponseError
from freshtoken._core.policy import RefreshPolicy
from freshtoken._runtime.forksafe import fork_safe_lock

from .http import HttpRequest, Reply, Step, is_loopback, safe_url
from .response import is_json, read_json
from .retry import exchange

__all__ = ["check_url", "clear_cache", "discover", "discovery_urls", "is_loopback"]

_CACHE: dict[str, str] = {}
_CACHE_LOCK = fork_safe_lock()


def clear_cache() -> None:
    """Forget every discovered token endpoint (tests; a server that moved its endpoint)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def check_url(url: object, what: str, *, allow_insecure_http: bool) -> str:
    """``url`` if it is an absolute ``https://`` URL (or ``http://`` to a loopback host, or any
    ``http://`` with ``allow_insecure_http``); ConfigurationError naming ``what`` otherwise."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{what} must be a non-empty URL string")
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ConfigurationError(f"{what} contains spaces or characters a URL cannot hold")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{what} must not carry credentials in the URL; pass client_id/client_secret"
        )
    if parts.fragment:
        raise ConfigurationError(f"{what} must not have a #fragment")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise ConfigurationError(
            f"{what} {safe_url(url)} uses plain http:// to a host that is not loopback: "
            "credentials and tokens would cross the network unencrypted. Use https://, or pass "
            "allow_insecure_http=True if the network path is protected otherwise"
        )
    return url


def discovery_urls(issuer: str) -> tuple[str, str]:
    """(RFC 8414 URL, OpenID Connect URL) for ``issuer``.

    RFC 8414 §3.1 inserts the well-known segment between host and path; OpenID Connect
    Discovery §4 appends it to the issuer. Without a path both are the same place.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")
    )
    openid = urlunsplit(
        (parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", "")
    )
    return rfc8414, openid


def _token_endpoint(document: object, issuer: str, source: str) -> str:
    if not isinstance(document, dict):
        raise ConfigurationError(f"the discovery document at {source} is not a JSON object")
    claimed = document.get("issuer")
    if claimed != issuer:
        shown = repr(claimed)[:120] if isinstance(claimed, str) else "none"
        raise ConfigurationError(
            f"the discovery document at {source} names issuer {shown}, not {issuer!r}; "
            "configure the issuer exactly as the server spells it"
        )
    endpoint = document.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigurationError(f"the discovery document at {source} has no token_endpoint")
    return endpoint


def discover(
    issuer: str,
    *,
    allow_insecure_http: bool,
    timeout: float | None,
    clock_time: Callable[[], float],
    clock_monotonic: Callable[[], float],
    deadline: float,
    policy: RefreshPolicy,
    max_attempts: int,
    draw: Callable[[], float],
) -> Generator[Step, Reply, str]:
    """The token endpoint of ``issuer`` (cached after the first success); a sans-I/O flow."""
    with _CACHE_LOCK:
        cached = _CACHE.get(issuer)
    if cached is None:
        cached = yield from _fetch_document(
            issuer,
            timeout=timeout,
            clock_time=clock_time,
            clock_monotonic=clock_monotonic,
            deadline=deadline,
            policy=policy,
            max_attempts=max_attempts,
            draw=draw,
        )
        with _CACHE_LOCK:
            cached = _CACHE.setdefault(issuer, cached)
    return check_url(
        cached,
        f"the token_endpoint discovered for {issuer}",
        allow_insecure_http=allow_insecure_http,
    )


def _fetch_document(
    issuer: str,
    *,
    timeout: float | None,
    clock_time: Callable[[], float],
    clock_monotonic: Callable[[], float],
    deadline: float,
    policy: RefreshPolicy,
    max_attempts: int,
    draw: Callable[[], float],
) -> Generator[Step, Reply, str]:
    tried: list[str] = []
    for url in dict.fromkeys(discovery_urls(issuer)):

        def build(url: str = url) -> HttpRequest:
            return HttpRequest(
                "GET",
                url,
                {"Accept": "application/json"},
                timeout=timeout,
                max_time=deadline - clock_monotonic(),
            )

        done = yield from exchange(
            build,
            clock_time=clock_time,
            clock_monotonic=clock_monotonic,
            deadline=deadline,
            policy=policy,
            max_attempts=max_attempts,
            draw=draw,
            what="discovery endpoint",
        )
        response = done.response
        if response.status != 200 or not is_json(response):
            tried.append(f"{url} (HTTP {response.status})")
            continue
        try:
            document = read_json(response, what="discovery document")
        except TokenResponseError as error:
            raise ConfigurationError(f"{url}: {error}") from None
        return _token_endpoint(document, issuer, url)
    raise ConfigurationError(
        f"no authorization server metadata found for issuer {issuer}: tried " + ", ".join(tried)
    )
