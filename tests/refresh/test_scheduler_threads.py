"""The scheduler with real threads: one thread for any number of managers, a bounded worker
pool, shutdown, interpreter exit and fork. No test asserts how fast anything happened; waits
are on events with generous timeouts."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

import freshtoken as ft
from freshtoken._runtime import scheduler as _scheduler
from freshtoken._runtime.clock import SYSTEM_CLOCK, Clock
from freshtoken._runtime.scheduler import SCHEDULER, Scheduler, _Workers
from freshtoken.testing import FakeClock

from .conftest import FlakySource

PATIENCE = 30.0  # seconds a test waits for a thread before calling it a failure


class Recorder:
    """A scheduled object that records its wake-ups (the scheduler's client side, not ours)."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, *, fail: bool = False) -> None:
        self.clock = clock
        self.fail = fail
        self.woken = threading.Event()
        self.threads: list[str] = []
        self.gate: threading.Event | None = None
        self.entered: threading.Semaphore | None = None

    def _refresh_due(self) -> None:
        self.threads.append(threading.current_thread().name)
        if self.entered is not None:
            self.entered.release()
        if self.gate is not None:
            assert self.gate.wait(PATIENCE)
        self.woken.set()
        if self.fail:
            raise RuntimeError("refresh bug")


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    scheduler = Scheduler(name="test", worker_idle_timeout=PATIENCE)
    yield scheduler
    scheduler.shutdown()


def scheduler_threads(prefix: str = "freshtoken") -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == f"{prefix}-scheduler"]


def test_ten_thousand_background_managers_share_one_scheduler_thread() -> None:
    before = threading.active_count()
    managers = [ft.TokenManager(FlakySource(lifetime=3600), background=True) for _ in range(10_000)]
    try:
        for manager in managers:
            manager.prefetch()
        assert len(SCHEDULER) >= 10_000
        assert scheduler_threads() == ["freshtoken-scheduler"]
        # nothing is due for 45 minutes: no worker was needed, no thread per manager
        assert threading.active_count() - before <= 1
    finally:
        for manager in managers:
            manager.close()
    assert all(manager not in SCHEDULER for manager in managers)


def test_a_background_manager_refreshes_before_any_caller_asks() -> None:
    refreshed = threading.Event()
    source = FlakySource(lifetime=1.0)  # stale after 0.75 to 0.8 s
    with ft.TokenManager(
        source,
        background=True,
        on_event=lambda event: refreshed.set() if event.kind == "refreshed" else None,
    ) as tokens:
        first = tokens.get()
        assert refreshed.wait(PATIENCE), "the scheduler never refreshed the token"
        assert source.calls >= 2  # no caller asked: the scheduler did it
        assert tokens.get() != first
    assert tokens not in SCHEDULER
    assert SCHEDULER.deadline(tokens) is None


def test_due_refreshes_run_in_workers_not_on_the_scheduler_thread(scheduler: Scheduler) -> None:
    recorder = Recorder()
    scheduler.register(recorder)
    scheduler.schedule(recorder, SYSTEM_CLOCK.monotonic())
    assert recorder.woken.wait(PATIENCE)
    assert recorder.threads == ["test-refresh-worker-1"]
    assert scheduler.thread is not None and scheduler.thread.name == "test-scheduler"


def test_a_hung_refresh_does_not_delay_another_managers(scheduler: Scheduler) -> None:
    hung, other = Recorder(), Recorder()
    hung.gate = threading.Event()
    for recorder in (hung, other):
        scheduler.register(recorder)
    scheduler.schedule(hung, SYSTEM_CLOCK.monotonic())
    assert not other.woken.is_set()
    scheduler.schedule(other, SYSTEM_CLOCK.monotonic())
    try:
        assert other.woken.wait(PATIENCE)
        assert not hung.woken.is_set()
    finally:
        hung.gate.set()
    assert hung.woken.wait(PATIENCE)


