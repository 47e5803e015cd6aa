"""The retry decision (pure) and the retrying exchange flow, fed replies by hand."""

from __future__ import annotations

from email.utils import formatdate

import pytest

import freshtoken as ft
from freshtoken._http import HttpRequest, HttpResponse, Sleep, TransportFailure
from freshtoken._retry import decide_retry, exchange, parse_retry_after

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
) -> tuple[bool, float]:
    decision = decide_retry(
        attempts=attempts,
        max_attempts=max_attempts,
        retry_after=retry_after,
        policy=POLICY,
        draw=draw,
        now=0.0,
        deadline=deadline,
    )
    return decision.retry, decision.delay


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
