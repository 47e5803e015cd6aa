"""Sources and clocks shared by the store tests (no mocks: real stores, real managers)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx

import freshtoken as ft
from freshtoken._runtime.clock import Clock, FakeClock
from freshtoken._stores.store import StoreBackend
from freshtoken.testing import AuthorizationServer


class MintingSource:
    """A token source that mints numbered tokens on its clock's wall time and remembers what it
    was given (the fetch contexts), so tests can count fetches and read ``ctx.current``."""

    def __init__(
        self,
        clock: Clock,
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


def put(
    backend: StoreBackend,
    key: str,
    token: ft.Token,
    *,
    ttl: float | None = 100.0,
    owner: str | None = None,
) -> int:
    """Save ``token`` as a lease holder does (take the lease unless ``owner`` holds it already,
    save on the loaded generation, release); the new generation."""
    holder = owner if owner is not None else backend.acquire(key, 10.0)
    assert holder is not None, "the lease is taken"
    record = backend.load(key)
    generation = backend.save(
        key, token, ttl=ttl, owner=holder, generation=0 if record is None else record.generation
    )
    if owner is None:
        backend.release(key, holder)
    assert generation is not None, "the save was refused"
    return generation


def stored_token(backend: StoreBackend, key: str) -> ft.Token | None:
    """The token stored under ``key``, or ``None``."""
    record = backend.load(key)
    return None if record is None else record.token


def first_refresh_token(server: AuthorizationServer) -> str:
    """A refresh token of the server's client, obtained outside any manager (the first of a
    rotating family that the hosts of a scenario are all configured with)."""
    client = server.client
    reply = httpx.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, str(client.client_secret)),
        timeout=10,
    )
    refresh_token: str = reply.json()["refresh_token"]
    return refresh_token
