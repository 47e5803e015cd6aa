"""The sans-I/O lease decisions: what a fetcher does with the token it loaded (FakeClock time)."""

from __future__ import annotations

import pytest
from tests.stores.stores_helpers import token_at

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._stores.shared import (
    Choice,
    Phase,
    StoreHealth,
    check_lease_time,
    decide,
    hard_deadline,
    poll_delay,
    wait_delay,
    with_expiry,
)

POLICY = ft.RefreshPolicy()


def choose(
    clock: FakeClock,
    stored: ft.Token | None,
    phase: Phase,
    *,
    current: ft.Token | None = None,
    rejected: str | None = None,
    deadline: float | None = None,
) -> Choice:
    return decide(
        stored,
        phase,
        wall=clock.time(),
        now=clock.monotonic(),
        deadline=clock.monotonic() + 5 if deadline is None else deadline,
        policy=POLICY,
        current=current,
        rejected=rejected,
    )


@pytest.mark.parametrize("phase", list(Phase))
def test_a_stored_token_the_manager_lacks_is_used_in_every_phase(
    fake_clock: FakeClock, phase: Phase
) -> None:
    stored = token_at(fake_clock, "new")
    assert choose(fake_clock, stored, phase, current=token_at(fake_clock, "old")) is Choice.USE


def test_a_stale_but_usable_stored_token_is_used_rather_than_waited_for(
    fake_clock: FakeClock,
) -> None:
    stored = token_at(fake_clock, "stale", lifetime=100, age=90)  # stale at 80 s, hard at 95 s
    assert choose(fake_clock, stored, Phase.BUSY) is Choice.USE


@pytest.mark.parametrize(
    ("phase", "expected"),
    [(Phase.LOOKING, Choice.LEASE), (Phase.HOLDING, Choice.FETCH), (Phase.BUSY, Choice.WAIT)],
)
def test_no_stored_token_means_take_the_lease_fetch_under_it_or_wait_for_its_holder(
    fake_clock: FakeClock, phase: Phase, expected: Choice
) -> None:
    assert choose(fake_clock, None, phase) is expected


@pytest.mark.parametrize(
    ("phase", "expected"),
    [(Phase.LOOKING, Choice.LEASE), (Phase.HOLDING, Choice.FETCH), (Phase.BUSY, Choice.WAIT)],
)
def test_the_token_the_manager_already_has_means_it_needs_a_newer_one(
    fake_clock: FakeClock, phase: Phase, expected: Choice
) -> None:
    same = token_at(fake_clock, "same", age=85)
    assert choose(fake_clock, same, phase, current=same) is expected


def test_a_rejected_token_is_never_handed_out_from_the_store(fake_clock: FakeClock) -> None:
    stored = token_at(fake_clock, "revoked")
    assert choose(fake_clock, stored, Phase.LOOKING, rejected=stored.fingerprint) is Choice.LEASE
    assert choose(fake_clock, stored, Phase.HOLDING, rejected=stored.fingerprint) is Choice.FETCH


def test_a_stored_token_past_its_hard_deadline_is_not_used(fake_clock: FakeClock) -> None:
    stored = token_at(fake_clock, "old", lifetime=100, age=96)  # hard deadline at 95 s
    assert choose(fake_clock, stored, Phase.LOOKING) is Choice.LEASE
    assert choose(fake_clock, stored, Phase.HOLDING) is Choice.FETCH


def test_waiting_for_another_holder_ends_at_the_deadline(fake_clock: FakeClock) -> None:
    now = fake_clock.monotonic()
    assert choose(fake_clock, None, Phase.BUSY, deadline=now + 0.001) is Choice.WAIT
    assert choose(fake_clock, None, Phase.BUSY, deadline=now) is Choice.GIVE_UP


def test_the_hard_deadline_follows_the_policy_with_a_little_headroom(
    fake_clock: FakeClock,
) -> None:
    token = token_at(fake_clock, "t", lifetime=100)
    assert token.expires_at is not None
    expires = token.expires_at.timestamp()
    # hard margin 5 % of 100 s = 5 s, headroom half of it
    assert hard_deadline(token, POLICY) == pytest.approx(expires - 5 - 2.5)
    long_lived = token_at(fake_clock, "t", lifetime=86400)
    assert long_lived.expires_at is not None
    assert hard_deadline(long_lived, POLICY) == pytest.approx(
        long_lived.expires_at.timestamp() - 30 - 1
    )


