"""The stale-window refresh starts off the caller's path, and a thread that cannot start is a
failed fetch, never a caller left waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import freshtoken as ft
from freshtoken._runtime.launch import launch, wait_for_launches
from freshtoken.testing import FakeClock

from .conftest import CountingSource


def test_a_launch_starts_the_thread_and_can_be_waited_for() -> None:
    ran = threading.Event()
    thread = threading.Thread(target=ran.set, name="launched", daemon=True)
    failures: list[BaseException] = []
    launch(thread, failures.append)
    assert wait_for_launches(timeout=30)
    thread.join(30)
    assert ran.is_set()
    assert failures == []


def test_a_thread_that_cannot_start_is_reported_not_lost() -> None:
    thread = threading.Thread(target=lambda: None, daemon=True)
    thread.start()
    thread.join()
    failures: list[BaseException] = []
    launch(thread, failures.append)  # a thread can be started only once: start() raises
    assert wait_for_launches(timeout=30)
    assert [type(error) for error in failures] == [RuntimeError]


def _unstartable(error: BaseException) -> Callable[[threading.Thread], None]:
    def start(self: threading.Thread) -> None:
        raise error

    return start


def test_when_no_refresh_thread_can_start_the_refresh_fails_and_the_token_is_still_served(
    make_manager: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[ft.Event] = []
    tokens = make_manager(source, on_event=events.append)
    first = tokens.get()
    clock.advance(85)  # stale, still usable
    monkeypatch.setattr(
        threading.Thread, "start", _unstartable(RuntimeError("can't start new thread"))
    )
    assert tokens.get() is first  # served at once, as always in the stale window
    assert wait_for_launches(timeout=30)
    monkeypatch.undo()
    failed = [event for event in events if event.kind == "failed"]
    assert len(failed) == 1
    assert failed[0].error == (
        "TokenRequestError: could not start the refresh thread: RuntimeError"
    )
    assert tokens.get() is first  # backing off: no new attempt on every call
    assert source.calls == 1


def test_a_launch_interrupted_by_a_base_exception_abandons_the_refresh(
    make_manager: Callable[..., ft.TokenManager],
    clock: FakeClock,
    source: CountingSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = make_manager(source)
    first = tokens.get()
    clock.advance(85)
    monkeypatch.setattr(threading.Thread, "start", _unstartable(SystemExit()))
    assert tokens.get() is first
    assert wait_for_launches(timeout=30)
    monkeypatch.undo()
    clock.advance(10)  # past the hard deadline: the abandoned refresh is no longer in flight
    second = tokens.get()
    assert second.access_token == "token-2"
    assert source.calls == 2
