"""Riding out token-endpoint outages on the current token (fake clock, failures on demand).

In the stale window a failed refresh keeps the current token in service and is retried with
backoff; only past the hard deadline do callers see the error, and a token past its hard
deadline is never handed out.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import freshtoken as ft
from freshtoken._runtime.scheduler import Scheduler
from freshtoken.testing import FakeClock

from .conftest import FlakySource, kinds, settle

NO_JITTER = ft.RefreshPolicy(jitter=0)
OUTAGE = ft.TokenEndpointUnavailable("503 from the token endpoint", status=503)


def drive(
    clock: FakeClock,
    tokens: ft.TokenManager,
    scheduler: Scheduler | None,
    *,
    until: float,
    step: float = 0.05,
) -> tuple[list[str], list[str]]:
    """Call get() every ``step`` seconds until ``until``; returns (tokens seen, errors)."""
    seen: list[str] = []
    errors: list[str] = []
    while clock.monotonic() < until:
        clock.advance(step)
        if scheduler is not None:
            scheduler.run_pending()
        try:
            seen.append(tokens.get().access_token)
            settle()
        except ft.TokenEndpointUnavailable as error:
            errors.append(type(error).__name__)
    return seen, errors


@pytest.mark.parametrize("background", [False, True])
def test_an_outage_inside_the_stale_window_causes_no_failed_call(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
    background: bool,
) -> None:
    """60 s token: stale at 48 s, hard deadline at 57 s; the endpoint is down from 40 s to 55 s."""
    tokens = make_manager(source, policy=NO_JITTER, background=background)
    start = clock.monotonic()
    tokens.prefetch()
    scheduler = fake_scheduler if background else None
    drive(clock, tokens, scheduler, until=start + 40)
    source.failing = OUTAGE
    seen_down, errors_down = drive(clock, tokens, scheduler, until=start + 55)
    source.failing = None
    seen_after, errors_after = drive(clock, tokens, scheduler, until=start + 70)
    assert errors_down == errors_after == []
    assert set(seen_down) == {"token-1"}
    assert seen_after[-1] != "token-1"
    assert "served_stale" in kinds(events)
    assert kinds(events).count("refreshed") == 1


def test_a_failed_refresh_is_retried_with_growing_backoff_not_per_call(
    clock: FakeClock,
    source: FlakySource,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    start = clock.monotonic()
    tokens.prefetch()
    source.failing = OUTAGE
    clock.advance(48)
    seen, errors = drive(clock, tokens, None, until=start + 56.9, step=0.01)
    assert errors == []
    assert len(seen) > 800  # ~890 calls in the stale window ...
    assert source.calls - 1 < 12  # ... but a handful of token requests: 0.5, 1, 2, 4 s apart...


def test_past_the_hard_deadline_callers_get_the_error_and_never_the_old_token(
    clock: FakeClock,
    source: FlakySource,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    start = clock.monotonic()
    tokens.prefetch()
    source.failing = OUTAGE
    clock.advance(48)
    seen, errors = drive(clock, tokens, None, until=start + 56.95)
    assert errors == [] and set(seen) == {"token-1"}
    clock.advance(0.05)  # the hard deadline, 3 s before expiry
    with pytest.raises(ft.TokenEndpointUnavailable):
        tokens.get()
    seen, errors = drive(clock, tokens, None, until=start + 70)
    assert seen == []  # the old token is never handed out again
    assert errors


@pytest.mark.parametrize("background", [False, True])
def test_a_backoff_never_outlasts_the_hard_deadline(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
    background: bool,
) -> None:
    """A Retry-After of 60 s received 9 s before the hard deadline must not refuse callers
    for 51 s after it: at the hard deadline the next caller (or the scheduler) tries again."""
    tokens = make_manager(source, policy=NO_JITTER, background=background)
    start = clock.monotonic()
    tokens.prefetch()
    clock.advance(48)
    source.failing = ft.TokenEndpointUnavailable("429", status=429, retry_after=60)
    assert tokens.get().access_token == "token-1"  # starts the refresh, which fails
    settle()
    retry = tokens._life.failure.not_before if tokens._life.failure else None
    assert retry == start + 52.5  # halfway to the hard deadline at 57 s, not at 108 s
    if background:
        assert fake_scheduler.deadline(tokens) == retry
    source.failing = None  # the endpoint is back
    clock.advance(retry - clock.monotonic())
    fake_scheduler.run_pending()
    tokens.get()  # without background, this caller starts the refresh (and gets token-1)
    settle()
    assert tokens.get().access_token == "token-3"  # (the failed request was call 2)


def test_a_non_retryable_error_in_the_stale_window_also_keeps_the_token_in_service(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    first = tokens.get()
    clock.advance(48)
    source.failing = ft.OAuthError("invalid_client", "client authentication failed", None, 401)
    assert tokens.get() is first
    settle()
    assert tokens.get() is first
    assert kinds(events)[-2:] == ["failed", "served_stale"]
    assert source.calls == 2  # the cool-down stops a request per call


@pytest.mark.parametrize("background", [False, True])
def test_callers_without_a_token_see_the_endpoint_return_within_the_recovery_interval(
    clock: FakeClock,
    source: FlakySource,
    fake_scheduler: Scheduler,
    make_manager: Callable[..., ft.TokenManager],
    background: bool,
) -> None:
    """2 s tokens (stale at 1.6 s, hard deadline at 1.9 s); the endpoint fails from 1.5 s to
    3 s, so callers have no token from 1.9 s. However many failures the outage has piled up,
    the first call after 3 s that can succeed does so within one recovery interval (0.25 s,
    drawn up to 0.3 s), and no more than four token requests a second are sent meanwhile."""
    source.lifetime = 2.0
    tokens = make_manager(source, policy=NO_JITTER, background=background)
    start = clock.monotonic()
    tokens.prefetch()
    scheduler = fake_scheduler if background else None
    drive(clock, tokens, scheduler, until=start + 1.5, step=0.02)
    source.failing = OUTAGE
    before = source.calls
    _, errors_down = drive(clock, tokens, scheduler, until=start + 3.0, step=0.02)
    requests_down = source.calls - before
    source.failing = None
    returned = clock.monotonic()
    seen, _ = drive(clock, tokens, scheduler, until=start + 3.5, step=0.02)
    assert errors_down  # 1.1 s without a token: callers are told, not served the old one
    assert requests_down <= 4 * 1.5 + 1
    assert seen and seen[0] != "token-1"
    first_success = start + 3.5 - 0.02 * len(seen)
    assert first_success - returned <= 0.3 + 0.02
