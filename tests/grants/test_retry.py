"""The retry decision (pure) and the retrying exchange flow, fed replies by hand."""

from __future__ import annotations

import random
from dataclasses import replace
from email.utils import formatdate
from typing import Any

import httpx
import pytest

import freshtoken as ft
from freshtoken._oauth.http import HttpRequest, HttpResponse, Sleep, TransportFailure
from freshtoken._oauth.retry import decide_retry, exchange, parse_retry_after
from freshtoken.testing import AuthorizationServer, Fault

from .conftest import context

POLICY = ft.RefreshPolicy(backoff_initial=1.0, backoff_max=8.0, max_retry_after=60.0)
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1" * 100, None),
        ("Wed, 21 Oct 2015 07:28:00 -0000", None),
        ("Mon, 20 Nov 9999999999 12:00:00 +0000", None),
    ],
)
def test_retry_after_in_seconds_or_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def decide(
    attempts: int,
    *,
    draw: float = 0.5,
    retry_after: float | None = None,
    deadline: float = 1000.0,
    max_attempts: int = 10,
    urgent: bool = False,
) -> tuple[bool, float]:
    decision = decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        retry_after=retry_after,
        policy=POLICY,
        draw=draw,
        now=0.0,
        deadline=deadline,
        urgent=urgent,
    )
    return decision.retry, decision.delay


@pytest.mark.parametrize("attempts", [1, 2, 5, 30])
def test_an_urgent_fetch_retries_at_the_recovery_interval_however_many_attempts_failed(
    attempts: int,
) -> None:
    """Callers with no usable token wait on an urgent fetch: no exponential growth."""
    assert decide(attempts, draw=0.0, max_attempts=99, urgent=True) == (True, 0.25)
    retry, delay = decide(attempts, draw=1.0, max_attempts=99, urgent=True)
    assert retry and delay == pytest.approx(0.3)


def test_an_urgent_fetch_still_honours_retry_after_and_its_deadline() -> None:
    assert decide(1, retry_after=3.0, urgent=True) == (True, 3.0)
    assert decide(1, draw=0.0, deadline=0.2, urgent=True) == (False, 0.25)
    assert decide(10, draw=0.0, max_attempts=10, urgent=True) == (False, 0.25)


def test_backoff_is_exponential_with_full_jitter() -> None:
    assert [decide(n, draw=0.999_999)[1] for n in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 8.0, 8.0], rel=1e-5
    )
    assert decide(3, draw=0.0) == (True, 0.0)
    assert decide(3, draw=0.25) == (True, 1.0)


def test_retry_after_is_a_floor_for_the_delay() -> None:
    assert decide(1, draw=0.5, retry_after=7.0) == (True, 7.0)
    assert decide(4, draw=0.999, retry_after=1.0)[1] == pytest.approx(7.992)


def test_retry_after_over_the_cap_stops_retrying() -> None:
    assert decide(1, retry_after=61.0) == (False, 61.0)


def test_the_attempt_limit_stops_retrying() -> None:
    assert decide(3, max_attempts=3) == (False, 2.0)
    assert decide(2, max_attempts=3) == (True, 1.0)


def test_no_retry_that_would_start_at_or_past_the_deadline() -> None:
    assert decide(1, draw=0.5, deadline=0.5) == (False, 0.5)
    assert decide(1, draw=0.5, deadline=0.51) == (True, 0.5)


def flow(max_attempts: int = 3, draws: list[float] | None = None):  # type: ignore[no-untyped-def]
    pending = list(draws or [0.5] * 10)
    return exchange(
        lambda: HttpRequest("POST", "https://as.example.com/token?x=secret"),
        clock_time=lambda: NOW,
        clock_monotonic=lambda: 0.0,
        deadline=100.0,
        policy=POLICY,
        max_attempts=max_attempts,
        draw=lambda: pending.pop(0),
    )


