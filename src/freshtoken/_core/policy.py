"""When a token turns stale, when it must be replaced, and how long to back off after a failure.

A token's life, as the manager sees it, has three phases (times on the monotonic clock)::

    received ───── fresh ─────► stale_at ──── stale ────► hard_at ── expiring ──► expires
                  served as is          served; one caller          callers wait for
                                        refreshes in background     the fetch in flight

:class:`RefreshPolicy` is an immutable value (like urllib3's ``Retry``): every parameter's meaning
is spelled out below and every computation is a pure function of its inputs, including the random
draws, which the caller passes in as numbers in ``[0, 1)``.

Why these defaults (see docs/policy.md for the comparison with botocore, google-auth, MSAL and
golang.org/x/oauth2):

* The stale point is a *fraction* of the lifetime (20 % before expiry), capped at 5 minutes, so it
  is right from a 1-second token (stale 0.2 s before expiry) to a 24-hour token (5 minutes before).
  A fixed margin such as golang's 10 s or google-auth's 3 min 45 s is longer than a short token
  lives, and makes every call a refresh.
* The hard deadline is 5 % of the lifetime before expiry, capped at 30 seconds, and always
  strictly between the stale point and expiry: callers only wait on the token endpoint in the
  last 5 %, which with background refresh never happens unless the endpoint is down for the whole
  stale window.
* Jitter moves the stale point earlier by up to 25 % of the stale margin so that a fleet started
  at once does not refresh in lockstep.
* Backoff after a failed fetch grows exponentially from 0.5 s to 30 s with jitter in [50 %, 100 %]
  of the step, so a failing endpoint sees a few requests, never one per call.
* Except while callers have no usable token: then every one of them is failing or waiting, and
  what matters is noticing the endpoint's return at once. Retries then come every 0.25 s (at most
  four requests a second, one at a time), however long the outage has lasted; exponential backoff
  is for the time the token still serves, or nobody asks for one.
* After a non-retryable error (``invalid_client``...) callers get that error again for 30 s
  instead of sending a token request per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["RefreshPolicy", "Schedule"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """The monotonic instants of one token's life (see the module docstring)."""

    stale_at: float
    hard_at: float
    expires_at: float


