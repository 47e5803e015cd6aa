"""The scheduler's decisions, as pure functions of the time: which managers are due, when next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import freshtoken as ft
from freshtoken._core.lifecycle import Lifecycle
from freshtoken._runtime.scheduler import _Schedule, pending_wakeup
from freshtoken.testing import FakeClock

WALL0 = 1_800_000_000.0
MONO0 = 1000.0


class TestSchedule:
    def test_nothing_scheduled_has_no_wakeup_and_nothing_due(self) -> None:
        schedule: _Schedule[str] = _Schedule()
        assert schedule.next_wakeup() is None
        assert schedule.due(1e18) == []
        assert len(schedule) == 0

    def test_keys_come_due_in_deadline_order_at_their_deadline_not_before(self) -> None:
        clock = FakeClock()
        schedule: _Schedule[str] = _Schedule()
        now = clock.monotonic()
        schedule.add("b", now + 20)
        schedule.add("a", now + 10)
        schedule.add("c", now + 30)
        assert schedule.next_wakeup() == now + 10
        clock.advance(9.999)
        assert schedule.due(clock.monotonic()) == []
        clock.advance(0.001)
        assert schedule.due(clock.monotonic()) == ["a"]
        clock.advance(100)
        assert schedule.due(clock.monotonic()) == ["b", "c"]
        assert schedule.next_wakeup() is None

    def test_rescheduling_replaces_the_old_deadline(self) -> None:
        schedule: _Schedule[str] = _Schedule()
        schedule.add("a", 10)
        schedule.add("a", 50)
        assert schedule.deadline("a") == 50
        assert schedule.next_wakeup() == 50  # the replaced entry at 10 is skipped
        assert schedule.due(20) == []
        assert schedule.due(50) == ["a"]
        assert "a" not in schedule

    def test_an_earlier_reschedule_wins_too(self) -> None:
        schedule: _Schedule[str] = _Schedule()
        schedule.add("a", 50)
        schedule.add("a", 10)
        assert schedule.due(10) == ["a"]
        assert schedule.due(100) == []  # the replaced entry at 50 is not due again

    def test_add_reports_whether_the_new_deadline_is_the_earliest(self) -> None:
        schedule: _Schedule[str] = _Schedule()
        assert schedule.add("a", 10) is True
        assert schedule.add("b", 20) is False
        assert schedule.add("c", 5) is True

    def test_removed_keys_are_never_due(self) -> None:
        schedule: _Schedule[str] = _Schedule()
        schedule.add("a", 10)
        schedule.add("b", 20)
        schedule.remove("a")
        schedule.remove("never-added")
        assert schedule.deadline("a") is None
        assert schedule.next_wakeup() == 20
        assert schedule.due(100) == ["b"]
        assert len(schedule) == 0


def entry_life(lifetime: float = 100.0) -> Lifecycle:
    life = Lifecycle(ft.RefreshPolicy())
    issued = datetime.fromtimestamp(WALL0, UTC)
    token = ft.Token(
        access_token="t", issued_at=issued, expires_at=issued + timedelta(seconds=lifetime)
    )
    life.fetch_succeeded(token, now=MONO0, wall=WALL0, jitter_draw=0)
    return life


class TestPendingWakeup:
    def test_an_early_wakeup_is_moved_to_the_stale_point(self) -> None:
        life = entry_life()
        assert life.entry is not None
        assert pending_wakeup(life, MONO0 + 1) == life.entry.stale_at

    def test_a_backing_off_failure_wakes_at_the_end_of_its_backoff(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        failure = life.fetch_failed(RuntimeError("down"), now=MONO0, draw=0)
        assert pending_wakeup(life, MONO0) == failure.not_before
        assert pending_wakeup(life, failure.not_before) is None

    def test_a_fetch_in_flight_schedules_its_own_next_wakeup(self) -> None:
        life = entry_life()
        assert life.entry is not None
        life.next_action(life.entry.stale_at)  # starts the refresh
        assert life.fetching
        assert pending_wakeup(life, life.entry.stale_at) is None

    @pytest.mark.parametrize("at", [0.0, 10.0])
    def test_no_token_and_no_failure_needs_no_wakeup(self, at: float) -> None:
        assert pending_wakeup(Lifecycle(ft.RefreshPolicy()), MONO0 + at) is None
