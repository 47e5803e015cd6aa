"""Whether, and after how long, to send a failed token request again. Pure functions.

Retries inside one fetch cover what goes away by itself: connection errors, timeouts, 5xx, 408,
429 and ``temporarily_unavailable``. The delay before attempt *n + 1* is drawn with *full jitter*
(AWS architecture blog, "Exponential Backoff and Jitter"): uniformly in ``[0, step)`` with
``step = min(policy.backoff_max, policy.backoff_initial * 2 ** (n - 1))``, so a fleet that failed
together does not come back together. An *urgent* fetch (no usable token: its callers fail or wait
until it succeeds) retries at ``policy.recovery_delay`` instead, so the endpoint's return is
noticed within about ``policy.recovery_interval``. A server's ``Retry-After`` (seconds or an
HTTP-date) is a floor for the delay, honoured up to ``policy.max_retry_after``; asking for longer
ends the fetch.

Retrying stops at the attempt limit, and whenever the next attempt could not start before the
fetch's deadline (the current token's hard deadline, or ``policy.max_wait`` for callers that have
no usable token): the caller then gets :class:`~freshtoken.TokenEndpointUnavailable` with
``retry_after`` at once, instead of a sleep that outlives its need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from freshtoken._core.errors import TokenEndpointUnavailable, TokenResponseError
from freshtoken._core.policy import RefreshPolicy

from .dpop import asks_for_nonce
from .http import HttpRequest, HttpResponse, Reply, Sleep, Step, TransportFailure, safe_url
from .response import describe_body, peek_error_code

if TYPE_CHECKING:
    from .dpop import DPoPKey

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "RETRYABLE_STATUSES",
    "Exchange",
    "RetryDecision",
    "decide_retry",
    "exchange",
    "nonce_retry",
    "parse_retry_after",
    "retryable_status",
]

#: Attempts per fetch (the first request included) unless a grant says otherwise.
DEFAULT_MAX_ATTEMPTS = 3
#: Statuses that mean "not now" rather than "no": sent again after a backoff.
RETRYABLE_STATUSES = frozenset({408, 429})


def retryable_status(status: int) -> bool:
    """5xx, 408 Request Timeout and 429 Too Many Requests."""
    return status >= 500 or status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3), or ``None``.

    ``value`` is a number of seconds or an HTTP-date; ``now`` is the wall-clock time (epoch
    seconds) the date is measured from. A date in the past means 0; anything unreadable, ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.replace(".", "", 1).isdigit():
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; the parser leaves "-0000" naive
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry``: send again after ``delay`` seconds. Otherwise ``delay`` is the hint for
    :attr:`TokenEndpointUnavailable.retry_after` (when trying again could make sense)."""

    retry: bool
    delay: float


def decide_retry(
    *,
    attempts: int,
    max_attempts: int,
    retry_after: float | None,
    policy: RefreshPolicy,
    draw: float,
    now: float,
    deadline: float,
    urgent: bool = False,
) -> RetryDecision:
    """Decide after the ``attempts``-th failed attempt (1-based) at monotonic ``now``.

    ``draw`` is a random number in ``[0, 1)`` chosen by the caller (full jitter). ``urgent``:
    callers have no usable token, so the delay is the policy's recovery delay.
    """
    if urgent:
        delay = policy.recovery_delay(draw)
    else:
        exponent = min(max(attempts, 1) - 1, 60)
        step = min(policy.backoff_max, policy.backoff_initial * (2.0**exponent))
        delay = step * min(max(draw, 0.0), 1.0)
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return RetryDecision(False, retry_after)
        delay = max(delay, retry_after)
    if attempts >= max_attempts or now + delay >= deadline:
        return RetryDecision(False, delay)
    return RetryDecision(True, delay)


def nonce_retry(reply: Reply, *, retried: bool) -> bool:
    """Whether ``reply`` is answered by sending the request again at once, with the nonce the
    server gave: a DPoP nonce demand (RFC 9449 §8), the first one of a request only. It is not a
    failed attempt: the server refused the proof before looking at the request, so the attempt
    count and the backoff do not move. A second demand is the server's error to report."""
    return not retried and isinstance(reply, HttpResponse) and asks_for_nonce(reply)


_FAILURE_TEXT = {
    "connect": "could not connect",
    "timeout": "timed out",
    "network": "the connection broke without a response",
    "error": "the HTTP request failed",
}


