"""The sans-I/O core: what a caller arriving at `now` does, with every transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import freshtoken as ft
from freshtoken._core.lifecycle import Action, Lifecycle

WALL0 = 1_800_000_000.0
MONO0 = 1000.0


def token(name: str, lifetime: float | None, wall: float = WALL0) -> ft.Token:
    issued = datetime.fromtimestamp(wall, UTC)
    expires = None if lifetime is None else issued + timedelta(seconds=lifetime)
    return ft.Token(access_token=name, issued_at=issued, expires_at=expires)


def fetched(life: Lifecycle, name: str = "t1", lifetime: float = 100.0, at: float = 0.0) -> None:
    life.fetch_succeeded(
        token(name, lifetime, WALL0 + at), now=MONO0 + at, wall=WALL0 + at, jitter_draw=0
    )


class TestDecisions:
    def test_first_caller_fetches_and_the_next_waits(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        assert life.next_action(MONO0).action is Action.FETCH
        assert life.next_action(MONO0).action is Action.WAIT

    def test_fresh_token_is_used(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life)
        decision = life.next_action(MONO0 + 79)
        assert decision.action is Action.USE
        assert decision.token is not None and decision.token.access_token == "t1"

    def test_stale_token_is_used_while_one_caller_refreshes(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life)
        assert life.next_action(MONO0 + 81).action is Action.USE_AND_REFRESH
        assert life.next_action(MONO0 + 82).action is Action.USE

    def test_past_the_hard_deadline_callers_fetch_or_wait(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life)
        assert life.next_action(MONO0 + 95).action is Action.FETCH
        assert life.next_action(MONO0 + 95).action is Action.WAIT

    def test_failed_refresh_in_the_stale_window_keeps_serving_then_retries_after_backoff(
        self,
    ) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life)
        assert life.next_action(MONO0 + 81).action is Action.USE_AND_REFRESH
        failure = life.fetch_failed(ft.TokenEndpointUnavailable("down"), now=MONO0 + 81, draw=1.0)
        assert failure.not_before == MONO0 + 81 + 0.5
        assert life.next_action(MONO0 + 81.2).action is Action.USE
        assert life.next_action(MONO0 + 81.6).action is Action.USE_AND_REFRESH

    def test_without_a_token_a_recent_failure_is_raised_again_until_backoff_ends(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        error = ft.TokenEndpointUnavailable("down")
        life.fetch_failed(error, now=MONO0, draw=0.0)
        decision = life.next_action(MONO0 + 0.1)
        assert decision.action is Action.FAIL
        assert decision.error is error
        assert life.next_action(MONO0 + 0.3).action is Action.FETCH

    def test_consecutive_failures_back_off_exponentially(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        now = MONO0
        delays = []
        for _ in range(8):
            assert life.next_action(now).action is Action.FETCH
            failure = life.fetch_failed(RuntimeError("x"), now=now, draw=1.0)
            delays.append(failure.not_before - now)
            now = failure.not_before
        assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30]

    def test_without_a_token_callers_retry_at_the_recovery_pace_however_long_it_failed(
        self,
    ) -> None:
        """The unattended backoff grows; a caller with no usable token may start the next fetch
        a recovery interval after the last failure, so the endpoint's return is seen at once."""
        life = Lifecycle(ft.RefreshPolicy(recovery_interval=0.25))
        now = MONO0
        unattended = []
        for _ in range(8):
            assert life.next_action(now).action is Action.FETCH
            failure = life.fetch_failed(RuntimeError("x"), now=now, draw=1.0)
            assert failure.retry_at == pytest.approx(now + 0.3)
            unattended.append(failure.not_before - now)
            assert life.next_action(now + 0.29).action is Action.FAIL
            now = failure.retry_at
        assert unattended == [0.5, 1, 2, 4, 8, 16, 30, 30]

    def test_the_recovery_pace_keeps_retry_after_and_the_cool_down(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        failure = life.fetch_failed(
            ft.TokenEndpointUnavailable("429", retry_after=7), now=MONO0, draw=0
        )
        assert failure.retry_at == failure.not_before == MONO0 + 7
        life.next_action(failure.not_before)
        failure = life.fetch_failed(ft.OAuthError("invalid_client"), now=MONO0 + 7, draw=0)
        assert failure.retry_at == failure.not_before == MONO0 + 7 + 30

    def test_a_refresh_that_fails_while_the_token_serves_backs_off_exponentially(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life)
        assert life.next_action(MONO0 + 81).action is Action.USE_AND_REFRESH
        assert not life.urgent(MONO0 + 81)
        life.fetch_failed(ft.TokenEndpointUnavailable("down"), now=MONO0 + 81, draw=1.0)
        assert life.next_action(MONO0 + 81.4).action is Action.USE  # 0.5 s, not 0.3 s
        assert life.urgent(MONO0 + 95)  # past the hard deadline: callers wait

    def test_retry_after_is_honoured_up_to_the_cap(self) -> None:
        life = Lifecycle(ft.RefreshPolicy(max_retry_after=60))
        life.next_action(MONO0)
        failure = life.fetch_failed(
            ft.TokenEndpointUnavailable("429", retry_after=7), now=MONO0, draw=0
        )
        assert failure.not_before == MONO0 + 7
        life.next_action(failure.not_before)
        failure = life.fetch_failed(
            ft.TokenEndpointUnavailable("429", retry_after=1e9), now=MONO0, draw=0
        )
        assert failure.not_before == MONO0 + 60

    def test_non_retryable_errors_cool_down(self) -> None:
        life = Lifecycle(ft.RefreshPolicy(error_cooldown=30))
        life.next_action(MONO0)
        failure = life.fetch_failed(ft.OAuthError("invalid_client"), now=MONO0, draw=0)
        assert failure.not_before == MONO0 + 30
        assert life.next_action(MONO0 + 29).action is Action.FAIL

    def test_success_clears_the_failure(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        life.fetch_failed(RuntimeError("x"), now=MONO0, draw=0)
        life.next_action(MONO0 + 1)
        fetched(life, at=1)
        assert life.failure is None

    def test_a_token_that_arrives_unusable_is_a_failure(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        with pytest.raises(ft.TokenResponseError, match="already expired"):
            life.fetch_succeeded(token("t", 100, WALL0 - 99), now=MONO0, wall=WALL0, jitter_draw=0)
        assert life.entry is None
        assert not life.fetching
        assert life.next_action(MONO0).action is Action.FAIL

    def test_invalidate_drops_only_the_given_token(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        fetched(life, "t1")
        assert not life.invalidate(token("other", 100))
        assert life.entry is not None
        assert life.invalidate(token("t1", 100))
        assert not life.invalidate(token("t1", 100))
        assert life.next_action(MONO0).action is Action.FETCH

    def test_abandoned_fetch_lets_the_next_caller_take_over(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        assert life.next_action(MONO0).action is Action.FETCH
        life.fetch_abandoned()
        assert life.next_action(MONO0).action is Action.FETCH

    def test_adopt_takes_a_usable_token_and_refuses_a_dead_one(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        assert (
            life.adopt(token("dead", 100, WALL0 - 99), now=MONO0, wall=WALL0, jitter_draw=0) is None
        )
        entry = life.adopt(token("live", 100), now=MONO0, wall=WALL0, jitter_draw=0)
        assert entry is not None and life.entry is entry

    def test_token_without_expiry_gets_the_default_lifetime(self) -> None:
        life = Lifecycle(ft.RefreshPolicy(default_lifetime=50))
        life.next_action(MONO0)
        entry = life.fetch_succeeded(token("t", None), now=MONO0, wall=WALL0, jitter_draw=0)
        assert entry.expires_at == MONO0 + 50

    def test_wall_clock_at_receipt_cannot_extend_a_token_beyond_its_lifetime(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        # The wall clock stepped back an hour during the fetch.
        entry = life.fetch_succeeded(token("t", 100), now=MONO0, wall=WALL0 - 3600, jitter_draw=0)
        assert entry.expires_at == MONO0 + 100

    def test_fetch_deadline_is_the_hard_deadline_while_a_token_is_usable(self) -> None:
        life = Lifecycle(ft.RefreshPolicy(max_wait=30))
        assert life.fetch_deadline(MONO0) == MONO0 + 30
        life.next_action(MONO0)
        fetched(life)
        assert life.fetch_deadline(MONO0 + 81) == MONO0 + 95

    def test_fork_reset_forgets_the_parents_fetch(self) -> None:
        life = Lifecycle(ft.RefreshPolicy())
        life.next_action(MONO0)
        life.reset_after_fork()
        assert life.next_action(MONO0).action is Action.FETCH


class LifecycleMachine(RuleBasedStateMachine):
    """Random interleavings of callers, fetch outcomes, invalidations and time."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = ft.RefreshPolicy()
        self.life = Lifecycle(self.policy)
        self.now = MONO0
        self.in_flight = False
        self.serial = 0
        self.not_before = -1.0
        self.retry_at = -1.0
        self.handed_out: ft.Token | None = None

    @rule(dt=st.floats(min_value=0, max_value=40))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule()
    def a_caller_arrives(self) -> None:
        had_usable = self.life.entry is not None and self.life.entry.usable(self.now)
        decision = self.life.next_action(self.now)
        if decision.action in (Action.USE, Action.USE_AND_REFRESH):
            entry = self.life.entry
            assert entry is not None and decision.token is entry.token
            # No token is handed out at or past its hard deadline.
            assert self.now < entry.hard_at
        if decision.action in (Action.FETCH, Action.USE_AND_REFRESH):
            # At most one fetch in flight; none before the backoff has passed (the exponential
            # one while a token serves, the recovery interval for callers who have none).
            assert not self.in_flight
            assert self.now >= (self.retry_at if not had_usable else self.not_before)
            self.in_flight = True
        if decision.action is Action.FETCH:
            assert not had_usable
        if decision.action is Action.WAIT:
            assert self.in_flight and not had_usable
        if decision.action is Action.FAIL:
            assert not had_usable and self.now < self.retry_at

    @precondition(lambda self: self.in_flight)
    @rule(lifetime=st.floats(min_value=1, max_value=3600), draw=st.floats(0, 1))
    def the_fetch_succeeds(self, lifetime: float, draw: float) -> None:
        self.serial += 1
        wall = WALL0 + (self.now - MONO0)
        self.life.fetch_succeeded(
            token(f"t{self.serial}", lifetime, wall), now=self.now, wall=wall, jitter_draw=draw
        )
        self.in_flight = False
        self.not_before = -1.0
        self.retry_at = -1.0

    @precondition(lambda self: self.in_flight)
    @rule(retryable=st.booleans(), draw=st.floats(0, 1))
    def the_fetch_fails(self, retryable: bool, draw: float) -> None:
        usable_before = self.life.entry is not None and self.life.entry.usable(self.now)
        kept = self.life.entry
        error = (
            ft.TokenEndpointUnavailable("down") if retryable else ft.OAuthError("invalid_client")
        )
        failure = self.life.fetch_failed(error, now=self.now, draw=draw)
        assert failure.not_before > self.now
        assert self.now < failure.retry_at <= failure.not_before
        if retryable and not usable_before:
            # Callers with no usable token see the endpoint's return within the recovery pace.
            assert failure.retry_at - self.now <= 1.2 * self.life.policy.recovery_interval + 1e-9
        self.not_before = failure.not_before
        self.retry_at = failure.retry_at
        self.in_flight = False
        # A failed refresh in the stale window keeps serving the still-valid token.
        if usable_before:
            assert self.life.entry is kept
            assert self.life.next_action(self.now).action is Action.USE

    @precondition(lambda self: self.in_flight)
    @rule()
    def the_fetch_is_abandoned(self) -> None:
        self.life.fetch_abandoned()
        self.in_flight = False

    @precondition(lambda self: self.life.entry is not None)
    @rule(same=st.booleans())
    def an_api_answers_401(self, same: bool) -> None:
        entry = self.life.entry
        assert entry is not None
        target = entry.token if same else token("someone-else", 10)
        assert self.life.invalidate(target) is same

    @invariant()
    def fetching_flag_matches_the_model(self) -> None:
        assert self.life.fetching is self.in_flight

    @invariant()
    def schedule_is_ordered(self) -> None:
        entry = self.life.entry
        if entry is not None:
            assert entry.stale_at < entry.hard_at < entry.expires_at


LifecycleMachine.TestCase.settings = settings(
    # At least 1,000 runs of 60 steps; more under the nightly profile (tests/conftest.py).
    max_examples=max(1000, settings().max_examples // 10),
    stateful_step_count=60,
    deadline=None,
)
test_lifecycle_machine = LifecycleMachine.TestCase