def test_the_exchange_sleeps_between_attempts_and_returns_the_final_answer() -> None:
    steps = flow(draws=[0.5, 0.5])
    assert isinstance(next(steps), HttpRequest)
    sleep = steps.send(TransportFailure("connect", "ConnectError"))
    assert sleep == Sleep(0.5)
    assert isinstance(steps.send(None), HttpRequest)
    sleep = steps.send(HttpResponse(429, {"retry-after": "3"}))
    assert sleep == Sleep(3.0)
    assert isinstance(steps.send(None), HttpRequest)
    with pytest.raises(StopIteration) as stop:
        steps.send(HttpResponse(200, {"content-type": "application/json"}, b"{}"))
    assert stop.value.value.attempts == 3
    assert stop.value.value.response.status == 200


def test_an_oversized_body_is_not_retried() -> None:
    steps = flow()
    next(steps)
    with pytest.raises(ft.TokenResponseError, match="size limit"):
        steps.send(TransportFailure("too_large", status=200))


def test_giving_up_names_the_endpoint_without_its_query() -> None:
    steps = flow(max_attempts=1)
    next(steps)
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        steps.send(TransportFailure("timeout", "ReadTimeout"))
    assert "https://as.example.com/token" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert str(caught.value).endswith("gave up after 1 attempt")
    assert "timed out (ReadTimeout)" in str(caught.value)


def test_408_is_retried_and_4xx_is_not() -> None:
    steps = flow()
    next(steps)
    assert isinstance(steps.send(HttpResponse(408)), Sleep)
    next(steps)
    with pytest.raises(StopIteration):
        steps.send(HttpResponse(404))


# -- lost answers to a refresh: once, at once, never in a loop (issue 12 case 5) --------------


def _lost_exchange(*, spends_credential: bool, deadline: float = 60.0) -> Any:
    flow = exchange(
        lambda: HttpRequest("POST", "http://127.0.0.1:9/token", {}, b""),
        clock_time=lambda: 0.0,
        clock_monotonic=lambda: 0.0,
        deadline=deadline,
        policy=ft.RefreshPolicy(),
        max_attempts=3,
        draw=lambda: 0.5,
        spends_credential=spends_credential,
    )
    assert isinstance(next(flow), HttpRequest)
    return flow


def test_a_lost_answer_to_a_spending_request_is_sent_again_at_once_then_given_up() -> None:
    flow = _lost_exchange(spends_credential=True)
    assert isinstance(flow.send(TransportFailure("network")), HttpRequest)  # no Sleep first
    with pytest.raises(ft.TokenEndpointUnavailable, match="not sent again"):
        flow.send(TransportFailure("network"))


def test_a_lost_answer_past_the_deadline_is_not_sent_again() -> None:
    flow = _lost_exchange(spends_credential=True, deadline=0.0)
    with pytest.raises(ft.TokenEndpointUnavailable, match="not sent again"):
        flow.send(TransportFailure("network"))


def test_a_lost_answer_to_an_ordinary_request_backs_off_as_usual() -> None:
    flow = _lost_exchange(spends_credential=False)
    assert isinstance(flow.send(TransportFailure("network")), Sleep)


def _refresh_after_lost_answers(
    lost: int, *, grace: float
) -> tuple[_Snapshot, list[ft.Event], ft.Token | BaseException]:
    """A RefreshTokenGrant's first refresh, the first ``lost`` answers lost after processing."""
    events: list[ft.Event] = []
    with AuthorizationServer(refresh_reuse_grace=grace) as server:
        client = server.add_client(refresh_tokens=True)
        assert client.client_secret is not None
        first = httpx.post(
            server.token_url,
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
            timeout=10,
        ).json()["refresh_token"]
        source: ft.TokenSource = ft.RefreshTokenGrant(
            server.token_url, first, client.client_id, client.client_secret
        )
        server.inject(Fault.lost_response(), times=lost)
        outcome: ft.Token | BaseException
        with ft.TokenManager(source, policy=FAST_RETRY, on_event=events.append) as tokens:
            try:
                outcome = tokens.get()
            except ft.FreshTokenError as error:
                outcome = error
        server.clear_faults()
        snapshot = server.counters
    return _Snapshot(snapshot), events, outcome


