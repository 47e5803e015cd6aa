"""The default refresh policy, checked for the lifetimes users meet: 1 s, 60 s, 1 h, 24 h.

The numbers below are the ones docs/policy.md states; if a default changes, both change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import freshtoken as ft
from freshtoken._core.lifecycle import Lifecycle
from freshtoken.testing import FakeClock

# lifetime -> (stale margin without jitter, hard margin), seconds before expiry
DEFAULT_MARGINS = {
    1.0: (0.2, 0.05),
    60.0: (12.0, 3.0),
    3600.0: (300.0, 30.0),
    86400.0: (300.0, 30.0),
}
LIFETIMES = sorted(DEFAULT_MARGINS)


@pytest.mark.parametrize("lifetime", LIFETIMES)
def test_default_margins_for_common_lifetimes(lifetime: float) -> None:
    stale, hard = ft.RefreshPolicy().margins(lifetime)
    assert (stale, hard) == pytest.approx(DEFAULT_MARGINS[lifetime])


@pytest.mark.parametrize("lifetime", LIFETIMES)
@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
def test_schedule_is_ordered_and_jitter_stays_within_a_quarter_of_the_stale_margin(
    lifetime: float, draw: float
) -> None:
    received = 1000.0
    sched = ft.RefreshPolicy().schedule(
        received_at=received, remaining=lifetime, lifetime=lifetime, jitter_draw=draw
    )
    stale_margin, hard_margin = DEFAULT_MARGINS[lifetime]
    expires = received + lifetime
    assert received < sched.stale_at < sched.hard_at < sched.expires_at == expires
    assert sched.hard_at == pytest.approx(expires - hard_margin)
    # jitter only moves the stale point earlier, by at most 25 % of the stale margin
    assert expires - 1.25 * stale_margin - 1e-9 <= sched.stale_at <= expires - stale_margin
    assert sched.stale_at == pytest.approx(expires - stale_margin * (1 + 0.25 * draw))


@pytest.mark.parametrize("lifetime", LIFETIMES)
def test_the_token_serves_at_least_three_quarters_of_its_life_before_any_refresh(
    lifetime: float,
) -> None:
    """No lifetime makes every call a refresh (a fixed 10 s or 5 min margin would for 1 s)."""
    sched = ft.RefreshPolicy().schedule(
        received_at=0.0, remaining=lifetime, lifetime=lifetime, jitter_draw=0.999999
    )
    assert sched.stale_at >= 0.75 * lifetime


@pytest.mark.parametrize("lifetime", LIFETIMES)
def test_a_refresh_has_three_quarters_of_the_stale_window_to_succeed_before_callers_wait(
    lifetime: float,
) -> None:
    sched = ft.RefreshPolicy().schedule(
        received_at=0.0, remaining=lifetime, lifetime=lifetime, jitter_draw=0.0
    )
    stale_margin, _ = DEFAULT_MARGINS[lifetime]
    assert sched.hard_at - sched.stale_at >= 0.75 * stale_margin - 1e-9


def test_jitter_spreads_a_fleet_started_at_once() -> None:
    """1,000 managers that fetched in the same instant do not all turn stale together."""
    policy = ft.RefreshPolicy()
    draws = [i / 1000 for i in range(1000)]
    stale = [
        policy.schedule(received_at=0.0, remaining=3600, lifetime=3600, jitter_draw=d).stale_at
        for d in draws
    ]
    assert max(stale) - min(stale) == pytest.approx(75.0, abs=0.1)  # 25 % of 300 s
    assert len({round(s, 3) for s in stale}) == 1000


def token_with(extra: dict[str, object], lifetime: float, wall: float) -> ft.Token:
    issued = datetime.fromtimestamp(wall, UTC)
    return ft.Token(
        access_token="t",
        issued_at=issued,
        expires_at=issued + timedelta(seconds=lifetime),
        extra=extra,
    )


def test_a_servers_refresh_in_brings_the_stale_point_forward() -> None:
    clock = FakeClock()
    life = Lifecycle(ft.RefreshPolicy())
    entry = life.fetch_succeeded(
        token_with({"refresh_in": 1800}, 86400, clock.time()),
        now=clock.monotonic(),
        wall=clock.time(),
        jitter_draw=0,
    )
    assert entry.stale_at == clock.monotonic() + 1800  # MSAL-style half-life from the server
    assert entry.hard_at == clock.monotonic() + 86400 - 30


@pytest.mark.parametrize("refresh_in", ["1800", True, -5, None])
def test_a_malformed_or_negative_refresh_in_is_ignored(refresh_in: object) -> None:
    life = Lifecycle(ft.RefreshPolicy())
    extra = {} if refresh_in is None else {"refresh_in": refresh_in}
    entry = life.fetch_succeeded(
        token_with(extra, 3600, 1_800_000_000.0), now=0.0, wall=1_800_000_000.0, jitter_draw=0
    )
    assert entry.stale_at == 3600 - 300


def test_refresh_in_later_than_our_stale_point_changes_nothing() -> None:
    life = Lifecycle(ft.RefreshPolicy())
    entry = life.fetch_succeeded(
        token_with({"refresh_in": 3590}, 3600, 1_800_000_000.0),
        now=0.0,
        wall=1_800_000_000.0,
        jitter_draw=0,
    )
    assert entry.stale_at == 3300


def test_refresh_in_can_be_switched_off() -> None:
    life = Lifecycle(ft.RefreshPolicy(honor_refresh_in=False))
    entry = life.fetch_succeeded(
        token_with({"refresh_in": 60}, 3600, 1_800_000_000.0),
        now=0.0,
        wall=1_800_000_000.0,
        jitter_draw=0,
    )
    assert entry.stale_at == 3300


def test_refresh_in_from_a_token_response_reaches_the_manager(clock: FakeClock) -> None:
    def fn() -> dict[str, object]:
        return {"access_token": "abc", "expires_in": 7200, "refresh_in": 3600}

    with ft.TokenManager(fn, clock=clock) as tokens:
        first = tokens.get()
        clock.advance(3599)
        assert tokens.get() is first
        assert "fresh" in repr(tokens)
        clock.advance(1)
        assert "stale" in repr(tokens)
