"""One fetch in flight per manager, whatever mix of threads, tasks and event loops is asking.

The clock is a FakeClock driven by the test: it jumps through the fresh part of each token's life
and walks through the stale window in small steps while a real 50 ms fetch runs, so the test is
fast and independent of the machine's speed (a slower machine also walks the clock slower).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

import freshtoken as ft
from freshtoken.testing import FakeClock

from .conftest import CountingSource

LIFETIME = 100.0
LIFETIMES = 20


@dataclass
class Observed:
    """What the callers saw."""

    calls: int = 0
    expired: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, token: ft.Token, asked_at: float, policy: ft.RefreshPolicy) -> None:
        """The token was handed out at some time >= ``asked_at``, before its hard deadline.

        Checking against the clock *after* the call would race with the driver advancing it
        while this caller waits for the GIL; the time the call started is race-free.
        """
        assert token.expires_at is not None and token.lifetime is not None
        _, hard_margin = policy.margins(token.lifetime)
        with self.lock:
            self.calls += 1
            if token.expires_at.timestamp() - hard_margin <= asked_at:
                self.expired.append(token.fingerprint)


class Workload:
    """Threads and/or asyncio tasks (on one or more loops) calling get()/aget() until stopped."""

    def __init__(self, tokens: ft.TokenManager, clock: FakeClock) -> None:
        self.tokens = tokens
        self.clock = clock
        self.stop = threading.Event()
        self.seen = Observed()
        self.threads: list[threading.Thread] = []

    def _thread_caller(self, start: threading.Barrier) -> None:
        start.wait()
        while not self.stop.is_set():
            asked_at = self.clock.time()
            try:
                self.seen.check(self.tokens.get(), asked_at, self.tokens.policy)
            except Exception as error:
                self.seen.errors.append(error)
            self.stop.wait(0.0005)

    async def _task_caller(self) -> None:
        while not self.stop.is_set():
            asked_at = self.clock.time()
            try:
                self.seen.check(await self.tokens.aget(), asked_at, self.tokens.policy)
            except Exception as error:
                self.seen.errors.append(error)
            await asyncio.sleep(0.001)

    def _loop_runner(self, tasks: int, start: threading.Barrier) -> None:
        async def main() -> None:
            start.wait()
            await asyncio.gather(*(self._task_caller() for _ in range(tasks)))

        asyncio.run(main())

    def start(self, *, threads: int = 0, tasks: int = 0, loops: int = 1) -> None:
        parties = threads + (loops if tasks else 0) + 1
        start = threading.Barrier(parties)
        for _ in range(threads):
            self.threads.append(threading.Thread(target=self._thread_caller, args=(start,)))
        if tasks:
            for _ in range(loops):
                self.threads.append(
                    threading.Thread(target=self._loop_runner, args=(tasks // loops, start))
                )
        for thread in self.threads:
            thread.start()
        start.wait()  # everybody starts at once: the cold start

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()


def drive(tokens: ft.TokenManager, clock: FakeClock, source: CountingSource, fetches: int) -> None:
    """Advance the fake clock until ``fetches`` tokens have been fetched."""
    policy = tokens.policy
    stale_margin, _ = policy.margins(LIFETIME)
    earliest_stale = stale_margin * (1 + policy.jitter)
    tick = threading.Event()
    guard = 0
    while len(source.issued_at) < fetches:
        guard += 1
        assert guard < 200_000, "the workload stopped making progress"
        token = tokens.get()
        assert token.expires_at is not None
        remaining = token.expires_at.timestamp() - clock.time()
        if remaining > earliest_stale + 1 and source.in_flight == 0:
            clock.advance(remaining - earliest_stale - 0.5)  # skip the uneventful fresh part
        else:
            clock.advance(0.1)  # walk the stale window while the real 50 ms fetch runs
        tick.wait(0.001)


def run_scenario(
    make: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    **shape: int,
) -> Observed:
    source.lifetime = LIFETIME
    source.latency = 0.05
    tokens = make(source)
    work = Workload(tokens, clock)
    work.start(**shape)
    try:
        while source.calls == 0:
            threading.Event().wait(0.001)
        drive(tokens, clock, source, LIFETIMES + 1)
    finally:
        work.finish()
    assert source.max_in_flight == 1, "two fetches ran at once"
    assert not work.seen.errors
    assert not work.seen.expired, "a caller received a token past its hard deadline"
    assert work.seen.calls > 0
    # One fetch per lifetime: every token served until its stale point, never replaced earlier.
    stale_margin, _ = tokens.policy.margins(LIFETIME)
    shortest_service = LIFETIME - stale_margin * (1 + tokens.policy.jitter)
    gaps = [b - a for a, b in zip(source.issued_at, source.issued_at[1:], strict=False)]
    assert len(gaps) == LIFETIMES
    assert min(gaps) >= shortest_service - 0.01
    assert source.calls == LIFETIMES + 1
    return work.seen


SHAPES = {
    "64 threads": {"threads": 64},
    "500 tasks": {"tasks": 500},
    "64 threads and 500 tasks at once": {"threads": 64, "tasks": 500},
    "tasks on 3 event loops in 3 threads": {"tasks": 300, "loops": 3},
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_one_fetch_at_a_time_one_per_lifetime_no_expired_token(
    make_manager: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    shape: dict[str, int],
) -> None:
    run_scenario(make_manager, clock, source, **shape)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_cold_start_makes_one_fetch_for_everybody(
    make_manager: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    shape: dict[str, int],
) -> None:
    source.gate = threading.Event()
    tokens = make_manager(source)
    work = Workload(tokens, clock)
    work.start(**shape)
    while source.calls == 0:
        threading.Event().wait(0.001)
    threading.Event().wait(0.05)  # give every caller time to pile up behind the fetch
    source.gate.set()
    threading.Event().wait(0.05)
    work.finish()
    assert source.calls == 1
    assert work.seen.calls >= 1
    assert not work.seen.errors


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_in_the_stale_window_no_caller_waits(
    make_manager: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    shape: dict[str, int],
) -> None:
    """The refresh is blocked for the whole test, yet every caller keeps getting served."""
    tokens = make_manager(source)
    old = tokens.get()
    clock.advance(85)  # stale, still usable
    source.gate = threading.Event()
    work = Workload(tokens, clock)
    work.start(**shape)
    for _ in range(10_000):  # the refresh starts (in a thread of its own, off the callers' path)
        if source.in_flight == 1:
            break
        threading.Event().wait(0.001)
    target = work.seen.calls + 2000
    for _ in range(10_000):
        if work.seen.calls >= target:
            break
        threading.Event().wait(0.001)
    still_blocked = source.in_flight == 1
    served_while_blocked = work.seen.calls
    source.gate.set()
    work.finish()
    assert still_blocked
    assert served_while_blocked >= target
    assert source.calls == 2
    assert not work.seen.errors
    assert old.access_token == "token-1"