@dataclass(frozen=True, slots=True)
class Exchange:
    """The final response of a request that needed no (more) retries, and the wall-clock time at
    which the request that produced it was sent."""

    response: HttpResponse
    sent_at: float
    attempts: int


def _transient(reply: Reply, *, now: float) -> tuple[str, int | None, float | None] | None:
    """(what went wrong, status, Retry-After seconds) when ``reply`` is worth retrying."""
    if isinstance(reply, TransportFailure):
        detail = f" ({reply.detail})" if reply.detail else ""
        return _FAILURE_TEXT.get(reply.kind, "failed") + detail, None, None
    assert isinstance(reply, HttpResponse)
    status = reply.status
    code = peek_error_code(reply)
    if retryable_status(status) or code == "temporarily_unavailable":
        shown = code if code is not None else describe_body(reply)
        retry_after = parse_retry_after(reply.header("retry-after"), now=now)
        return f"HTTP {status} ({shown})", status, retry_after
    return None


def _answer_lost(reply: Reply) -> bool:
    """The request went out and its connection broke without an answer."""
    return isinstance(reply, TransportFailure) and reply.kind == "network"


def exchange(
    build: Callable[[], HttpRequest],
    *,
    clock_time: Callable[[], float],
    clock_monotonic: Callable[[], float],
    deadline: float,
    policy: RefreshPolicy,
    max_attempts: int,
    draw: Callable[[], float],
    what: str = "token endpoint",
    spends_credential: bool = False,
    urgent: bool = False,
    dpop: DPoPKey | None = None,
) -> Generator[Step, Reply, Exchange]:
    """Send the request ``build()`` makes (a fresh one per attempt) until an answer that is not
    transient comes back; sleep between attempts as :func:`decide_retry` says.

    Raises :class:`TokenEndpointUnavailable` when retrying stops on a transient failure, and
    :class:`TokenResponseError` for a body over the size cap. A sans-I/O flow: it yields
    :class:`HttpRequest` / :class:`Sleep` and is sent the replies.

    ``spends_credential``: the request uses up what it sends (a rotating refresh token), so an
    answer lost after the request went out may mean the server has already rotated it. Such a
    request is sent again once, at once, while the server may still honour it within a reuse
    grace window, and never after a second lost answer: looping would only present a spent
    token again and again, which servers punish by revoking the whole token family.

    ``urgent``: callers have no usable token (see :func:`decide_retry`).

    ``dpop``: the request carries a DPoP proof signed with this key. Every response's
    ``DPoP-Nonce`` is kept in it for the next proof (``build`` signs with the newest), and a
    nonce demand is answered as :func:`nonce_retry` says.
    """
    attempts = 0
    lost = 0
    nonce_retried = False
    while True:
        request = build()
        sent_at = clock_time()
        attempts += 1
        reply = yield request
        if dpop is not None and isinstance(reply, HttpResponse):
            dpop._observe(request.url, reply)
            if nonce_retry(reply, retried=nonce_retried):
                nonce_retried = True
                attempts -= 1
                continue
        if isinstance(reply, TransportFailure) and not reply.retryable:
            raise TokenResponseError(
                f"the {what} response is larger than the size limit", status=reply.status
            )
        problem = _transient(reply, now=clock_time())
        if problem is None:
            assert isinstance(reply, HttpResponse)
            return Exchange(reply, sent_at, attempts)
        text, status, retry_after = problem
        if spends_credential and _answer_lost(reply):
            lost += 1
            if lost == 1 and clock_monotonic() < deadline:
                continue  # at once: a grace window is short
            raise TokenEndpointUnavailable(
                f"the {what} {safe_url(request.url)} is unavailable: {text}; the refresh token it "
                "was sent may already be spent, so it is not sent again",
                status=status,
            )
        decision = decide_retry(
            attempts=attempts,
            max_attempts=max_attempts,
            retry_after=retry_after,
            policy=policy,
            draw=draw(),
            now=clock_monotonic(),
            deadline=deadline,
            urgent=urgent,
        )
        if not decision.retry:
            if retry_after is not None and retry_after > policy.max_retry_after:
                why = (
                    f"it asks to wait {retry_after:g} s, over the {policy.max_retry_after:g} s cap"
                )
            elif attempts >= max_attempts:
                why = f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}"
            else:
                why = "no time left to retry before the deadline"
            raise TokenEndpointUnavailable(
                f"the {what} {safe_url(request.url)} is unavailable: {text}; {why}",
                retry_after=decision.delay if retry_after is None else retry_after,
                status=status,
            )
        yield Sleep(decision.delay)
