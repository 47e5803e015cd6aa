"""Background refresh (``background=True``) driven by the fake clock.

The process scheduler is replaced by a real :class:`Scheduler` reading the fake clock with no
thread (see conftest.fake_scheduler), so each wake-up happens exactly when the test says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import freshtoken as ft
from freshtoken._runtime.scheduler import Scheduler
from freshtoken.testing import FakeClock

from .conftest import FlakySource, kinds

NO_JITTER = ft.RefreshPolicy(jitter=0)


def test_prefetch_schedules_a_wakeup_at_the_jittered_stale_point(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True)
    assert tokens in fake_scheduler
    assert fake_scheduler.deadline(tokens) is None  # nothing to refresh before the first token
    tokens.prefetch()
    expires = clock.monotonic() + 60
    deadline = fake_scheduler.deadline(tokens)
    assert deadline is not None
    assert expires - 15 <= deadline <= expires - 12  # 20 % of 60 s, jitter up to 25 % more


def test_the_scheduler_refreshes_at_the_stale_point_and_no_caller_waits(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True, policy=NO_JITTER)
    first = tokens.get()
    clock.advance(47.999)
    assert fake_scheduler.run_pending() == 0
    assert source.calls == 1
    clock.advance(0.001)  # the stale point: 48 s into a 60 s life
    assert fake_scheduler.run_pending() == 1
    assert source.calls == 2
    assert kinds(events) == ["fetched", "refreshed"]
    second = tokens.get()
    assert second != first
    assert source.calls == 2  # the caller found the new token fresh
    assert fake_scheduler.deadline(tokens) == clock.monotonic() + 48


def test_an_early_wakeup_is_rescheduled_at_the_stale_point(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True, policy=NO_JITTER)
    tokens.prefetch()
    stale_at = clock.monotonic() + 48
    fake_scheduler.schedule(tokens, clock.monotonic())  # e.g. a clock translated imprecisely
    assert fake_scheduler.run_pending() == 1
    assert source.calls == 1  # nothing fetched: the token is fresh
    assert fake_scheduler.deadline(tokens) == stale_at


def test_a_failed_background_refresh_is_retried_at_the_end_of_its_backoff(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True, policy=NO_JITTER)
    first = tokens.get()
    clock.advance(48)
    source.failing = ft.TokenEndpointUnavailable("503 from the token endpoint", status=503)
    fake_scheduler.run_pending()
    assert kinds(events)[-2:] == ["failed", "served_stale"]
    retry = fake_scheduler.deadline(tokens)
    assert retry is not None
    assert clock.monotonic() + 0.25 <= retry <= clock.monotonic() + 0.5  # first backoff step
    assert tokens.get() is first  # still served
    clock.advance(retry - clock.monotonic())
    source.failing = None
    fake_scheduler.run_pending()
    assert kinds(events)[-1] == "refreshed"
    assert tokens.get() != first


def test_a_wakeup_during_a_backoff_waits_for_its_end(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True, policy=NO_JITTER)
    tokens.prefetch()
    clock.advance(48)
    source.failing = RuntimeError("down")
    fake_scheduler.run_pending()
    retry = fake_scheduler.deadline(tokens)
    assert retry is not None
    fake_scheduler.schedule(tokens, clock.monotonic())  # woken again before the backoff ends
    fake_scheduler.run_pending()
    assert source.calls == 2  # no extra request
    assert fake_scheduler.deadline(tokens) == retry


def test_without_a_usable_token_the_background_fetches_after_the_backoff(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    source.failing = RuntimeError("down")
    tokens = make_manager(source, background=True)
    with pytest.raises(ft.TokenRequestError):
        tokens.get()
    retry = fake_scheduler.deadline(tokens)
    assert retry is not None
    source.failing = None
    clock.advance(retry - clock.monotonic())
    fake_scheduler.run_pending()
    assert source.calls == 2
    assert tokens.get().access_token == "token-2"
    assert source.calls == 2


def test_closing_a_manager_stops_its_refreshes(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True)
    tokens.prefetch()
    tokens.close()
    assert tokens not in fake_scheduler
    assert fake_scheduler.deadline(tokens) is None
    fake_scheduler.schedule(tokens, clock.monotonic())  # a late outcome of a fetch: ignored
    clock.advance(3600)
    assert fake_scheduler.run_pending() == 0
    assert source.calls == 1


def test_a_closed_manager_woken_anyway_does_nothing(
    clock: FakeClock,
    source: FlakySource,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True)
    tokens.prefetch()
    tokens.close()
    clock.advance(3600)
    tokens._refresh_due()  # a wake-up already handed to a worker when close() ran
    assert source.calls == 1


def test_a_forgotten_manager_is_collected_and_its_entry_dropped(
    clock: FakeClock, source: FlakySource, fake_scheduler: Scheduler
) -> None:
    tokens = ft.TokenManager(source, clock=clock, background=True)
    tokens.prefetch()
    assert len(fake_scheduler) == 1
    del tokens
    import gc

    gc.collect()
    clock.advance(3600)
    assert fake_scheduler.run_pending() == 0
    assert len(fake_scheduler) == 0
    assert source.calls == 1


def test_an_async_source_used_through_aget_is_refreshed_on_its_own_loop(
    clock: FakeClock,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def fetch_token() -> dict[str, object]:
        loops.append(asyncio.get_running_loop())
        return {"access_token": f"async-{len(loops)}", "expires_in": 60}

    tokens = make_manager(fetch_token, background=True, policy=NO_JITTER)

    async def main() -> None:
        await tokens.aget()
        clock.advance(48)
        fake_scheduler.run_pending()  # hands the refresh to this loop, does not run it
        assert kinds(events) == ["fetched"]
        for _ in range(5):
            await asyncio.sleep(0)
        assert kinds(events) == ["fetched", "refreshed"]
        assert loops == [asyncio.get_running_loop()] * 2
        assert (await tokens.aget()).access_token == "async-2"

    asyncio.run(main())


def test_an_async_source_whose_loop_has_ended_is_refreshed_in_the_worker(
    clock: FakeClock,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def fetch_token() -> dict[str, object]:
        loops.append(asyncio.get_running_loop())
        return {"access_token": f"async-{len(loops)}", "expires_in": 60}

    tokens = make_manager(fetch_token, background=True, policy=NO_JITTER)
    asyncio.run(tokens.aprefetch())
    clock.advance(48)
    fake_scheduler.run_pending()
    assert kinds(events) == ["fetched", "refreshed"]
    assert len(loops) == 2
    assert loops[0] is not loops[1]  # a loop of its own, in the waking thread


def test_a_manager_last_used_through_get_refreshes_in_the_worker(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, background=True, policy=NO_JITTER)

    async def main() -> None:
        await tokens.aget()
        tokens.invalidate(tokens.get())  # get() now goes past the fast path: last use is sync
        tokens.get()
        clock.advance(48)
        fake_scheduler.run_pending()
        assert kinds(events)[-1] == "refreshed"  # done at once, in this thread

    asyncio.run(main())
