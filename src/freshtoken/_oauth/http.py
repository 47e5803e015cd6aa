"""Plain values for the token-endpoint conversation: requests, responses, sleeps, failures.

The grant flows (``_oauth/grants.py``) are generators that *yield* these steps and *receive* their
outcomes; they never touch a socket or a clock's sleep. The drivers in ``_oauth/sender.py`` carry
the steps out with httpx, synchronously or on an event loop. Keeping the values here, free of httpx,
lets the flows be tested by feeding them responses by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FailureKind",
    "HttpRequest",
    "HttpResponse",
    "Reply",
    "Sleep",
    "Step",
    "TransportFailure",
    "is_loopback",
    "safe_url",
]


def is_loopback(host: str) -> bool:
    """``localhost`` and ``*.localhost`` (RFC 6761 §6.3), 127.0.0.0/8 and ``::1``: traffic that
    never leaves the machine, so plain ``http://`` may carry a token there.

    The one rule for both token URLs and the origins a token may be sent to: a host that may
    receive tokens as an origin may also be asked for them, and the other way round."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def safe_url(url: str) -> str:
    """``url`` without its query, fragment and user-info: the form that may go in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request to send, exactly as built by a flow.

    ``timeout`` is the per-phase timeout in seconds (``None``: the client's own), ``max_time`` the
    seconds left before the fetch's deadline: the driver never lets a phase run longer than that.
    ``repr`` shows method and URL only: headers and body carry credentials.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)
    timeout: float | None = None
    max_time: float | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status, headers (names lower-cased) and body (at most the cap)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds before the next step (a retry backoff)."""

    seconds: float


FailureKind = Literal["connect", "timeout", "network", "too_large", "error"]


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The request got no usable response.

    ``kind``: ``connect`` (refused, DNS, TLS handshake), ``timeout``, ``network`` (the connection
    broke, e.g. closed without a response), ``too_large`` (the body exceeded the size cap),
    ``error`` (anything else the HTTP library raised). ``detail`` names the exception *type*
    only: a transport library's message might quote a URL with credentials in it.
    """

    kind: FailureKind
    detail: str = ""
    status: int | None = None

    @property
    def retryable(self) -> bool:
        return self.kind != "too_large"


Step = HttpRequest | Sleep
Reply = HttpResponse | TransportFailure | None
