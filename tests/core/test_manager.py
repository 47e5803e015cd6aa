"""TokenManager behaviour with a fake clock: the lifecycle as callers see it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import freshtoken as ft
from freshtoken.testing import FakeClock

from .conftest import CountingSource

Make = Callable[..., ft.TokenManager]


def collect_events() -> tuple[list[ft.Event], Callable[[ft.Event], None]]:
    events: list[ft.Event] = []
    return events, events.append


class TestSingleCaller:
    def test_first_get_fetches_and_later_gets_reuse_the_token(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        first = tokens.get()
        assert first.access_token == "token-1"
        assert tokens.get() is first
        assert source.calls == 1

    def test_a_stale_token_is_served_while_the_refresh_runs_off_the_callers_path(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        refreshed = threading.Event()
        tokens = make_manager(
            source, on_event=lambda e: refreshed.set() if e.kind == "refreshed" else None
        )
        old = tokens.get()
        source.gate = threading.Event()
        clock.advance(81)  # stale: 19 s left of 100
        assert tokens.get() is old  # returns at once although the fetch is blocked
        assert tokens.get() is old
        source.gate.set()
        assert refreshed.wait(10)
        assert tokens.get().access_token == "token-2"
        assert source.calls == 2

    def test_past_the_hard_deadline_callers_wait_for_the_new_token(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        tokens = make_manager(source)
        tokens.get()
        clock.advance(96)
        assert tokens.get().access_token == "token-2"

    def test_expired_token_is_never_handed_out(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        tokens = make_manager(source)
        tokens.get()
        clock.advance(1000)
        token = tokens.get()
        assert token.expires_at is not None
        assert token.expires_at.timestamp() > clock.time()

    def test_aget_and_get_share_one_state(self, make_manager: Make, source: CountingSource) -> None:
        tokens = make_manager(source)
        token = asyncio.run(tokens.aget())
        assert tokens.get() is token
        assert asyncio.run(tokens.aget()) is token
        assert source.calls == 1

    def test_an_async_callable_works_from_get_and_aget(self, make_manager: Make) -> None:
        calls = 0

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return f"async-{calls}"

        tokens = make_manager(fetch)
        assert tokens.get().access_token == "async-1"
        tokens.invalidate(tokens.get())
        assert asyncio.run(tokens.aget()).access_token == "async-2"

    def test_get_from_inside_a_running_loop_with_an_async_callable(
        self, make_manager: Make
    ) -> None:
        async def fetch() -> str:
            return "from-bridge"

        tokens = make_manager(fetch)

        async def main() -> ft.Token:
            return tokens.get()

        assert asyncio.run(main()).access_token == "from-bridge"

    def test_a_sync_callable_returning_an_awaitable_is_awaited(self, make_manager: Make) -> None:
        async def inner() -> str:
            return "awaited"

        tokens = make_manager(lambda: inner())
        assert tokens.get().access_token == "awaited"
        tokens.invalidate(tokens.get())
        assert asyncio.run(tokens.aget()).access_token == "awaited"

    def test_the_callable_may_return_a_token(self, make_manager: Make) -> None:
        token = ft.Token(access_token="given")
        assert make_manager(lambda: token).get() is token

    def test_prefetch_fetches_now_and_fails_fast(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        tokens.prefetch()
        assert source.calls == 1
        asyncio.run(tokens.aprefetch())
        assert source.calls == 1
        source.fail_with = RuntimeError("down")
        broken = make_manager(source)
        with pytest.raises(ft.TokenRequestError):
            broken.prefetch()

    def test_repr_shows_state_and_fingerprint_but_no_token(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        tokens = make_manager(source)
        assert "empty" in repr(tokens)
        token = tokens.get()
        assert "fresh" in repr(tokens) and token.fingerprint in repr(tokens)
        assert token.access_token not in repr(tokens)
        clock.advance(90)
        assert "stale" in repr(tokens)
        clock.advance(9)
        assert "expired" in repr(tokens)


class TestFailures:
    def test_an_exception_from_the_callable_is_chained_not_swallowed(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        cause = ValueError("secret-detail")
        source.fail_with = cause
        tokens = make_manager(source)
        with pytest.raises(ft.TokenRequestError) as caught:
            tokens.get()
        assert caught.value.__cause__ is cause
        assert "ValueError" in str(caught.value)
        assert "secret-detail" not in str(caught.value)

    def test_freshtoken_errors_keep_their_type(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        source.fail_with = ft.OAuthError("invalid_client", status=401)
        tokens = make_manager(source)
        with pytest.raises(ft.OAuthError) as caught:
            tokens.get()
        assert caught.value.error == "invalid_client"

    def test_the_next_call_retries_after_backoff_not_on_every_call(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        source.fail_with = RuntimeError("down")
        tokens = make_manager(source)
        for _ in range(5):
            with pytest.raises(ft.TokenRequestError):
                tokens.get()
        assert source.calls == 1
        clock.advance(0.5)  # the first backoff is 0.25-0.5 s
        source.fail_with = None
        assert tokens.get().access_token == "token-2"
        assert source.calls == 2

    def test_non_retryable_errors_are_repeated_until_the_cool_down_passes(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        source.fail_with = ft.OAuthError("invalid_client")
        tokens = make_manager(source, policy=ft.RefreshPolicy(error_cooldown=30))
        for _ in range(3):
            with pytest.raises(ft.OAuthError):
                tokens.get()
        clock.advance(29)
        with pytest.raises(ft.OAuthError):
            asyncio.run(tokens.aget())
        assert source.calls == 1
        clock.advance(1)
        with pytest.raises(ft.OAuthError):
            tokens.get()
        assert source.calls == 2

    def test_the_error_reaches_every_waiting_thread_and_nothing_hangs(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        source.gate = threading.Event()
        source.fail_with = ft.TokenEndpointUnavailable("down", retry_after=3)
        tokens = make_manager(source)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                tokens.get()
            except ft.FreshTokenError as error:
                errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        while source.calls == 0:
            threading.Event().wait(0.001)
        source.gate.set()
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()
        assert len(errors) == 8
        assert all(isinstance(e, ft.TokenEndpointUnavailable) for e in errors)
        assert all(e.retry_after == 3 for e in errors)  # type: ignore[attr-defined]
        assert source.calls == 1

    def test_the_error_reaches_every_waiting_task(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        source.fail_with = RuntimeError("down")
        source.latency = 0.02
        tokens = make_manager(source)

        async def main() -> list[BaseException | ft.Token]:
            return await asyncio.gather(*(tokens.aget() for _ in range(20)), return_exceptions=True)

        results = asyncio.run(main())
        assert all(isinstance(r, ft.TokenRequestError) for r in results)
        assert source.calls == 1

    def test_a_failed_refresh_in_the_stale_window_keeps_serving_the_valid_token(
        self, make_manager: Make, source: CountingSource, clock: FakeClock
    ) -> None:
        events, sink = collect_events()
        done = threading.Event()

        def on_event(event: ft.Event) -> None:
            sink(event)
            if event.kind == "served_stale":
                done.set()

        tokens = make_manager(source, on_event=on_event)
        old = tokens.get()
        source.fail_with = RuntimeError("down")
        clock.advance(85)
        assert tokens.get() is old
        assert done.wait(10)
        assert tokens.get() is old  # backing off, still valid
        assert [e.kind for e in events][-2:] == ["failed", "served_stale"]
        clock.advance(11)  # past the hard deadline: callers now see the failure
        with pytest.raises(ft.TokenRequestError):
            tokens.get()

    def test_a_broken_event_sink_never_breaks_the_caller(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        def sink(event: ft.Event) -> None:
            raise RuntimeError("sink bug")

        assert make_manager(source, on_event=sink).get().access_token == "token-1"

    def test_a_token_that_arrives_expired_is_refused(self, make_manager: Make) -> None:
        tokens = make_manager(lambda: {"access_token": "dead", "expires_in": 0})
        with pytest.raises(ft.TokenResponseError, match="already expired"):
            tokens.get()

    def test_a_buggy_source_object_error_is_wrapped(
        self, make_manager: Make, clock: FakeClock
    ) -> None:
        class Broken:
            key = "broken"

            def fetch(self, ctx: ft.FetchContext) -> ft.Token:
                raise KeyError("oops")

            async def afetch(self, ctx: ft.FetchContext) -> ft.Token:
                raise KeyError("oops")

        tokens = make_manager(Broken())
        with pytest.raises(ft.TokenRequestError, match="KeyError") as caught:
            tokens.get()
        assert isinstance(caught.value.__cause__, KeyError)


BAD_VALUES: list[tuple[object, str | None]] = [
    (None, "access_token"),
    ("", "access_token"),
    ({"token": "x"}, "access_token"),
    ({"access_token": "secret-value", "expires_in": "abc"}, "expires_in"),
    ({"access_token": "secret-value", "expires_in": -5}, "expires_in"),
    ({"access_token": "secret-value", "expires_in": 1e30}, "expires_in"),
    ({"access_token": "secret-value", "token_type": 42}, "token_type"),
    (object(), None),
    (12345, None),
]


@pytest.mark.parametrize(("value", "field"), BAD_VALUES)
def test_bad_values_from_a_function_source_raise_token_response_error(
    make_manager: Make, value: object, field: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    tokens = make_manager(lambda: value)
    with pytest.raises(ft.TokenResponseError) as caught:
        tokens.get()
    assert caught.value.field == field
    if field is not None:
        assert field in str(caught.value)
    else:
        assert type(value).__name__ in str(caught.value)
    for text in [str(caught.value), repr(caught.value), *(r.getMessage() for r in caplog.records)]:
        assert "secret-value" not in text


class TestInvalidate:
    def test_compare_and_invalidate_drops_only_the_rejected_token(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        events, sink = collect_events()
        tokens = make_manager(source, on_event=sink)
        first = tokens.get()
        assert tokens.invalidate(first)
        second = tokens.get()
        assert second.access_token == "token-2"
        assert not tokens.invalidate(first)  # a late 401 for the old token changes nothing
        assert tokens.get() is second
        assert [e.kind for e in events] == ["fetched", "invalidated", "fetched"]
        assert events[1].fingerprint == first.fingerprint

    def test_fifty_concurrent_401s_cause_one_refresh(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        rejected = tokens.get()
        barrier = threading.Barrier(50)
        results: list[ft.Token] = []

        def on_401() -> None:
            barrier.wait()
            tokens.invalidate(rejected)
            results.append(tokens.get())

        threads = [threading.Thread(target=on_401) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert source.calls == 2
        assert {t.access_token for t in results} == {"token-2"}


class TestClosing:
    def test_closed_manager_refuses_to_serve(
        self, make_manager: Make, source: CountingSource
    ) -> None:
        tokens = make_manager(source)
        with tokens as same:
            assert same is tokens
            tokens.get()
        tokens.close()
        with pytest.raises(ft.ConfigurationError, match="closed"):
            tokens.get()  # the fast path is closed too: the token is forgotten
        with pytest.raises(ft.ConfigurationError, match="closed"):
            asyncio.run(tokens.aget())

    def test_async_context_manager_closes(self, make_manager: Make, source: CountingSource) -> None:
        tokens = make_manager(source)

        async def main() -> None:
            async with tokens as same:
                assert same is tokens
                await tokens.aget()

        asyncio.run(main())
        with pytest.raises(ft.ConfigurationError):
            tokens.get()

    def test_close_closes_the_sources_clients(self, make_manager: Make) -> None:
        closed: list[str] = []

        class Source:
            key = "closable"

            def fetch(self, ctx: ft.FetchContext) -> ft.Token:
                return ft.Token(access_token="x")

            async def afetch(self, ctx: ft.FetchContext) -> ft.Token:
                return ft.Token(access_token="x")

            def close(self) -> None:
                closed.append("sync")

            async def aclose(self) -> None:
                closed.append("async")

        tokens = make_manager(Source())
        asyncio.run(tokens.aclose())
        tokens.close()
        assert closed == ["sync", "async"]


class TestConstruction:
    def test_non_callable_source_is_a_configuration_error(self) -> None:
        with pytest.raises(ft.ConfigurationError, match="int"):
            ft.TokenManager(42)  # type: ignore[arg-type]

    def test_policy_must_be_a_refresh_policy(self) -> None:
        with pytest.raises(ft.ConfigurationError, match="RefreshPolicy"):
            ft.TokenManager(lambda: "x", policy={"jitter": 0})  # type: ignore[arg-type]

    def test_function_source_key_names_the_callable(self) -> None:
        def get_access_token() -> str:
            return "x"

        source = ft.FunctionSource(get_access_token)
        assert source.key.endswith("get_access_token")
        assert "get_access_token" in repr(source)
        assert ft.FunctionSource(get_access_token, key="custom").key == "custom"
        with pytest.raises(TypeError):
            ft.FunctionSource(42)  # type: ignore[arg-type]

    def test_accessors(self, clock: FakeClock) -> None:
        policy = ft.RefreshPolicy()
        tokens = ft.TokenManager(lambda: "x", policy=policy, clock=clock)
        assert tokens.policy is policy
        assert tokens.clock is clock
        assert isinstance(tokens.source, ft.FunctionSource)


def test_no_token_reaches_the_logs_at_debug(
    make_manager: Make, source: CountingSource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = make_manager(source, on_event=ft.LoggingEvents(level=logging.DEBUG))
    seen: list[Any] = [tokens.get()]
    tokens.invalidate(seen[0])
    seen.append(tokens.get())
    source.fail_with = RuntimeError("token-3")
    clock.advance(99)
    with pytest.raises(ft.TokenRequestError):
        tokens.get()
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage()
        for token in seen:
            assert token.access_token not in text
        assert seen[0].fingerprint in caplog.text
