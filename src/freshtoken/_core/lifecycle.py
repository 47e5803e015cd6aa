"""The sans-I/O heart of freshtoken: what to do next with the cached token.

:class:`Lifecycle` holds the state of one token (the cached entry, whether a fetch is in flight,
the last failure) and answers one question, :meth:`Lifecycle.next_action`, for a caller arriving at
monotonic time ``now``:

========================= ===================================================================
``Action.USE``            hand out ``decision.token``
``Action.USE_AND_REFRESH`` hand out ``decision.token`` and start a refresh off the caller's path
``Action.WAIT``           a fetch is in flight and no usable token exists: wait for its result
``Action.FETCH``          the caller now owns the fetch (no usable token): do it and report back
``Action.FAIL``           raise ``decision.error`` (a recent failure is still backing off)
========================= ===================================================================

It never sleeps, locks, spawns or touches a socket (like h11's connection state machine): the
drivers in ``_runtime/manager.py`` hold a lock around each call and do the waiting and the I/O.
Random draws for jitter are passed in as numbers so every transition is a pure function of its
inputs.

Invariants (checked by tests/test_lifecycle_machine.py with hypothesis):

* no token is handed out at or past its hard deadline;
* at most one fetch is in flight (``next_action`` hands out FETCH / USE_AND_REFRESH only when none
  is, and marks one in flight when it does);
* a failed refresh in the stale window keeps serving the still-valid token;
* after a failure, no new fetch starts before the backoff has passed: the exponential one while
  a usable token exists, the short recovery interval for callers who have none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import FreshTokenError, TokenEndpointUnavailable, TokenResponseError
from .policy import RefreshPolicy, Schedule
from .token import Token

__all__ = ["Action", "Decision", "Entry", "Failure", "Lifecycle"]


class Action(enum.Enum):
    USE = "use"
    USE_AND_REFRESH = "use_and_refresh"
    WAIT = "wait"
    FETCH = "fetch"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached token and its schedule on the monotonic clock."""

    token: Token
    stale_at: float
    hard_at: float
    expires_at: float

    def usable(self, now: float) -> bool:
        """True while the token may be handed out (strictly before the hard deadline)."""
        return now < self.hard_at

    def fresh(self, now: float) -> bool:
        """True before the stale point: handed out with no further thought (the fast path)."""
        return now < self.stale_at


@dataclass(frozen=True, slots=True)
class Failure:
    """The last failed fetch: its error, how many failed in a row, and when to try again.

    ``not_before`` paces the retries nobody waits for (a refresh while the token still serves,
    the background scheduler's wake-ups): exponential backoff. ``retry_at`` (never later) is when
    a caller who has no usable token may start the next fetch: the policy's recovery interval,
    because every such caller is failing until the endpoint's return is noticed.
    """

    error: BaseException
    count: int
    not_before: float
    retry_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    token: Token | None = None
    error: BaseException | None = None


def is_retryable(error: BaseException) -> bool:
    """Whether sending the same request again may succeed (unknown errors: yes)."""
    return error.retryable if isinstance(error, FreshTokenError) else True


