"""The store interface: where a token lives between calls, processes and hosts.

A manager without a store keeps its token in memory and single-flights within the process. With a
store, the manager's fetch goes through the store's :class:`SharedFetcher`, which decides across
processes (FileStore) or hosts (RedisStore) who fetches: it loads the stored token, and only if
none is usable takes the store's lease, loads again (someone else may have fetched meanwhile), and
then fetches, saves and releases. Waiters in other processes use the stored token when it lands.

Two layers:

* :class:`Store` is what :class:`~freshtoken.TokenManager` sees: ``fetcher(key)``.
* :class:`StoreBackend` / :class:`AsyncStoreBackend` are the few storage operations a store
  provides (load, compare-and-save, compare-and-delete, and an owned lease with a time limit).
  The lease protocol that turns them into "one fetch at a time across the fleet" is written once,
  in :mod:`freshtoken._stores.shared`, and every built-in store reuses it.

Backends speak in *storage keys* (:func:`storage_key`): a versioned SHA-256 of the source key, so
that no secret can be recovered from a key and the record format can change under a new prefix.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from freshtoken._core.token import Token

if TYPE_CHECKING:
    from freshtoken._runtime.source import FetchContext, TokenSource

__all__ = [
    "KEY_VERSION",
    "AsyncStoreBackend",
    "InlineBackend",
    "Record",
    "SharedFetcher",
    "Store",
    "StoreBackend",
    "StoreUnavailable",
    "ThreadedBackend",
    "UnreadableRecord",
    "storage_key",
]

#: The prefix of every storage key; bump it when the record format changes incompatibly.
KEY_VERSION = "v1"


def storage_key(source_key: str) -> str:
    """The key a token is stored under: ``v1:`` and the SHA-256 of the source's key.

    The source key already names no secret; hashing it once more bounds its length, makes it safe
    as a file name, and keeps a store's key space uniform.
    """
    digest = hashlib.sha256(source_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_VERSION}:{digest[:40]}"


@dataclass(frozen=True, slots=True)
class Record:
    """A stored token and its generation.

    The generation orders the records of one key without any clock: the store advances it by one
    on every accepted save, atomically with the write (in the Redis script, under the file lock).
    Hosts' wall clocks may disagree by seconds; which refresh token is newer never depends on them.
    """

    token: Token
    generation: int


class StoreUnavailable(Exception):
    """The store could not be reached or used (Redis down, a timeout, a disk error).

    Its message names the operation and the error's type only, never a token or a credential.
    The shared fetcher catches it, reports ``store_unavailable``, and fetches locally.
    """


class UnreadableRecord(Exception):
    """A stored record exists but cannot be trusted (corrupt, truncated, foreign, writable by
    others, undecryptable). It is reported, treated as absent, and replaced by the next save.

    ``generation`` is the record's generation when the store could still read it (the lease
    holder saves its replacement on it), else 0.
    """

    def __init__(self, message: str, *, generation: int = 0) -> None:
        super().__init__(message)
        self.generation = generation


@runtime_checkable
class SharedFetcher(Protocol):
    """Obtains a token for one key through a store: from the store, or fetched under its lease."""

    def fetch(self, ctx: FetchContext, source: TokenSource) -> Token:
        """A usable token, from the store or from ``source.fetch`` (saved before it is returned)."""
        ...

    async def afetch(self, ctx: FetchContext, source: TokenSource) -> Token:
        """Like :meth:`fetch`, on the running event loop."""
        ...


@runtime_checkable
class Store(Protocol):
    """A place tokens are shared through. ``fetcher(key)`` gives the fetcher for one token."""

    def fetcher(self, key: str) -> SharedFetcher:
        """The shared fetcher for the token named ``key``."""
        ...


@runtime_checkable
class StoreBackend(Protocol):
    """The storage operations of a store, blocking the calling thread.

    Every method raises :class:`StoreUnavailable` when the store cannot be used; :meth:`load`
    raises :class:`UnreadableRecord` for a record that exists but cannot be trusted.
    """

    def load(self, key: str) -> Record | None:
        """The stored record, or ``None``."""
        ...

    def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        """Store ``token`` for ``ttl`` seconds (``None``: until replaced), fenced: only while
        ``owner`` holds the lease of ``key`` and the stored generation is not past
        ``generation`` (the one the holder loaded; 0 for none). The stored generation becomes
        ``generation + 1``, which is returned; ``None`` when the save was refused (a holder whose
        lease ran out never overwrites its successor's token)."""
        ...

    def delete(self, key: str, fingerprint: str) -> bool:
        """Compare-and-delete: remove the record only if it still holds the token with
        ``fingerprint``. True if it was removed."""
        ...

    def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lease of ``key`` for ``ttl`` seconds; the owner token, or ``None`` if another
        owner holds it."""
        ...

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend the lease to ``ttl`` seconds from now, only if ``owner`` still holds it."""
        ...

    def release(self, key: str, owner: str) -> bool:
        """Release the lease, only if ``owner`` still holds it."""
        ...


@runtime_checkable
class AsyncStoreBackend(Protocol):
    """The operations of :class:`StoreBackend`, for the running event loop."""

    async def load(self, key: str) -> Record | None: ...

    async def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None: ...

    async def delete(self, key: str, fingerprint: str) -> bool: ...

    async def acquire(self, key: str, ttl: float) -> str | None: ...

    async def extend(self, key: str, owner: str, ttl: float) -> bool: ...

    async def release(self, key: str, owner: str) -> bool: ...


class ThreadedBackend:
    """An :class:`AsyncStoreBackend` that runs a blocking backend's operations in a worker thread
    (files and locks, or a synchronous Redis client used from ``aget()``)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: StoreBackend) -> None:
        self._backend = backend

    async def load(self, key: str) -> Record | None:
        return await asyncio.to_thread(self._backend.load, key)

    async def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        save = functools.partial(
            self._backend.save, key, token, ttl=ttl, owner=owner, generation=generation
        )
        return await asyncio.to_thread(save)

    async def delete(self, key: str, fingerprint: str) -> bool:
        return await asyncio.to_thread(self._backend.delete, key, fingerprint)

    async def acquire(self, key: str, ttl: float) -> str | None:
        return await asyncio.to_thread(self._backend.acquire, key, ttl)

    async def extend(self, key: str, owner: str, ttl: float) -> bool:
        return await asyncio.to_thread(self._backend.extend, key, owner, ttl)

    async def release(self, key: str, owner: str) -> bool:
        return await asyncio.to_thread(self._backend.release, key, owner)


class InlineBackend:
    """An :class:`AsyncStoreBackend` over a backend whose operations never block (in memory)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: StoreBackend) -> None:
        self._backend = backend

    async def load(self, key: str) -> Record | None:
        return self._backend.load(key)

    async def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        return self._backend.save(key, token, ttl=ttl, owner=owner, generation=generation)

    async def delete(self, key: str, fingerprint: str) -> bool:
        return self._backend.delete(key, fingerprint)

    async def acquire(self, key: str, ttl: float) -> str | None:
        return self._backend.acquire(key, ttl)

    async def extend(self, key: str, owner: str, ttl: float) -> bool:
        return self._backend.extend(key, owner, ttl)

    async def release(self, key: str, owner: str) -> bool:
        return self._backend.release(key, owner)