def test_a_token_without_expiry_is_given_the_default_lifetime_from_its_issue(
    fake_clock: FakeClock,
) -> None:
    token = ft.Token(access_token="opaque")
    dated = with_expiry(token, POLICY)
    assert dated.lifetime == POLICY.default_lifetime
    assert with_expiry(dated, POLICY) is dated


def test_polling_backs_off_from_10_ms_to_200_ms_and_never_passes_the_deadline() -> None:
    delays = [poll_delay(attempt, now=0.0, deadline=100.0, draw=1.0) for attempt in range(8)]
    assert delays[0] == pytest.approx(0.01)
    assert delays == sorted(delays)
    assert max(delays) == pytest.approx(0.2)
    assert poll_delay(3, now=0.0, deadline=100.0, draw=0.0) == pytest.approx(0.04)
    assert poll_delay(20, now=99.95, deadline=100.0, draw=1.0) == pytest.approx(0.05)
    assert poll_delay(0, now=101.0, deadline=100.0, draw=1.0) == 0.0


def test_a_waiter_woken_by_push_looks_again_only_after_the_safety_net() -> None:
    def pushed(draw: float, *, now: float = 0.0, recheck: float = 0.2) -> float:
        return wait_delay(5, now=now, deadline=100.0, draw=draw, pushed=True, recheck=recheck)

    # never later than polling's longest delay (a lost message costs no more than polling did)
    assert pushed(1.0) == pytest.approx(0.2)
    assert pushed(0.0) == pytest.approx(0.15)
    assert pushed(0.5, recheck=10.0) == pytest.approx(8.75)
    assert pushed(1.0, now=99.9) == pytest.approx(0.1)  # never past the deadline
    assert pushed(1.0, now=101.0) == 0.0
    # without a subscription, it is polling
    for attempt in range(6):
        assert wait_delay(attempt, now=0.0, deadline=100.0, draw=0.3, pushed=False) == poll_delay(
            attempt, now=0.0, deadline=100.0, draw=0.3
        )


def test_a_failing_store_is_left_alone_for_a_growing_while(fake_clock: FakeClock) -> None:
    health = StoreHealth(initial=1.0, maximum=4.0)
    now = fake_clock.monotonic()
    assert health.available(now)
    assert health.failed(now) == now + 1
    assert not health.available(now + 0.5)
    assert health.available(now + 1)
    assert health.failed(now) == now + 2
    assert health.failed(now) == now + 4
    assert health.failed(now) == now + 4
    health.succeeded()
    assert health.available(now)
    assert health.failed(now) == now + 1


@pytest.mark.parametrize("value", [0, -1, True, "5", 10**6])
def test_a_lease_time_that_is_not_a_sensible_number_of_seconds_is_refused(value: object) -> None:
    with pytest.raises(ft.ConfigurationError, match="lease_time"):
        check_lease_time(value)


def test_after_a_401_a_stored_token_issued_before_it_is_not_trusted(
    fake_clock: FakeClock,
) -> None:
    """A revocation that caused the 401 may have killed the store's newer token too."""
    stored = token_at(fake_clock, "newer", lifetime=100, age=10)  # issued 10 s ago
    rejected_at = fake_clock.time() - 5  # the 401 came after it was issued
    assert (
        decide(
            stored,
            Phase.LOOKING,
            wall=fake_clock.time(),
            now=fake_clock.monotonic(),
            deadline=fake_clock.monotonic() + 5,
            policy=POLICY,
            current=None,
            rejected="someone-else",
            rejected_at=rejected_at,
        )
        is Choice.LEASE
    )
    fresh = token_at(fake_clock, "fetched-after", lifetime=100, age=1)  # issued after the 401
    assert (
        decide(
            fresh,
            Phase.LOOKING,
            wall=fake_clock.time(),
            now=fake_clock.monotonic(),
            deadline=fake_clock.monotonic() + 5,
            policy=POLICY,
            current=None,
            rejected="someone-else",
            rejected_at=rejected_at,
        )
        is Choice.USE
    )
