"""Fixtures of the grants suite: a real authorization server and managers with tiny backoffs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

import freshtoken as ft
from freshtoken._oauth.discovery import clear_cache
from freshtoken.testing import AuthorizationServer, FakeClock

T = TypeVar("T")

#: Retries in tests back off for milliseconds, not seconds (the rules are the same).
FAST = ft.RefreshPolicy(backoff_initial=0.001, backoff_max=0.005, max_retry_after=0.5)


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_discovery_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh event loop (the suite has no async test plugin)."""

    async def main() -> T:
        return await make()

    return asyncio.run(main())


def get_sync(
    source: ft.TokenSource, *, policy: ft.RefreshPolicy = FAST, clock: ft.Clock | None = None
) -> ft.Token:
    """One token through a manager's get(), the manager closed afterwards."""
    with ft.TokenManager(source, policy=policy, clock=clock) as tokens:
        return tokens.get()


def get_async(
    source: ft.TokenSource, *, policy: ft.RefreshPolicy = FAST, clock: ft.Clock | None = None
) -> ft.Token:
    """One token through a manager's aget() on a fresh loop, the manager closed afterwards."""

    async def main() -> ft.Token:
        async with ft.TokenManager(source, policy=policy, clock=clock) as tokens:
            return await tokens.aget()

    return run(main)


Getter = Callable[..., ft.Token]


GETTERS = pytest.mark.parametrize("get", [get_sync, get_async], ids=["get", "aget"])


def context(
    source: ft.TokenSource,
    *,
    clock: ft.Clock | None = None,
    current: ft.Token | None = None,
    deadline: float | None = None,
    events: list[ft.Event] | None = None,
    policy: ft.RefreshPolicy = FAST,
) -> ft.FetchContext:
    """A fetch context as the manager would build it, for driving a source directly."""
    clock = clock if clock is not None else FakeClock()
    sink = events if events is not None else []
    return ft.FetchContext(
        clock=clock,
        policy=policy,
        deadline=clock.monotonic() + 30.0 if deadline is None else deadline,
        current=current,
        emit=sink.append,
        key=source.key,
    )