def test_at_most_four_workers_however_many_refreshes_are_due(scheduler: Scheduler) -> None:
    gate = threading.Event()
    entered = threading.Semaphore(0)
    recorders = [Recorder() for _ in range(10)]
    for recorder in recorders:
        recorder.gate = gate
        recorder.entered = entered
        scheduler.register(recorder)
        scheduler.schedule(recorder, SYSTEM_CLOCK.monotonic())
    try:
        for _ in range(4):
            assert entered.acquire(timeout=PATIENCE)
        assert scheduler.worker_threads == 4
        assert not entered.acquire(timeout=0.2)  # the other six wait for a free worker
        assert sum(bool(r.threads) for r in recorders) == 4
    finally:
        gate.set()
    for recorder in recorders:
        assert recorder.woken.wait(PATIENCE)
    assert scheduler.worker_threads <= 4


def test_a_refresh_that_raises_is_logged_and_the_worker_carries_on(
    scheduler: Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = Recorder(fail=True), Recorder()
    for recorder in (broken, fine):
        scheduler.register(recorder)
    scheduler.schedule(broken, SYSTEM_CLOCK.monotonic())
    assert broken.woken.wait(PATIENCE)
    scheduler.schedule(fine, SYSTEM_CLOCK.monotonic())
    assert fine.woken.wait(PATIENCE)
    assert fine.threads == broken.threads  # the same worker survived
    assert "background refresh raised RuntimeError" in caplog.text


def test_an_earlier_deadline_wakes_the_sleeping_thread(scheduler: Scheduler) -> None:
    late, early = Recorder(), Recorder()
    for recorder in (late, early):
        scheduler.register(recorder)
    now = SYSTEM_CLOCK.monotonic()
    scheduler.schedule(late, now + 3600)  # starts the thread, which sleeps (at most a minute)
    scheduler.schedule(late, now + 7200)  # a later deadline: no need to wake it
    scheduler.schedule(early, now)  # an earlier one: wakes it
    assert early.woken.wait(PATIENCE)
    assert not late.woken.is_set()


def test_idle_workers_end_and_new_ones_start_on_demand() -> None:
    scheduler = Scheduler(name="idle", worker_idle_timeout=0.01)
    try:
        first, second = Recorder(), Recorder()
        for recorder in (first, second):
            scheduler.register(recorder)
        scheduler.schedule(first, SYSTEM_CLOCK.monotonic())
        assert first.woken.wait(PATIENCE)
        for thread in threading.enumerate():
            if thread.name.startswith("idle-refresh-worker"):
                thread.join(PATIENCE)
        assert scheduler.worker_threads == 0
        scheduler.schedule(second, SYSTEM_CLOCK.monotonic())
        assert second.woken.wait(PATIENCE)
        assert second.threads == ["idle-refresh-worker-2"]
    finally:
        scheduler.shutdown()


def test_shutdown_ends_the_thread_and_ignores_later_schedules(scheduler: Scheduler) -> None:
    recorder = Recorder()
    scheduler.register(recorder)
    scheduler.schedule(recorder, SYSTEM_CLOCK.monotonic() + 3600)
    thread = scheduler.thread
    assert thread is not None
    scheduler.shutdown()
    thread.join(PATIENCE)
    assert not thread.is_alive()
    scheduler.schedule(recorder, SYSTEM_CLOCK.monotonic())
    assert scheduler.run_pending() == 0
    assert not recorder.woken.is_set()


def test_unregistered_and_collected_managers_are_forgotten(clock: FakeClock) -> None:
    scheduler = Scheduler(clock, threaded=False)
    kept, dropped, gone = Recorder(clock), Recorder(clock), Recorder(clock)
    for recorder in (kept, dropped, gone):
        scheduler.register(recorder)
        scheduler.schedule(recorder, clock.monotonic() + 1)
    scheduler.unregister(dropped)
    scheduler.unregister(Recorder(clock))  # never registered: nothing happens
    assert dropped not in scheduler
    del dropped  # its weakref callback finds it unregistered already
    del gone, recorder
    gc.collect()
    assert len(scheduler) == 2  # until the next pass drops the collected one
    clock.advance(1)
    assert scheduler.run_pending() == 1
    assert kept.woken.is_set()
    assert len(scheduler) == 0


def test_a_manager_collected_between_drop_and_wakeup_is_skipped(clock: FakeClock) -> None:
    scheduler = Scheduler(clock, threaded=False)
    recorder = Recorder(clock)
    scheduler.register(recorder)
    scheduler.schedule(recorder, clock.monotonic())
    del recorder
    gc.collect()
    scheduler._collected.clear()  # as if collected after this pass dropped the dead ones
    assert scheduler.run_pending() == 0


def test_a_new_manager_with_a_collected_ones_id_starts_unscheduled(clock: FakeClock) -> None:
    scheduler = Scheduler(clock, threaded=False)
    recorder = Recorder(clock)
    scheduler.register(recorder)
    scheduler.schedule(recorder, clock.monotonic())
    scheduler.register(recorder)  # same id again: the old deadline is dropped
    assert scheduler.deadline(recorder) is None
    assert scheduler.run_pending() == 0


def test_deadlines_of_a_fake_clock_manager_are_translated_to_the_schedulers_clock() -> None:
    manager_clock = FakeClock(monotonic=5.0)
    scheduler_clock = FakeClock(monotonic=1000.0)
    scheduler = Scheduler(scheduler_clock, threaded=False)
    recorder = Recorder(manager_clock)
    scheduler.register(recorder)
    scheduler.schedule(recorder, 15.0)  # 10 s from the manager's now
    assert scheduler.deadline(recorder) == 15.0
    scheduler_clock.advance(9.9)
    assert scheduler.run_pending() == 0
    scheduler_clock.advance(0.1)
    assert scheduler.run_pending() == 1


def test_after_fork_the_child_gets_new_locks_and_its_own_thread(scheduler: Scheduler) -> None:
    recorder = Recorder()
    scheduler.register(recorder)
    scheduler.schedule(recorder, SYSTEM_CLOCK.monotonic() + 0.2)
    old = scheduler.thread
    assert old is not None
    scheduler._after_fork_in_child()  # what os.register_at_fork runs in a child
    new = scheduler.thread
    assert new is not None and new is not old and new.is_alive()
    old.join(PATIENCE)  # the parent's thread object retires at its next wake-up
    assert not old.is_alive()
    assert recorder.woken.wait(PATIENCE)


def test_after_fork_an_empty_scheduler_starts_no_thread() -> None:
    scheduler = Scheduler(name="empty")
    scheduler._after_fork_in_child()
    assert scheduler.thread is None
    _scheduler._after_fork_in_child()  # the hook itself, over every live scheduler


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_process_with_background_managers_exits_even_with_a_refresh_hung() -> None:
    result = run_python(
        """
        import threading
        import freshtoken as ft

        hang = threading.Event()
        in_refresh = threading.Event()
        calls = []

        def hanging():
            calls.append(1)
            if len(calls) > 1:
                in_refresh.set()
                hang.wait()  # a token endpoint that never answers
            return {"access_token": "first", "expires_in": 1}

        managers = [
            ft.TokenManager(lambda: {"access_token": "t", "expires_in": 3600}, background=True)
            for _ in range(100)
        ]
        for manager in managers:
            manager.prefetch()
        stuck = ft.TokenManager(hanging, background=True)
        stuck.prefetch()
        names = {t.name for t in threading.enumerate()}
        assert "freshtoken-scheduler" in names, names
        assert in_refresh.wait(60)  # the background refresh hangs in a worker thread
        print("exiting")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exiting"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_keeps_refreshing_in_the_background() -> None:
    result = run_python(
        """
        import os, threading
        import freshtoken as ft

        refreshed = threading.Event()
        tokens = ft.TokenManager(
            lambda: {"access_token": "t%d" % os.getpid(), "expires_in": 1},
            background=True,
            on_event=lambda e: refreshed.set() if e.kind == "refreshed" else None,
        )
        tokens.prefetch()
        pid = os.fork()
        if pid == 0:
            ok = refreshed.wait(60) and tokens.get().access_token == "t%d" % os.getpid()
            threads = [t.name for t in threading.enumerate() if t.name == "freshtoken-scheduler"]
            os._exit(0 if ok and threads == ["freshtoken-scheduler"] else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child 0"


def test_a_stopped_worker_pool_takes_no_more_tasks() -> None:
    ran: list[int] = []
    workers = _Workers(1, PATIENCE, "stopped")
    workers.stop()
    workers.submit(lambda: ran.append(1))
    assert workers.threads == 0
    assert ran == []
