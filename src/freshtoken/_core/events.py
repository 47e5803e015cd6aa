"""Lifecycle events: what happened to a token, told with its fingerprint, never the token.

Every :class:`~freshtoken.TokenManager` logs its events to the ``freshtoken`` logger (DEBUG for
routine ones, WARNING for failures) and passes them to ``on_event`` when given. Events are rare
(a few per token lifetime), so they cost nothing on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Event", "EventKind", "EventSink", "LoggingEvents", "describe_error", "logger"]

logger = logging.getLogger("freshtoken")

EventKind = Literal[
    "fetched",
    "refreshed",
    "served_stale",
    "failed",
    "invalidated",
    "skew_detected",
    "store_unavailable",
    "refresh_token_refused",
]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to the token named ``key``.

    ``kind``
        ``fetched`` (first token, or one replacing an unusable token), ``refreshed`` (a token
        replacing a still-usable one), ``served_stale`` (a refresh failed and the still-valid
        token stays in service), ``failed`` (a fetch failed), ``invalidated`` (a token was dropped
        after a 401), ``skew_detected`` (the server's clock differs from ours),
        ``store_unavailable`` (the shared store failed; the manager fetched locally),
        ``refresh_token_refused`` (the server answered ``invalid_grant`` to a refresh: the refresh
        token is spent or revoked; a person must sign in again, or PasswordGrant uses its
        password).
    ``fingerprint``
        The token's fingerprint (first 8 hex of SHA-256), when a token is concerned.
    ``duration``
        Seconds the fetch took, for ``fetched``/``refreshed``/``failed``.
    ``remaining``
        Seconds of life the token concerned has left.
    ``error``
        The error's type and message (messages never hold secrets), for failures.
    ``skew``
        The server's clock minus ours, in seconds, for ``skew_detected``.
    """

    kind: EventKind
    key: str
    fingerprint: str | None = None
    duration: float | None = None
    remaining: float | None = None
    error: str | None = None
    skew: float | None = None

    def describe(self) -> str:
        parts = [f"{self.kind} key={self.key}"]
        if self.fingerprint is not None:
            parts.append(f"fingerprint={self.fingerprint}")
        if self.duration is not None:
            parts.append(f"duration={self.duration:.3f}s")
        if self.remaining is not None:
            parts.append(f"remaining={self.remaining:.1f}s")
        if self.skew is not None:
            parts.append(f"skew={self.skew:+.1f}s")
        if self.error is not None:
            parts.append(f"error={self.error}")
        return " ".join(parts)


EventSink = Callable[[Event], None]

_WARNING_KINDS = frozenset(
    {"failed", "served_stale", "store_unavailable", "skew_detected", "refresh_token_refused"}
)


def describe_error(error: BaseException) -> str:
    """``Type: message`` for freshtoken's own errors, the type alone for anything else.

    The message of a foreign exception (a user's callable, a transport library) might quote a
    secret, so only its type is told; the exception itself stays chained for the caller.
    """
    from .errors import FreshTokenError

    if isinstance(error, FreshTokenError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


class LoggingEvents:
    """An ``on_event`` sink that writes events to a standard-library logger.

    ``LoggingEvents(logging.getLogger("myapp.tokens"), level=logging.INFO)`` — failures and
    stale serving are logged at WARNING whatever ``level`` says.
    """

    def __init__(self, target: logging.Logger | None = None, *, level: int = logging.INFO) -> None:
        self.logger = target if target is not None else logger
        self.level = level

    def __call__(self, event: Event) -> None:
        level = logging.WARNING if event.kind in _WARNING_KINDS else self.level
        self.logger.log(level, "freshtoken %s", event.describe())


def log_event(event: Event) -> None:
    """The manager's own log line for ``event`` on the ``freshtoken`` logger."""
    level = logging.WARNING if event.kind in _WARNING_KINDS else logging.DEBUG
    if logger.isEnabledFor(level):
        logger.log(level, "%s", event.describe())
