"""MemoryStore: tokens shared by the managers of one process.

Several :class:`~freshtoken.TokenManager` objects with the same source key (one per library
instance, per thread pool, per request handler...) share one token and one fetch through it. It is
the in-process member of the store family and runs the same lease protocol as FileStore and
RedisStore (:mod:`freshtoken._stores.shared`), which also makes it the reference the others are
tested against.
"""

from __future__ import annotations

import math
import secrets
import time

from freshtoken._core.token import Token
from freshtoken._runtime.forksafe import fork_safe_lock

from .shared import DEFAULT_LEASE_TIME, LeaseFetcher, StoreHealth, check_lease_time
from .store import InlineBackend, Record

__all__ = ["MemoryStore"]


class _MemoryBackend:
    """Records and leases in dictionaries, under one lock; lease times on the monotonic clock."""

    __slots__ = ("_leases", "_lock", "_records")

    def __init__(self) -> None:
        self._lock = fork_safe_lock()
        self._records: dict[str, tuple[Token, int, float]] = {}  # token, generation, expires (mono)
        self._leases: dict[str, tuple[str, float]] = {}  # owner, expires (monotonic)

    def load(self, key: str) -> Record | None:
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return None
            if time.monotonic() >= record[2]:
                del self._records[key]
                return None
            return Record(record[0], record[1])

    def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        now = time.monotonic()
        with self._lock:
            if not self._holds(key, owner, now):
                return None
            record = self._records.get(key)
            if record is not None and record[1] > generation and now < record[2]:
                return None
            expires = math.inf if ttl is None else now + ttl
            self._records[key] = (token, generation + 1, expires)
            return generation + 1

    def _holds(self, key: str, owner: str, now: float) -> bool:
        lease = self._leases.get(key)
        return lease is not None and lease[0] == owner and now < lease[1]

    def delete(self, key: str, fingerprint: str) -> bool:
        with self._lock:
            record = self._records.get(key)
            if record is None or record[0].fingerprint != fingerprint:
                return False
            del self._records[key]
            return True

    def acquire(self, key: str, ttl: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and now < lease[1]:
                return None
            owner = secrets.token_hex(16)
            self._leases[key] = (owner, now + ttl)
            return owner

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if not self._holds(key, owner, now):
                return False
            self._leases[key] = (owner, now + ttl)
            return True

    def release(self, key: str, owner: str) -> bool:
        with self._lock:
            lease = self._leases.get(key)
            if lease is None or lease[0] != owner:
                return False
            del self._leases[key]
            return True


class MemoryStore:
    """Tokens shared by the managers of this process (one token and one fetch per source key).

    ``lease_time``: seconds a manager has to fetch a token before another may take over.
    """

    __slots__ = ("_backend", "_health", "lease_time")

    def __init__(self, *, lease_time: float = DEFAULT_LEASE_TIME) -> None:
        self._backend = _MemoryBackend()
        self._health = StoreHealth()
        self.lease_time = check_lease_time(lease_time)

    def fetcher(self, key: str) -> LeaseFetcher:
        return LeaseFetcher(
            key,
            self._backend,
            InlineBackend(self._backend),
            health=self._health,
            lease_time=self.lease_time,
        )

    def __repr__(self) -> str:
        return "MemoryStore()"