class Lifecycle:
    """The state of one token and the rules for moving it on (see the module docstring)."""

    __slots__ = ("entry", "failure", "fetching", "policy")

    def __init__(self, policy: RefreshPolicy) -> None:
        self.policy = policy
        self.entry: Entry | None = None
        self.fetching = False
        self.failure: Failure | None = None

    # -- the question -------------------------------------------------------------------------

    def next_action(self, now: float) -> Decision:
        """What a caller arriving at ``now`` should do. FETCH and USE_AND_REFRESH start a fetch."""
        entry = self.entry
        if entry is not None and entry.fresh(now):
            return Decision(Action.USE, entry.token)
        if entry is not None and entry.usable(now):
            if self.fetching or self._backing_off(now):
                return Decision(Action.USE, entry.token)
            self.fetching = True
            return Decision(Action.USE_AND_REFRESH, entry.token)
        if self.fetching:
            return Decision(Action.WAIT)
        failure = self.failure
        if failure is not None and now < failure.retry_at:
            return Decision(Action.FAIL, error=failure.error)
        self.fetching = True
        return Decision(Action.FETCH)

    def _backing_off(self, now: float) -> bool:
        return self.failure is not None and now < self.failure.not_before

    def fetch_deadline(self, now: float) -> float:
        """The monotonic time by which a fetch starting now must give up retrying.

        While a usable token exists the fetch may retry until its hard deadline (callers are
        served meanwhile); without one, callers are waiting, so at most ``policy.max_wait``.
        """
        entry = self.entry
        if entry is not None and entry.usable(now):
            return entry.hard_at
        return now + self.policy.max_wait

    def urgent(self, now: float) -> bool:
        """Whether a fetch starting now has callers waiting on it: no usable token exists, so
        its retries come at the recovery interval (see :class:`~freshtoken.RefreshPolicy`)."""
        entry = self.entry
        return entry is None or not entry.usable(now)

    # -- reports from the driver --------------------------------------------------------------

    def fetch_succeeded(
        self,
        token: Token,
        *,
        now: float,
        wall: float,
        jitter_draw: float,
    ) -> Entry:
        """Record a fetched token; returns its entry. Ends the fetch in flight.

        ``now``/``wall`` are the monotonic and wall-clock readings at receipt. Sources parse
        responses with the wall time at which the request was *sent*, so the expiry already errs
        on the safe side. A token that arrives already unusable is a failure
        (:class:`TokenResponseError`), never handed out.
        """
        self.fetching = False
        entry = self.schedule(token, now=now, wall=wall, jitter_draw=jitter_draw)
        if not entry.usable(now):
            error = TokenResponseError(
                "the token source returned a token that is already expired or about to expire "
                f"(fingerprint {token.fingerprint}); check the clocks and the token lifetime",
                field="expires_in",
            )
            self._record_failure(error, now=now, draw=jitter_draw)
            raise error
        self.entry = entry
        self.failure = None
        return entry

    def fetch_failed(self, error: BaseException, *, now: float, draw: float) -> Failure:
        """Record a failed fetch; ends the fetch in flight and starts the backoff."""
        self.fetching = False
        return self._record_failure(error, now=now, draw=draw)

    def fetch_abandoned(self) -> None:
        """The fetch in flight ended with neither a token nor an error (its task was cancelled)."""
        self.fetching = False

    def adopt(self, token: Token, *, now: float, wall: float, jitter_draw: float) -> Entry | None:
        """Take a token found elsewhere (a shared store) if it is usable; returns its entry."""
        entry = self.schedule(token, now=now, wall=wall, jitter_draw=jitter_draw)
        if not entry.usable(now):
            return None
        self.entry = entry
        self.failure = None
        return entry

    def invalidate(self, token: Token) -> bool:
        """Compare-and-invalidate: drop the cached token only if it is still ``token``.

        Fifty requests that all got 401 for the same token therefore cause one refresh: the first
        drops it, the others find a different (new) token cached and change nothing.
        """
        entry = self.entry
        if entry is None or entry.token.access_token != token.access_token:
            return False
        self.entry = None
        return True

    def reset_after_fork(self) -> None:
        """In a forked child no fetch of the parent is in flight, and no lock is held."""
        self.fetching = False

    # -- pure helpers ---------------------------------------------------------------------------

    def schedule(
        self,
        token: Token,
        *,
        now: float,
        wall: float,
        jitter_draw: float,
    ) -> Entry:
        """The entry (monotonic schedule) of ``token`` received at ``now``/``wall``.

        The remaining life is read on the wall clock once, here, and never again: from now on
        only the monotonic clock counts, so later wall-clock jumps change nothing. It is capped at
        the token's lifetime, so a wall clock that stepped back during the fetch cannot extend it.
        """
        lifetime = token.lifetime
        remaining: float
        if token.expires_at is None:
            remaining = self.policy.default_lifetime
        else:
            remaining = token.expires_at.timestamp() - wall
            if lifetime is not None:
                remaining = min(remaining, lifetime)
        refresh_seconds = _refresh_in(token.extra.get("refresh_in"))
        sched: Schedule = self.policy.schedule(
            received_at=now,
            remaining=remaining,
            lifetime=lifetime,
            jitter_draw=jitter_draw,
            refresh_in=refresh_seconds,
        )
        return Entry(token, sched.stale_at, sched.hard_at, sched.expires_at)

    def _record_failure(self, error: BaseException, *, now: float, draw: float) -> Failure:
        count = (self.failure.count + 1) if self.failure is not None else 1
        if is_retryable(error):
            delay = self.policy.backoff(count, draw)
            prompt = self.policy.recovery_delay(draw)
            if isinstance(error, TokenEndpointUnavailable) and error.retry_after is not None:
                floor = min(error.retry_after, self.policy.max_retry_after)
                delay, prompt = max(delay, floor), max(prompt, floor)
        else:
            delay = prompt = self.policy.error_cooldown
        not_before = now + delay
        entry = self.entry
        if entry is not None and entry.usable(now) and not_before > entry.hard_at:
            # A refresh that failed in the stale window must not back off past the hard
            # deadline: callers would then be refused with the old error after the endpoint has
            # come back. Try again halfway to the deadline instead (no sooner than the initial
            # backoff, no later than the deadline), so the last attempts still land while the
            # token is served and nobody waits for them.
            halfway = max(now + self.policy.backoff_initial, (now + entry.hard_at) / 2)
            not_before = min(halfway, entry.hard_at)
        self.failure = Failure(error, count, not_before, min(now + prompt, not_before))
        return self.failure


def _refresh_in(value: object) -> float | None:
    """A response's ``refresh_in`` as seconds, or ``None`` when it is not a usable number (an
    integer too large for a float, from an untrusted server, is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None
