"""The lease protocol: one token request per lifetime across threads, processes and hosts.

Every store-backed manager fetches through a :class:`LeaseFetcher`. It is written in three layers,
like the manager itself:

1. :func:`decide` (sans-I/O) answers one question: given the token just loaded from the store, who
   holds the lease, and the time, what now? ``USE`` the stored token, take the ``LEASE``, ``FETCH``
   a new token (holding the lease), ``WAIT`` for the holder's result, or ``GIVE_UP``.
2. :meth:`LeaseFetcher._flow` is one generator that applies those decisions and yields the I/O it
   needs as small operations (:class:`Load`, :class:`Acquire`, :class:`Fetch`, :class:`Save`...).
3. Two thin drivers carry the operations out: :meth:`LeaseFetcher.fetch` with a blocking backend
   and ``source.fetch``, :meth:`LeaseFetcher.afetch` with an async backend and ``source.afetch``.

Why a fleet makes one token request per lifetime: a manager asks its fetcher for a token only when
it has none it may use or when its own token turned stale (each manager's stale point is
jittered). The fetcher then gives it the stored token if that is one the manager does not have yet;
otherwise the manager wants a *newer* token, so the fetcher takes the lease, loads once more (a
token fetched by someone else in the meantime is used, not fetched again), and only then fetches,
saves, and releases. Managers that find the lease taken keep serving their still-usable token and
wait until the holder's token lands (woken by the store's notification where it has one, see
:mod:`freshtoken._stores.wakeups`, else polling with backoff), past their own token's hard
deadline if need be (their callers then wait for it as for any fetch, up to ``policy.max_wait``);
a holder that crashed loses its lease when the lease's time runs out, and the next one takes over.

A store that fails (Redis down, a disk error) is reported (``store_unavailable``). A fetch that
sends no refresh token (client credentials, a token function) then runs locally, and the store
is left alone for a while (exponential backoff in :class:`StoreHealth`). A fetch that would send
one waits for the store instead, up to the callers' ``max_wait``: other processes may hold that
refresh token too, and only the lease tells them it is being spent. A holder whose save fails
keeps the lease and tries again while the lease lasts, since only it knows the rotated token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from freshtoken._core.errors import ConfigurationError, TokenEndpointUnavailable
from freshtoken._core.events import Event, logger
from freshtoken._core.policy import RefreshPolicy
from freshtoken._core.token import Token
from freshtoken._runtime.clock import Clock
from freshtoken._runtime.forksafe import fork_safe_lock
from freshtoken._runtime.source import (
    FetchContext,
    FunctionSource,
    TokenSource,
    adopt,
    sends_refresh_token,
)

from .store import (
    AsyncStoreBackend,
    Record,
    StoreBackend,
    StoreUnavailable,
    UnreadableRecord,
    storage_key,
)
from .wakeups import Ticket, Wakeups

__all__ = [
    "Choice",
    "LeaseFetcher",
    "Phase",
    "StoreHealth",
    "check_lease_time",
    "superseded",
    "decide",
    "hard_deadline",
    "arrived_late",
    "poll_delay",
    "record_ttl",
    "wait_delay",
    "refresh_lifetime",
    "with_expiry",
]

#: Default seconds a lease holder has to fetch and save before another may take over.
DEFAULT_LEASE_TIME = 10.0
#: Polling of a waiter: first delay, and the longest delay between two looks at the store.
POLL_INITIAL = 0.01
POLL_MAX = 0.2
#: With push wake-ups, the longest a waiter waits for the holder's notification before it looks
#: at the store anyway: the safety net for a lost message (a crashed holder sends none, its lease
#: simply runs out). It is the longest delay of polling, so no waiter is ever later than it was.
RECHECK = POLL_MAX


class Phase(enum.Enum):
    """Where the fetcher stands with the lease when it looks at the stored token."""

    LOOKING = "looking"  # not tried yet (or tried, waited, and looking again)
    HOLDING = "holding"  # this fetcher holds the lease
    BUSY = "busy"  # another owner holds the lease


class Choice(enum.Enum):
    USE = "use"  # hand out the stored token
    LEASE = "lease"  # try to take the lease
    FETCH = "fetch"  # (holding the lease) fetch a new token, save it, release
    WAIT = "wait"  # another owner is fetching: wait a little, then look again
    GIVE_UP = "give_up"  # the deadline passed while another owner held the lease


def check_lease_time(value: object) -> float:
    """``value`` as a lease time in seconds, or ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 86400:
        raise ConfigurationError("lease_time must be a number of seconds in (0, 86400)")
    return float(value)


