"""Sources and clocks shared by the store tests (no mocks: real stores, real managers)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import freshtoken as ft
from freshtoken._clock import FakeClock


class MintingSource:
    """A token source that mints numbered tokens on its clock's wall time and remembers what it
    was given (the fetch contexts), so tests can count fetches and read ``ctx.current``."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        lifetime: float = 100.0,
        key: str = "minting",
        refresh: bool = False,
        error: BaseException | None = None,
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._key = key
        self.refresh = refresh
        self.error = error
        self.contexts: list[ft.FetchContext] = []
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return self._key

    @property
    def calls(self) -> int:
        return len(self.contexts)

    def fetch(self, ctx: ft.FetchContext) -> ft.Token:
        with self._lock:
            self.contexts.append(ctx)
            number = len(self.contexts)
        if self.error is not None:
            raise self.error
        issued = datetime.fromtimestamp(self.clock.time(), UTC)
        return ft.Token(
            access_token=f"access-{self._key}-{number}-secretpart",
            expires_at=issued + timedelta(seconds=self.lifetime),
            issued_at=issued,
            refresh_token=f"refresh-{self._key}-{number}-secretpart" if self.refresh else None,
        )

    async def afetch(self, ctx: ft.FetchContext) -> ft.Token:
        return self.fetch(ctx)


def token_at(clock: FakeClock, name: str, *, lifetime: float = 100.0, age: float = 0.0) -> ft.Token:
    """A token issued ``age`` seconds ago on ``clock``'s wall time."""
    issued = datetime.fromtimestamp(clock.time() - age, UTC)
    return ft.Token(
        access_token=name,
        expires_at=issued + timedelta(seconds=lifetime),
        issued_at=issued,
    )
