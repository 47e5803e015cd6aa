"""Helpers for the core tests: token sources that count, block and fail on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import freshtoken as ft
from freshtoken.testing import FakeClock


@dataclass
class CountingSource:
    """A sync token callable: numbered tokens, a lifetime, optional latency and failures.

    ``gate`` (when set) blocks each fetch until the test opens it; ``fail_with`` makes fetches
    raise; ``latency`` is real seconds each fetch takes (simulated I/O, never asserted on).
    """

    clock: ft.Clock
    lifetime: float = 100.0
    latency: float = 0.0
    fail_with: BaseException | None = None
    gate: threading.Event | None = None
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    issued_at: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> dict[str, object]:
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            number = self.calls
        try:
            if self.gate is not None:
                assert self.gate.wait(30), "the test never opened the gate"
            if self.latency:
                threading.Event().wait(self.latency)
            if self.fail_with is not None:
                raise self.fail_with
            self.issued_at.append(self.clock.monotonic())
            return {"access_token": f"token-{number}", "expires_in": self.lifetime}
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(clock: FakeClock) -> CountingSource:
    return CountingSource(clock)


@pytest.fixture
def make_manager(
    clock: FakeClock,
) -> Iterator[Callable[..., ft.TokenManager]]:
    managers: list[ft.TokenManager] = []

    def make(fn: object, **kwargs: object) -> ft.TokenManager:
        kwargs.setdefault("clock", clock)
        manager = ft.TokenManager(fn, **kwargs)  # type: ignore[arg-type]
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()