def with_expiry(token: Token, policy: RefreshPolicy) -> Token:
    """``token`` with an explicit expiry: a token without one is given the policy's default
    lifetime from its issue, so that every process sharing it agrees on when it ends."""
    if token.expires_at is not None:
        return token
    return token.replace(expires_at=token.issued_at + timedelta(seconds=policy.default_lifetime))


#: Response members in which servers state the refresh token's lifetime in seconds (Keycloak's
#: ``refresh_expires_in``; GitHub's and Entra's ``refresh_token_expires_in``).
REFRESH_LIFETIME_FIELDS = ("refresh_expires_in", "refresh_token_expires_in")


def refresh_lifetime(token: Token) -> float | None:
    """Seconds from its issue that ``token``'s refresh token stays valid, when the server said so
    (a positive number in one of :data:`REFRESH_LIFETIME_FIELDS`); else ``None``: unknown, so
    it is kept until it is replaced (Keycloak's ``0`` means "does not expire")."""
    for name in REFRESH_LIFETIME_FIELDS:
        value = token.extra.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e10:
            return float(value)
    return None


def record_ttl(token: Token, *, wall: float) -> float | None:
    """Seconds a store keeps the record of ``token`` from ``wall``; ``None``: until replaced.

    The record lives as long as anything in it may still be used: a refresh token outlives its
    access token, and a process that comes back after the access token expired (idle, restarted,
    on another host) must find the newest refresh token there, not fall back to one it remembers,
    which another process may have rotated already (reuse detection would revoke the family).
    """
    assert token.expires_at is not None
    access_left = token.expires_at.timestamp() - wall
    if token.refresh_token is None:
        return access_left
    lifetime = refresh_lifetime(token)
    if lifetime is None:
        return None
    return max(access_left, token.issued_at.timestamp() + lifetime - wall)


def hard_deadline(token: Token, policy: RefreshPolicy) -> float:
    """Wall-clock time after which ``token`` may no longer be handed out (see RefreshPolicy)."""
    token = with_expiry(token, policy)
    assert token.expires_at is not None
    lifetime = token.lifetime
    _, hard_margin = policy.margins(lifetime if lifetime is not None else policy.default_lifetime)
    # A little headroom, so that the manager, which checks again a moment later, agrees.
    return token.expires_at.timestamp() - hard_margin - min(1.0, hard_margin / 2)


def arrived_late(token: Token, policy: RefreshPolicy, *, sent: float, wall: float) -> bool:
    """Whether ``token``, asked for at wall time ``sent``, was good to hand out then but is past
    its hard deadline at ``wall``: the request took longer than the token lives (the process was
    frozen, the link stalled), which asking again cures. A token already unusable when asked
    for (a lifetime shorter than the policy's margins, skewed clocks) is not late: asking again
    would only earn another."""
    deadline = hard_deadline(token, policy)
    return sent < deadline <= wall


