"""Helpers for the refresh-ahead tests: a token callable that fails on demand, and a scheduler
driven by the fake clock instead of a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import freshtoken as ft
from freshtoken._runtime import scheduler as _scheduler
from freshtoken._runtime.launch import wait_for_launches
from freshtoken._runtime.scheduler import Scheduler
from freshtoken.testing import FakeClock


@dataclass
class FlakySource:
    """A sync token callable returning numbered tokens of ``lifetime`` seconds.

    Set ``failing`` to an exception to make every fetch raise it until it is set back to None
    (an outage); ``calls`` counts fetches, ``issued`` the tokens handed out.
    """

    lifetime: float = 60.0
    failing: BaseException | None = None
    calls: int = 0
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> dict[str, object]:
        with self.lock:
            self.calls += 1
            number = self.calls
        if self.failing is not None:
            raise self.failing
        name = f"token-{number}"
        self.issued.append(name)
        return {"access_token": name, "expires_in": self.lifetime}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source() -> FlakySource:
    return FlakySource()


@pytest.fixture
def events() -> list[ft.Event]:
    return []


@pytest.fixture
def fake_scheduler(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Scheduler:
    """The process scheduler replaced by one that reads the fake clock and runs no thread.

    Managers look the scheduler up at each call, so background managers created in the test
    register here; the test wakes them with ``fake_scheduler.run_pending()`` after advancing the
    clock, deterministically. It is a real Scheduler, only its clock and its thread differ.
    """
    scheduler = Scheduler(clock, threaded=False)
    monkeypatch.setattr(_scheduler, "SCHEDULER", scheduler)
    return scheduler


@pytest.fixture
def make_manager(
    clock: FakeClock, events: list[ft.Event]
) -> Iterator[Callable[..., ft.TokenManager]]:
    managers: list[ft.TokenManager] = []

    def make(fn: object, **kwargs: object) -> ft.TokenManager:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("on_event", events.append)
        manager = ft.TokenManager(fn, **kwargs)  # type: ignore[arg-type]
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.close()


def kinds(events: list[ft.Event]) -> list[str]:
    return [event.kind for event in events]


def settle() -> None:
    """Wait for refreshes started off the caller's path to finish: every launch has started its
    ``freshtoken-refresh`` thread, and each of those threads has ended."""
    assert wait_for_launches(timeout=30)
    for thread in threading.enumerate():
        if thread.name == "freshtoken-refresh":
            thread.join()