class _Snapshot:
    """The server's counters after the run (the server itself is stopped)."""

    def __init__(self, counters: Any) -> None:
        self.refresh_requests = counters.token_requests_by_grant.get("refresh_token", 0)
        self.refresh_tokens_reused = counters.refresh_tokens_reused
        self.families_revoked = counters.families_revoked


FAST_RETRY = ft.RefreshPolicy(backoff_initial=0.001, backoff_max=0.005)


def test_a_lost_refresh_answer_within_a_grace_window_is_recovered_by_one_prompt_retry() -> None:
    server, events, outcome = _refresh_after_lost_answers(1, grace=30.0)
    assert isinstance(outcome, ft.Token)
    assert server.refresh_requests == 2
    assert (server.refresh_tokens_reused, server.families_revoked) == (0, 0)
    assert not [e for e in events if e.kind == "refresh_token_refused"]


def test_a_lost_refresh_answer_without_grace_says_sign_in_again_and_reports_it() -> None:
    server, events, outcome = _refresh_after_lost_answers(1, grace=0.0)
    assert isinstance(outcome, ft.OAuthError)
    assert outcome.error == "invalid_grant"
    assert "sign-in" in str(outcome)
    assert server.refresh_requests == 2  # one retry, not the retry loop
    assert (server.refresh_tokens_reused, server.families_revoked) == (1, 1)
    assert [e.kind for e in events].count("refresh_token_refused") == 1


def test_two_lost_refresh_answers_stop_without_presenting_the_token_a_third_time() -> None:
    server, _, outcome = _refresh_after_lost_answers(2, grace=30.0)
    assert isinstance(outcome, ft.TokenEndpointUnavailable)
    assert server.refresh_requests == 2
    assert (server.refresh_tokens_reused, server.families_revoked) == (0, 0)


def test_a_password_grant_whose_refresh_token_is_refused_signs_in_again_and_reports_it() -> None:
    events: list[ft.Event] = []
    with AuthorizationServer() as server:
        client = server.add_client()
        server.add_user("alice", "alice-password")
        grant = ft.PasswordGrant(
            server.token_url, "alice", "alice-password", client.client_id, client.client_secret
        )
        with ft.TokenManager(grant, policy=FAST_RETRY, on_event=events.append) as tokens:
            first = tokens.get()
            assert first.refresh_token is not None
            server.inject(Fault.lost_response(), times=1)
            tokens.invalidate(first)
            again = tokens.get()
        by_grant = server.token_requests_by_grant
    assert again.access_token != first.access_token
    assert by_grant == {"password": 2, "refresh_token": 2}
    assert [e.kind for e in events].count("refresh_token_refused") == 1


@pytest.mark.parametrize(("urgent", "expected"), [(True, [0.25, 0.25]), (False, [0.5, 1.0])])
def test_a_grant_paces_its_retries_by_whether_callers_wait_on_it(
    urgent: bool, expected: list[float]
) -> None:
    """The manager marks a fetch urgent when no usable token exists (callers wait on it): its
    retries then come at the recovery interval, not after a doubling backoff."""
    grant = ft.ClientCredentials("https://as.example.com/token", "id", "secret")
    ctx = replace(context(grant, policy=ft.RefreshPolicy()), urgent=urgent)
    grant._random = _Draws(1.0 - 1e-12 if not urgent else 0.0)
    steps = grant._flow(ctx)
    assert isinstance(next(steps), HttpRequest)
    sleeps = []
    for _ in range(2):
        step = steps.send(HttpResponse(503))
        assert isinstance(step, Sleep)
        sleeps.append(step.seconds)
        assert isinstance(next(steps), HttpRequest)
    assert sleeps == pytest.approx(expected)
    with pytest.raises(ft.TokenEndpointUnavailable, match="gave up after 3 attempts"):
        steps.send(HttpResponse(503))


class _Draws(random.Random):
    """A random source that always draws ``value`` (for exact delays)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value