def decide(
    stored: Token | None,
    phase: Phase,
    *,
    wall: float,
    now: float,
    deadline: float,
    policy: RefreshPolicy,
    current: Token | None,
    rejected: str | None,
    rejected_at: float | None = None,
) -> Choice:
    """What to do with the token ``stored`` (just loaded), in ``phase``, at ``wall``/``now``.

    ``current`` is the token the manager already has, ``rejected`` the fingerprint of the one it
    invalidated after a 401, ``deadline`` (monotonic, like ``now``) when waiting must end.
    ``rejected_at`` (wall time of that 401) rules out every stored token issued before it: the
    401 may come from a revocation that killed the store's newer token too (a key rotation, a
    "revoke all sessions"), and replaying with it would earn a second 401. The price is at most
    one extra fetch per 401.

    A stored token is *news* when it is usable (not rejected, before its hard deadline) and not
    the one the manager has: the manager takes it even when it is stale, since it will refresh it
    in turn. Anything else means the manager needs a newer token than the store holds.
    """
    usable = (
        stored is not None
        and stored.fingerprint != rejected
        and (rejected_at is None or stored.issued_at.timestamp() > rejected_at)
        and wall < hard_deadline(stored, policy)
    )
    news = usable and (current is None or current.access_token != stored.access_token)  # type: ignore[union-attr]
    if news:
        return Choice.USE
    if phase is Phase.LOOKING:
        return Choice.LEASE
    if phase is Phase.HOLDING:
        return Choice.FETCH
    if now >= deadline:
        return Choice.GIVE_UP
    return Choice.WAIT


def poll_delay(attempt: int, *, now: float, deadline: float, draw: float) -> float:
    """Seconds a waiter sleeps before its ``attempt``-th (0-based) look at the store again:
    exponential from 10 ms to 200 ms with jitter, and never past ``deadline``."""
    step = min(POLL_MAX, POLL_INITIAL * (2.0 ** min(attempt, 30)))
    delay = step * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))
    return max(0.0, min(delay, deadline - now))


def wait_delay(
    attempt: int,
    *,
    now: float,
    deadline: float,
    draw: float,
    pushed: bool,
    recheck: float = RECHECK,
) -> float:
    """Seconds a waiter waits before its next look at the store.

    Without a notification to wait for (``pushed`` false: the store has none, or its subscription
    is refused or lost) this is :func:`poll_delay`. With one, the waiter is woken by the holder's
    save or release, and the delay is only the safety net: ``recheck`` (75-100 % of it, jittered
    so that the waiters of a fleet do not look all at once), never past ``deadline``.
    """
    if not pushed:
        return poll_delay(attempt, now=now, deadline=deadline, draw=draw)
    delay = recheck * (0.75 + 0.25 * min(max(draw, 0.0), 1.0))
    return max(0.0, min(delay, deadline - now))


