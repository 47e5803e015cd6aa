"""RefreshPolicy: margins right for every lifetime, validated parameters, bounded backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import freshtoken as ft


@pytest.mark.parametrize(
    ("lifetime", "stale", "hard"),
    [
        (1.0, 0.2, 0.05),
        (60.0, 12.0, 3.0),
        (3600.0, 300.0, 30.0),
        (86400.0, 300.0, 30.0),
    ],
)
def test_default_margins_scale_with_the_lifetime_and_are_capped(
    lifetime: float, stale: float, hard: float
) -> None:
    assert ft.RefreshPolicy().margins(lifetime) == pytest.approx((stale, hard))


@given(
    lifetime=st.floats(min_value=1e-3, max_value=10 * 365 * 86400),
    draw=st.floats(min_value=0, max_value=1),
)
def test_hard_deadline_lies_strictly_between_stale_point_and_expiry(
    lifetime: float, draw: float
) -> None:
    schedule = ft.RefreshPolicy().schedule(
        received_at=0.0, remaining=lifetime, lifetime=lifetime, jitter_draw=draw
    )
    assert 0.0 < schedule.stale_at < schedule.hard_at < schedule.expires_at == lifetime


@given(draw=st.floats(min_value=0, max_value=1))
def test_jitter_only_moves_the_stale_point_earlier_within_bounds(draw: float) -> None:
    policy = ft.RefreshPolicy()
    plain = policy.schedule(received_at=0, remaining=100, lifetime=100, jitter_draw=0)
    jittered = policy.schedule(received_at=0, remaining=100, lifetime=100, jitter_draw=draw)
    assert plain.stale_at - 20 * policy.jitter <= jittered.stale_at <= plain.stale_at
    assert jittered.hard_at == plain.hard_at


def test_unknown_lifetime_uses_the_default_lifetime() -> None:
    schedule = ft.RefreshPolicy(default_lifetime=100).schedule(
        received_at=10, remaining=5, lifetime=None
    )
    assert schedule.expires_at == 110


def test_refresh_in_brings_the_stale_point_forward_but_never_past_the_hard_deadline() -> None:
    policy = ft.RefreshPolicy()
    early = policy.schedule(received_at=0, remaining=3600, lifetime=3600, refresh_in=1800)
    assert early.stale_at == 1800
    late = policy.schedule(received_at=0, remaining=3600, lifetime=3600, refresh_in=7200)
    assert late.stale_at == 3300
    ignored = ft.RefreshPolicy(honor_refresh_in=False).schedule(
        received_at=0, remaining=3600, lifetime=3600, refresh_in=10
    )
    assert ignored.stale_at == 3300


@given(failures=st.integers(min_value=-5, max_value=10_000), draw=st.floats(0, 1))
def test_backoff_grows_from_initial_to_max_with_half_to_full_jitter(
    failures: int, draw: float
) -> None:
    policy = ft.RefreshPolicy()
    delay = policy.backoff(failures, draw)
    step = min(policy.backoff_max, policy.backoff_initial * 2.0 ** min(max(failures, 1) - 1, 60))
    assert step / 2 <= delay <= step


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stale_fraction": 0.05, "hard_fraction": 0.05},
        {"stale_fraction": 1.5},
        {"hard_fraction": -1},
        {"jitter": 2},
        {"default_lifetime": 0},
        {"backoff_initial": 10, "backoff_max": 1},
        {"max_wait": float("nan")},
        {"error_cooldown": "30"},
        {"max_retry_after": True},
    ],
)
def test_impossible_policies_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ft.ConfigurationError, match="RefreshPolicy"):
        ft.RefreshPolicy(**kwargs)  # type: ignore[arg-type]


def test_policies_are_immutable_values() -> None:
    policy = ft.RefreshPolicy()
    with pytest.raises(AttributeError):
        policy.jitter = 0.5  # type: ignore[misc]
    assert policy == ft.RefreshPolicy()
