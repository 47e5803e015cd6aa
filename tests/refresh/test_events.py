"""Lifecycle events: each kind, its fingerprint and timings, the logging adapter, and no secret
in any log line, event or repr."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields

import pytest

import freshtoken as ft
from freshtoken._runtime.source import FetchContext, TokenSource
from freshtoken.testing import FakeClock

from .conftest import FlakySource, kinds, settle

NO_JITTER = ft.RefreshPolicy(jitter=0)
SECRET = "s3cr3t-access-token-value"
REFRESH_SECRET = "s3cr3t-refresh-token-value"


def test_fetched_carries_the_fingerprint_duration_and_remaining_life(
    clock: FakeClock, events: list[ft.Event], make_manager: Callable[..., ft.TokenManager]
) -> None:
    def slow_fetch() -> dict[str, object]:
        clock.advance(0.3)  # the token endpoint takes 300 ms
        return {"access_token": SECRET, "expires_in": 60}

    tokens = make_manager(slow_fetch)
    token = tokens.get()
    (event,) = events
    assert event.kind == "fetched"
    assert event.key == tokens.source.key
    assert event.fingerprint == token.fingerprint
    assert event.duration == pytest.approx(0.3)
    assert event.remaining == pytest.approx(60)  # a callable's response is read on return
    assert event.error is None and event.skew is None


def test_refreshed_replaces_a_usable_token_and_fetched_an_unusable_one(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    tokens.get()
    clock.advance(50)
    tokens.get()  # stale: refreshed in the background
    settle()
    clock.advance(60)
    tokens.get()  # expired: fetched while the caller waits
    assert kinds(events) == ["fetched", "refreshed", "fetched"]


def test_failed_and_served_stale_tell_the_error_type_and_the_remaining_life(
    clock: FakeClock,
    source: FlakySource,
    events: list[ft.Event],
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(source, policy=NO_JITTER)
    token = tokens.get()
    clock.advance(50)
    source.failing = RuntimeError(f"connection refused, by the way the secret is {SECRET}")
    tokens.get()
    settle()
    failed, stale = events[-2:]
    assert failed.kind == "failed"
    assert failed.fingerprint is None
    assert failed.duration == 0.0
    assert failed.error == "TokenRequestError: the token callable " + (
        f"{tokens.source.key.removeprefix('function:')} raised RuntimeError"
    )
    assert stale.kind == "served_stale"
    assert stale.fingerprint == token.fingerprint
    assert stale.remaining == pytest.approx(10)


def test_invalidated_names_the_dropped_token(
    source: FlakySource, events: list[ft.Event], make_manager: Callable[..., ft.TokenManager]
) -> None:
    tokens = make_manager(source)
    token = tokens.get()
    assert tokens.invalidate(token)
    assert not tokens.invalidate(token)  # compare-and-invalidate: once
    assert kinds(events) == ["fetched", "invalidated"]
    assert events[-1].fingerprint == token.fingerprint


class DownStore:
    """A store whose backend is down: it says so and lets the manager fetch locally."""

    def fetcher(self, key: str) -> DownStore:
        return self

    def fetch(self, ctx: FetchContext, source: TokenSource) -> ft.Token:
        ctx.emit(ft.Event("store_unavailable", ctx.key, error="ConnectionError"))
        return source.fetch(ctx)

    async def afetch(self, ctx: FetchContext, source: TokenSource) -> ft.Token:
        raise NotImplementedError


def test_store_unavailable_reaches_on_event_and_the_token_is_fetched_locally(
    source: FlakySource, events: list[ft.Event], make_manager: Callable[..., ft.TokenManager]
) -> None:
    tokens = make_manager(ft.FunctionSource(source, key="flaky"), store=DownStore())
    assert tokens.get().access_token == "token-1"
    assert kinds(events) == ["store_unavailable", "fetched"]


def test_a_sink_that_raises_is_logged_and_never_breaks_the_caller(
    source: FlakySource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: ft.Event) -> None:
        raise ValueError(f"sink bug {SECRET}")

    with ft.TokenManager(source, clock=clock, on_event=broken) as tokens:
        assert tokens.get().access_token == "token-1"
    assert "on_event sink raised ValueError" in caplog.text
    assert SECRET not in caplog.text


class TestLoggingEvents:
    def test_routine_events_at_the_chosen_level_failures_at_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        target = logging.getLogger("myapp.tokens")
        sink = ft.LoggingEvents(target, level=logging.INFO)
        caplog.set_level(logging.DEBUG, logger="myapp.tokens")
        sink(ft.Event("fetched", "api", fingerprint="abcd1234", duration=0.25, remaining=3599))
        for kind in ("failed", "served_stale", "store_unavailable", "skew_detected"):
            sink(ft.Event(kind, "api", skew=3600.0 if kind == "skew_detected" else None))
        records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
        assert records[0] == (
            "myapp.tokens",
            logging.INFO,
            "freshtoken fetched key=api fingerprint=abcd1234 duration=0.250s remaining=3599.0s",
        )
        assert [level for _, level, _ in records[1:]] == [logging.WARNING] * 4
        assert records[-1][2] == "freshtoken skew_detected key=api skew=+3600.0s"

    def test_defaults_to_the_freshtoken_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="freshtoken")
        ft.LoggingEvents()(ft.Event("invalidated", "api", fingerprint="abcd1234"))
        assert [(r.name, r.levelno) for r in caplog.records] == [("freshtoken", logging.INFO)]


def test_no_secret_reaches_logs_events_or_reprs_on_any_path(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Fetch, refresh, failure, stale serving, skew and invalidation, logged at DEBUG."""
    import jwt

    calls = 0
    failing = False

    def fn() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if failing:
            raise RuntimeError(f"refused {SECRET} {REFRESH_SECRET}")
        access = jwt.encode(
            {"iat": int(clock.time()) + 3600, "exp": int(clock.time()) + 3660, "n": calls},
            "k" * 32,
            algorithm="HS256",
        )
        secrets.append(access)
        return {"access_token": access, "refresh_token": REFRESH_SECRET}

    secrets: list[str] = [SECRET, REFRESH_SECRET]
    caplog.set_level(logging.DEBUG)
    collected: list[ft.Event] = []

    def sink(event: ft.Event) -> None:
        collected.append(event)
        ft.LoggingEvents(level=logging.DEBUG)(event)

    with ft.TokenManager(fn, clock=clock, on_event=sink, policy=NO_JITTER) as tokens:
        token = tokens.get()
        clock.advance(50)
        failing = True
        tokens.get()
        settle()
        failing = False
        clock.advance(1)
        tokens.get()
        settle()
        tokens.invalidate(tokens.get())
        shown = [repr(tokens), str(tokens), repr(token), str(token)]
    assert {"fetched", "skew_detected", "failed", "served_stale", "refreshed", "invalidated"} <= (
        set(kinds(collected))
    )
    texts = [caplog.text, *shown]
    texts += [str(getattr(e, f.name)) for e in collected for f in fields(e)]
    for secret in secrets:
        for text in texts:
            assert secret not in text