class StoreHealth:
    """Whether to use a store that failed recently: after a failure it is left alone for a while
    (1 s, doubling per consecutive failure, up to 30 s), then tried again. Shared by the fetchers
    of one store; decisions take ``now`` (monotonic), never read a clock."""

    __slots__ = ("_failures", "_lock", "_retry_at", "initial", "maximum")

    def __init__(self, *, initial: float = 1.0, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._lock = fork_safe_lock()
        self._failures = 0
        self._retry_at = float("-inf")

    def available(self, now: float) -> bool:
        return now >= self._retry_at

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns when the store is tried again."""
        with self._lock:
            self._failures += 1
            delay = min(self.maximum, self.initial * (2.0 ** min(self._failures - 1, 30)))
            self._retry_at = now + delay
            return self._retry_at

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._retry_at = float("-inf")


# -- the operations the flow asks its driver for -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    key: str


@dataclass(frozen=True, slots=True)
class Acquire:
    key: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Release:
    key: str
    owner: str


@dataclass(frozen=True, slots=True)
class Save:
    key: str
    token: Token
    ttl: float | None
    owner: str
    generation: int


@dataclass(frozen=True, slots=True)
class Extend:
    key: str
    owner: str
    ttl: float


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """While a fetch runs, extend the lease ``owner`` holds on ``key`` to ``ttl`` seconds every
    ``ttl / 3`` seconds, until ``until`` (monotonic, the fetch's request deadline: a request past
    it has failed, and a hung holder must be superseded) or until an extension is refused."""

    key: str
    owner: str
    ttl: float
    until: float

    @property
    def interval(self) -> float:
        return self.ttl / 3


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Fetch:
    ctx: FetchContext
    keepalive: KeepAlive | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Watch:
    """Subscribe to the wake-ups of ``key`` before the last look at the store: a
    :class:`~freshtoken._stores.wakeups.Ticket`, or ``None`` when there are none now (poll)."""

    key: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for a wake-up past ``ticket``, at most ``seconds``."""

    ticket: Ticket
    seconds: float


Op = Load | Acquire | Release | Save | Delete | Extend | Fetch | Sleep | Watch | Wait
_Flow = Generator[Op, Any, Token]
#: Whether a fetch from the context sends a refresh token (see sends_refresh_token).
_SendsRefreshToken = Callable[[FetchContext], bool]


@dataclass(slots=True)
class _Run:
    """What one run of the flow holds, visible to its driver (to let go of a lease on cancel)."""

    owner: str | None = None
    generation: int = 0  # of the record loaded while holding the lease
    fetched: Token | None = None
    fetch_ctx: FetchContext | None = None
    held_until: float = float("-inf")  # monotonic: the lease surely lasts until then


def superseded(generation: int, unsaved_after: int | None) -> bool:
    """Whether a stored record of ``generation`` is older than a token this fetcher obtained but
    could not save, obtained when the newest generation it had seen was ``unsaved_after``
    (``None``: it has no unsaved token). Such a record holds a refresh token that was already
    spent to obtain the unsaved one: using it would be reuse."""
    return unsaved_after is not None and generation <= unsaved_after


class LeaseFetcher:
    """The :class:`~freshtoken.SharedFetcher` of every built-in store (see the module docstring)."""

    __slots__ = (
        "_async_backend",
        "_backend",
        "_health",
        "_key",
        "_random",
        "_seen",
        "_unsaved",
        "_unsaved_after",
        "_wakeups",
        "lease_time",
    )

    def __init__(
        self,
        source_key: str,
        backend: StoreBackend,
        async_backend: AsyncStoreBackend,
        *,
        health: StoreHealth,
        lease_time: float = DEFAULT_LEASE_TIME,
        wakeups: Wakeups | None = None,
    ) -> None:
        self._key = storage_key(source_key)
        self._wakeups = wakeups
        self._backend = backend
        self._async_backend = async_backend
        self._health = health
        self._random = random.Random()
        self.lease_time = lease_time
        # The newest generation seen in the store, and the newest token obtained that the store
        # does not hold (its save failed, or the store was skipped while it was failing), with
        # the generation it succeeds. One fetch at a time runs per fetcher (the manager's
        # flight), so these need no lock.
        self._seen = 0
        self._unsaved: Token | None = None
        self._unsaved_after: int | None = None

    @property
    def key(self) -> str:
        """The storage key (``v1:`` and a hash of the source key)."""
        return self._key

    # -- the flow, written once ------------------------------------------------------------

    def _flow(self, ctx: FetchContext, run: _Run, sends: _SendsRefreshToken) -> _Flow:
        """Fetch through the store; without it only when that sends no refresh token.

        ``sends(ctx)`` tells whether a fetch from ``ctx`` would send a refresh token. Without the
        store there is no lease, so nothing tells other processes that a refresh token is being
        spent, and any refresh token may be held by them too: one loaded from the store, one
        this fetcher saved, one whose save failed (the store may have acted on a save whose reply
        was lost), and the one a grant was configured with (the fleet may have rotated it long
        ago). Sending it twice makes the server revoke the whole family. So a fetch that sends
        one waits for the store instead, polling it like a waiter polls a lease holder, until
        the callers' ``max_wait``; callers keep the token they have while it lasts.
        """
        clock = ctx.clock
        wait_until = max(ctx.deadline, clock.monotonic() + ctx.policy.max_wait)
        if not self._health.available(clock.monotonic()) and not sends(ctx):
            # The store failed a moment ago and was reported then: fetch locally, quietly.
            token: Token = yield Fetch(ctx)
            return self._keep_unsaved(token, self._seen)
        attempt = 0
        while True:
            try:
                token = yield from self._through_store(ctx, run, wait_until)
            except StoreUnavailable as error:
                now = clock.monotonic()
                self._health.failed(now)
                if attempt == 0:
                    self._report(ctx, f"StoreUnavailable: {error}")
                if run.owner is not None:
                    yield from self._release_quietly(run)
                if run.fetched is not None:  # obtained, not saved: the newest refresh token
                    return self._keep_unsaved(run.fetched, run.generation)
                local = run.fetch_ctx or ctx
                if not sends(local):
                    return self._keep_unsaved((yield Fetch(local)), self._seen)
                if now >= wait_until:
                    raise TokenEndpointUnavailable(
                        "the token store is unavailable, and refreshing without it would send a"
                        " refresh token that other processes may hold as well (a server with"
                        " reuse detection would revoke the whole family)",
                        retry_after=self._health.initial,
                    ) from None
                yield Sleep(self._poll(attempt, now, wait_until))
                attempt += 1
                run.fetch_ctx = None
                continue
            self._health.succeeded()
            return token

    def _poll(self, attempt: int, now: float, until: float) -> float:
        return poll_delay(attempt, now=now, deadline=until, draw=self._random.random())

    def _keep_unsaved(self, token: Token, after: int) -> Token:
        """Remember ``token`` as newer than every record up to generation ``after``: it is saved
        (and its refresh token preferred to theirs) the next time this fetcher holds the lease."""
        self._unsaved, self._unsaved_after = token, max(after, self._seen)
        return token

    def _through_store(self, ctx: FetchContext, run: _Run, wait_until: float) -> _Flow:
        """Waiting for another holder's token is not a retry against the endpoint: it may outlast
        a refresh's deadline (the token's hard deadline), since callers then wait on this very
        fetch, and is bounded like any wait of a caller (``wait_until``, from policy.max_wait).
        The holder itself is bounded by the lease time, after which this fetcher takes over."""
        clock = ctx.clock
        phase = Phase.LOOKING
        attempt = 0
        ticket: Ticket | None = None
        watched = False
        stored = yield from self._load(ctx, run)
        while True:
            choice = decide(
                stored,
                phase,
                wall=clock.time(),
                now=clock.monotonic(),
                deadline=wait_until,
                policy=ctx.policy,
                current=ctx.current,
                rejected=ctx.rejected,
                rejected_at=ctx.rejected_at,
            )
            if choice is Choice.USE:
                assert stored is not None
                self._unsaved = self._unsaved_after = None  # the store holds a newer one
                if run.owner is not None:
                    yield from self._release(run)
                return stored
            if choice is Choice.LEASE:
                owner = yield Acquire(self._key, self.lease_time)
                if owner is None:
                    phase = Phase.BUSY
                    continue
                run.owner, phase = owner, Phase.HOLDING
                stored = yield from self._load(ctx, run)
                continue
            if choice is Choice.WAIT:
                if self._wakeups is not None and not watched:
                    # Subscribe first, then look once more: a save that landed before the
                    # subscription is seen now, one after it wakes this waiter.
                    watched = True
                    ticket = yield Watch(self._key)
                    if ticket is not None:
                        stored = yield from self._load(ctx, run)
                        continue
                delay = wait_delay(
                    attempt,
                    now=clock.monotonic(),
                    deadline=wait_until,
                    draw=self._random.random(),
                    pushed=ticket is not None,
                    recheck=self._wakeups.recheck if self._wakeups is not None else RECHECK,
                )
                yield Sleep(delay) if ticket is None else Wait(ticket, delay)
                attempt += 1
                if self._wakeups is not None:
                    ticket = yield Watch(self._key)
                stored = yield from self._load(ctx, run)
                phase = Phase.LOOKING
                continue
            if choice is Choice.GIVE_UP:
                raise TokenEndpointUnavailable(
                    "another process holds the lease for this token and stored no new token "
                    "before the deadline"
                )
            # Holding the lease: make sure it is still ours right before a refresh token is sent
            # (a holder frozen since it took the lease may have been superseded meanwhile).
            assert run.owner is not None
            if not (yield Extend(self._key, run.owner, self.lease_time)):
                run.owner, phase = None, Phase.BUSY
                continue
            run.held_until = clock.monotonic() + self.lease_time
            return (yield from self._fetch_and_save(ctx, run, stored, wait_until))

    def _fetch_and_save(
        self, ctx: FetchContext, run: _Run, stored: Token | None, wait_until: float
    ) -> _Flow:
        """Holding the lease: fetch (from the stored token's refresh token when it has one), save
        before handing the token out, release.

        A token that arrived late (see :func:`arrived_late`) is asked for once more, from the
        refresh token just saved, while the lease is still held; if a successor took the lease
        meanwhile, its token is the one handed out."""
        assert run.owner is not None
        base = stored if stored is not None else self._unsaved or ctx.current
        if stored is not None and stored.fingerprint == ctx.rejected:
            yield Delete(self._key, stored.fingerprint)
        sent = ctx.clock.time()
        token, saved = yield from self._fetch_once(ctx, run, base, wait_until)
        if arrived_late(token, ctx.policy, sent=sent, wall=ctx.clock.time()):
            if not saved:
                newer = yield from self._load(ctx, run)
                if newer is not None and ctx.clock.time() < hard_deadline(newer, ctx.policy):
                    token = newer
            elif (yield Extend(self._key, run.owner, self.lease_time)):
                token, _ = yield from self._fetch_once(ctx, run, token, wait_until)
            else:
                run.owner = None  # the lease ran out: a successor holds it
        yield from self._release(run)
        return token

    def _fetch_once(
        self, ctx: FetchContext, run: _Run, base: Token | None, wait_until: float
    ) -> Generator[Op, Any, tuple[Token, bool]]:
        """One token request from ``base`` and its save: the token, and whether it is in the
        store now (``False``: the save was refused, as a successor holds the lease or saved
        after it)."""
        clock = ctx.clock
        assert run.owner is not None
        # No cap at the lease time: the lease is kept alive while the request runs (a request
        # cut at the lease time would be retried with a refresh token the server may have spent).
        run.fetch_ctx = dataclasses.replace(ctx, current=base)
        keepalive = KeepAlive(
            self._key,
            run.owner,
            self.lease_time,
            until=clock.monotonic() + run.fetch_ctx.request_cap,
        )
        try:
            fetched: Token = yield Fetch(run.fetch_ctx, keepalive)
        except Exception:
            yield from self._release_quietly(run)
            raise
        token = with_expiry(fetched, ctx.policy)
        run.fetched = token
        ttl = record_ttl(token, wall=clock.time())
        if ttl is not None and ttl <= 0:
            return token, True  # nothing left to keep
        generation = yield from self._save(ctx, run, token, ttl, wait_until)
        if generation is None:
            # Refused: the lease ran out (this holder was frozen) and a successor holds it or
            # saved after it. The successor's token is the newer one; this one may still be
            # handed out (its access token is good) but is not kept as the newest.
            return token, False
        run.generation = generation  # the record this holder's next save replaces
        self._seen = max(self._seen, generation)
        self._unsaved = self._unsaved_after = None
        return token, True

    def _save(
        self, ctx: FetchContext, run: _Run, token: Token, ttl: float | None, wait_until: float
    ) -> Generator[Op, Any, int | None]:
        """Save ``token`` while holding the lease: its generation, or ``None`` when refused.

        A save that fails (the store is down for a moment) is tried again, the lease extended
        first, for as long as the lease surely lasts (a third of it kept as margin) and callers
        may wait. Only this fetcher knows the rotated refresh token until it is saved: were it
        to let go of the lease, the next holder would refresh from the stored one, which is
        spent. Raises StoreUnavailable when the store stays down.
        """
        clock = ctx.clock
        assert run.owner is not None
        attempt = 0
        while True:
            try:
                if attempt:
                    if not (yield Extend(self._key, run.owner, self.lease_time)):
                        return None  # the lease ran out: a successor holds it
                    run.held_until = clock.monotonic() + self.lease_time
                generation: int | None = yield Save(
                    self._key, token, ttl, run.owner, run.generation
                )
                return generation
            except StoreUnavailable:
                now = clock.monotonic()
                until = min(wait_until, run.held_until - self.lease_time / 3)
                if now >= until:
                    raise
                yield Sleep(self._poll(attempt, now, until))
                attempt += 1

    def _load(self, ctx: FetchContext, run: _Run) -> Generator[Op, Any, Token | None]:
        """The stored token, or ``None`` when there is none, it cannot be read, or it is older
        than this fetcher's unsaved token (see :func:`superseded`)."""
        try:
            record: Record | None = yield Load(self._key)
        except UnreadableRecord as problem:
            self._report(ctx, f"UnreadableRecord: {problem}")
            run.generation = problem.generation  # the holder's save replaces it
            return None
        if record is None:
            run.generation = 0
            return None
        run.generation = record.generation
        if superseded(record.generation, self._unsaved_after):
            return None
        self._seen = max(self._seen, record.generation)
        return record.token

    def _release(self, run: _Run) -> Generator[Op, Any, None]:
        owner, run.owner = run.owner, None
        if owner is not None:
            yield Release(self._key, owner)

    def _release_quietly(self, run: _Run) -> Generator[Op, Any, None]:
        with contextlib.suppress(StoreUnavailable):  # the lease runs out on its own
            yield from self._release(run)

    def _report(self, ctx: FetchContext, error: str) -> None:
        ctx.emit(Event("store_unavailable", ctx.key, error=error))

    # -- sync driver ---------------------------------------------------------------------------

    def fetch(self, ctx: FetchContext, source: TokenSource) -> Token:
        run = _Run()
        flow = self._flow(ctx, run, functools.partial(sends_refresh_token, source))
        reply: Any = None
        failure: Exception | None = None
        while True:
            try:
                op = flow.send(reply) if failure is None else flow.throw(failure)
            except StopIteration as stop:
                token: Token = stop.value
                return adopt(source, token, ctx)
            reply, failure = None, None
            try:
                reply = self._perform(op, source)
            except Exception as error:
                failure = _as_flow_error(op, error)
            except BaseException:
                flow.close()
                if run.owner is not None:
                    _ignore_errors(self._backend.release, self._key, run.owner)
                raise

    def _perform(self, op: Op, source: TokenSource) -> Any:
        backend = self._backend
        if isinstance(op, Load):
            return backend.load(op.key)
        if isinstance(op, Acquire):
            return backend.acquire(op.key, op.ttl)
        if isinstance(op, Release):
            return backend.release(op.key, op.owner)
        if isinstance(op, Save):
            return backend.save(
                op.key, op.token, ttl=op.ttl, owner=op.owner, generation=op.generation
            )
        if isinstance(op, Delete):
            return backend.delete(op.key, op.fingerprint)
        if isinstance(op, Extend):
            return backend.extend(op.key, op.owner, op.ttl)
        if isinstance(op, Fetch):
            if op.keepalive is None or not _bounded(source):
                return source.fetch(op.ctx)
            with _keeping_alive(backend, op.keepalive, op.ctx.clock):
                return source.fetch(op.ctx)
        if isinstance(op, Watch):
            assert self._wakeups is not None
            return self._wakeups.watch(op.key)
        if isinstance(op, Wait):
            assert self._wakeups is not None
            return self._wakeups.wait(op.ticket, op.seconds)
        time.sleep(op.seconds)
        return None

    # -- async driver --------------------------------------------------------------------------

    async def afetch(self, ctx: FetchContext, source: TokenSource) -> Token:
        run = _Run()
        flow = self._flow(ctx, run, functools.partial(sends_refresh_token, source))
        reply: Any = None
        failure: Exception | None = None
        while True:
            try:
                op = flow.send(reply) if failure is None else flow.throw(failure)
            except StopIteration as stop:
                token: Token = stop.value
                return adopt(source, token, ctx)
            reply, failure = None, None
            try:
                reply = await self._aperform(op, source)
            except Exception as error:
                failure = _as_flow_error(op, error)
            except BaseException:
                flow.close()
                if run.owner is not None:
                    with contextlib.suppress(Exception):  # the lease runs out on its own
                        await self._async_backend.release(self._key, run.owner)
                raise

    async def _aperform(self, op: Op, source: TokenSource) -> Any:
        backend = self._async_backend
        if isinstance(op, Load):
            return await backend.load(op.key)
        if isinstance(op, Acquire):
            return await backend.acquire(op.key, op.ttl)
        if isinstance(op, Release):
            return await backend.release(op.key, op.owner)
        if isinstance(op, Save):
            return await backend.save(
                op.key, op.token, ttl=op.ttl, owner=op.owner, generation=op.generation
            )
        if isinstance(op, Delete):
            return await backend.delete(op.key, op.fingerprint)
        if isinstance(op, Extend):
            return await backend.extend(op.key, op.owner, op.ttl)
        if isinstance(op, Fetch):
            if op.keepalive is None or not _bounded(source):
                return await source.afetch(op.ctx)
            keeper = asyncio.get_running_loop().create_task(
                _keep_alive_async(backend, op.keepalive, op.ctx.clock)
            )
            try:
                return await source.afetch(op.ctx)
            finally:
                keeper.cancel()
        if isinstance(op, Watch):
            assert self._wakeups is not None
            return await self._wakeups.awatch(op.key)
        if isinstance(op, Wait):
            assert self._wakeups is not None
            return await self._wakeups.async_wait(op.ticket, op.seconds)
        await asyncio.sleep(op.seconds)
        return None


def _as_flow_error(op: Op, error: Exception) -> Exception:
    """The error to throw into the flow: a source's error as it is; a store operation's error as
    :class:`StoreUnavailable` unless the backend already classified it (the caller never fails
    because of the store, whatever the store raised)."""
    if isinstance(op, Fetch | Sleep | Watch | Wait) or isinstance(
        error, StoreUnavailable | UnreadableRecord
    ):
        return error
    wrapped = StoreUnavailable(f"{type(op).__name__.lower()} raised {type(error).__name__}")
    wrapped.__cause__ = error
    return wrapped


def _bounded(source: TokenSource) -> bool:
    """Whether ``source``'s fetch ends by its request deadline, so that its lease may be kept
    alive until then. A token function can hang for as long as it likes: its lease is not
    extended, and ``lease_time`` bounds it (a hung holder is superseded when the lease runs out)."""
    return not isinstance(source, FunctionSource)


@contextlib.contextmanager
def _keeping_alive(backend: StoreBackend, keep: KeepAlive, clock: Clock) -> Iterator[None]:
    """Extend ``keep``'s lease from a helper thread while the body (a blocking fetch) runs."""
    done = threading.Event()

    def extend() -> None:
        while not done.wait(keep.interval) and clock.monotonic() < keep.until:
            try:
                if not backend.extend(keep.key, keep.owner, keep.ttl):
                    return  # lost (or released): the save will be refused, nothing else to do
            except Exception as error:  # the store failed: try again at the next beat
                logger.debug("lease extension failed: %s", type(error).__name__)

    thread = threading.Thread(target=extend, name="freshtoken-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


async def _keep_alive_async(backend: AsyncStoreBackend, keep: KeepAlive, clock: Clock) -> None:
    """Like :func:`_keeping_alive`, as a task on the fetch's loop (cancelled when it ends)."""
    while True:
        await asyncio.sleep(keep.interval)
        if clock.monotonic() >= keep.until:
            return
        try:
            if not await backend.extend(keep.key, keep.owner, keep.ttl):
                return
        except Exception as error:
            logger.debug("lease extension failed: %s", type(error).__name__)


def _ignore_errors(operation: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):  # best effort while unwinding; the lease times out
        operation(*args)