def _check(name: str, value: float, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"RefreshPolicy.{name} must be a number")
    if not (low <= value <= high) or math.isnan(value):
        raise ConfigurationError(f"RefreshPolicy.{name} must lie in [{low}, {high}]")


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When to refresh a token and how to behave when refreshing fails.

    Parameters:

    ``stale_fraction``
        A token turns stale (refreshed while still served) when this fraction of its lifetime
        remains. ``0.2``: a 1-hour token would turn stale 12 minutes before expiry, but see
        ``max_stale_margin``.
    ``max_stale_margin``
        Upper bound in seconds on how long before expiry a token turns stale (5 minutes).
    ``hard_fraction``
        Callers stop using the token and wait for a new one when this fraction of its lifetime
        remains (``0.05``); must be smaller than ``stale_fraction``.
    ``max_hard_margin``
        Upper bound in seconds on the hard margin (30 s), also kept below the stale margin.
    ``jitter``
        The stale point is moved earlier by a random part, up to this fraction, of the stale
        margin (``0.25``).
    ``default_lifetime``
        Lifetime in seconds assumed for a token whose expiry is unknown (no ``expires_in``, not a
        JWT with ``exp``): 1 hour, the most common lifetime. A revoked token is caught by the 401
        path regardless.
    ``backoff_initial``, ``backoff_max``
        Delay before trying again after the first failed fetch, doubling per consecutive failure
        up to ``backoff_max`` (0.5 s, 30 s); each delay is drawn in [50 %, 100 %] of the step.
    ``recovery_interval``
        While callers have no usable token (every one of them fails or waits), retries come this
        often instead of backing off exponentially: within a fetch, and between fetches for the
        next caller. Each delay is drawn in [100 %, 120 %] of it, so at most
        ``1 / recovery_interval`` requests a second are sent, one at a time (per fleet with a
        shared store), and the endpoint's return is noticed within about this long (0.25 s).
        ``Retry-After`` still sets a floor. Retries that nobody waits for (the background
        scheduler's, or a refresh while the token still serves) keep the exponential backoff.
    ``error_cooldown``
        After a non-retryable error (bad credentials, ``invalid_grant``...), how long callers are
        given the same error before another token request is tried (30 s).
    ``max_retry_after``
        A server's ``Retry-After`` is honoured up to this many seconds (60 s).
    ``max_wait``
        How long a caller with no usable token lets a fetch, with its retries, run before giving
        up with :class:`~freshtoken.TokenEndpointUnavailable` (30 s).
    ``honor_refresh_in``
        Use a response's ``refresh_in`` (seconds, as Microsoft Entra ID sends it) as the stale
        point when it comes earlier than ours.
    """

    stale_fraction: float = 0.2
    max_stale_margin: float = 300.0
    hard_fraction: float = 0.05
    max_hard_margin: float = 30.0
    jitter: float = 0.25
    default_lifetime: float = 3600.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    recovery_interval: float = 0.25
    error_cooldown: float = 30.0
    max_retry_after: float = 60.0
    max_wait: float = 30.0
    honor_refresh_in: bool = True

    def __post_init__(self) -> None:
        _check("stale_fraction", self.stale_fraction, 0.0, 0.9)
        _check("hard_fraction", self.hard_fraction, 0.0, 0.9)
        if self.hard_fraction >= self.stale_fraction:
            raise ConfigurationError(
                "RefreshPolicy.hard_fraction must be smaller than stale_fraction, so that a "
                "token is refreshed in the background before callers have to wait"
            )
        _check("max_stale_margin", self.max_stale_margin, 0.0)
        _check("max_hard_margin", self.max_hard_margin, 0.0)
        _check("jitter", self.jitter, 0.0, 1.0)
        _check("default_lifetime", self.default_lifetime, 1e-3, 10 * 365 * 86400)
        _check("backoff_initial", self.backoff_initial, 0.0)
        _check("backoff_max", self.backoff_max, self.backoff_initial)
        _check("recovery_interval", self.recovery_interval, 0.01)
        _check("error_cooldown", self.error_cooldown, 0.0)
        _check("max_retry_after", self.max_retry_after, 0.0)
        _check("max_wait", self.max_wait, 0.0)

    def margins(self, lifetime: float) -> tuple[float, float]:
        """(stale margin, hard margin) in seconds before expiry for a token of ``lifetime``.

        The hard margin is always strictly smaller than the stale margin when the lifetime is
        positive, so the hard deadline lies strictly between the stale point and expiry.
        """
        lifetime = max(0.0, lifetime)
        stale = min(lifetime * self.stale_fraction, self.max_stale_margin)
        hard = min(lifetime * self.hard_fraction, self.max_hard_margin, stale / 2)
        return stale, hard

    def schedule(
        self,
        *,
        received_at: float,
        remaining: float,
        lifetime: float | None,
        jitter_draw: float = 0.0,
        refresh_in: float | None = None,
    ) -> Schedule:
        """The life of a token received at monotonic ``received_at``.

        ``remaining`` is how many seconds it has left, ``lifetime`` its full lifetime (``None``
        when unknown: the default lifetime is used for both). ``jitter_draw`` is a number in
        [0, 1) chosen by the caller.
        """
        if lifetime is None:
            lifetime = remaining = self.default_lifetime
        expires = received_at + remaining
        stale_margin, hard_margin = self.margins(lifetime)
        stale_margin += stale_margin * self.jitter * min(max(jitter_draw, 0.0), 1.0)
        stale_at = expires - stale_margin
        hard_at = expires - hard_margin
        if self.honor_refresh_in and refresh_in is not None and refresh_in >= 0:
            stale_at = min(stale_at, received_at + refresh_in)
        return Schedule(stale_at=min(stale_at, hard_at), hard_at=hard_at, expires_at=expires)

    def backoff(self, failures: int, draw: float) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        exponent = min(max(failures, 1) - 1, 60)
        step = min(self.backoff_max, self.backoff_initial * (2.0**exponent))
        return step * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))

    def recovery_delay(self, draw: float) -> float:
        """Seconds between attempts while callers have no usable token (``recovery_interval``,
        drawn in [100 %, 120 %] of it so that a fleet without a shared store spreads out)."""
        return self.recovery_interval * (1.0 + 0.2 * min(max(draw, 0.0), 1.0))
