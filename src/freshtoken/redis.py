"""RedisStore: a fleet of processes on many hosts shares one token and one fetch through Redis.

    import redis
    from freshtoken.redis import RedisStore

    store = RedisStore(redis.Redis(host="cache", socket_timeout=1), encryption_key=key)
    tokens = ft.TokenManager(source, store=store)

What Redis holds, for a token whose source key hashes to ``<h>`` (``prefix`` defaults to
``freshtoken:``)::

    freshtoken:v1:<h>         a hash: g (generation), f (fingerprint), d (the record),
                              expiring (PX) when nothing in it can be used any more: kept
                              while its refresh token may be valid
    freshtoken:v1:<h>:lease   the lease: SET NX PX with a random owner token

Saving, releasing and extending are Lua scripts, so each is one atomic step on the server: a save
is accepted only from the lease's current owner and never replaces a record of a later generation
(a holder that lost its lease while it was frozen cannot overwrite its successor's token), it
advances the generation by one, and only the lease's owner can release or extend the lease.
Waiters poll the record with backoff; the holder extends its lease while its request runs, and a
crashed holder's lease expires after ``lease_time``: the next waiter takes it over.

With ``encryption_key`` (a Fernet key, or a list of them for rotation: the first encrypts, all
decrypt) the record, refresh token included, is encrypted before it leaves the process.

When Redis is down or times out, managers fetch locally, report ``store_unavailable`` (an event
and a warning log), and try Redis again after a backoff. Give the client a ``socket_timeout`` so
that a hung server is noticed quickly.

This is the only freshtoken module that imports ``redis`` (``pip install 'freshtoken[redis]'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import redis
    import redis.asyncio
    import redis.exceptions
except ImportError as missing:  # pragma: no cover - exercised only without redis-py installed
    raise ImportError(
        "freshtoken.redis needs redis-py: pip install 'freshtoken[redis]'"
    ) from missing

from ._core.errors import ConfigurationError
from ._core.token import Token
from ._stores.codec import EncryptionKey, TokenCodec
from ._stores.shared import DEFAULT_LEASE_TIME, LeaseFetcher, StoreHealth, check_lease_time
from ._stores.store import Record, StoreUnavailable, ThreadedBackend, UnreadableRecord

__all__ = ["RedisStore"]

T = TypeVar("T")

_SAVE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local generation = 0
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  generation = tonumber(redis.call('HGET', KEYS[1], 'g') or '0') or 0
end
if generation > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'g', ARGV[2] + 1, 'f', ARGV[3], 'd', ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return ARGV[2] + 1
"""

_DELETE = """
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'f') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_SCRIPTS = {"save": _SAVE, "delete": _DELETE, "release": _RELEASE, "extend": _EXTEND}


@dataclass(frozen=True, slots=True)
class _Call:
    """One request to Redis: a registered script (``script`` set) or a client method."""

    args: tuple[Any, ...]
    script: str | None = None
    keys: tuple[str, ...] = ()
    method: str = ""
    options: tuple[tuple[str, Any], ...] = ()


_Steps = Generator[_Call, Any, T]


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a client made with decode_responses=True
        return value.encode()
    raise UnreadableRecord("the record in Redis is not a string")


class _Commands:
    """What each store operation sends to Redis and what the replies mean, written once as
    generators (one yielded :class:`_Call` each) for the sync and the async executor."""

    __slots__ = ("_codec", "_prefix")

    def __init__(self, prefix: str, codec: TokenCodec) -> None:
        self._prefix = prefix
        self._codec = codec

    def _record(self, key: str) -> str:
        return self._prefix + key

    def _lease(self, key: str) -> str:
        return self._prefix + key + ":lease"

    def load(self, key: str) -> _Steps[Record | None]:
        try:
            reply = yield _Call((self._record(key), "d", "g"), method="hmget")
        except redis.exceptions.ResponseError:
            raise UnreadableRecord("the Redis key of this token holds another type") from None
        data, generation = (_as_bytes(part) for part in reply)
        if data is None:
            return None
        if generation is None or not generation.isdigit():
            raise UnreadableRecord("the record in Redis has no generation")
        try:
            return Record(self._codec.decode(data), int(generation))
        except UnreadableRecord as problem:
            raise UnreadableRecord(str(problem), generation=int(generation)) from None

    def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> _Steps[int | None]:
        payload = self._codec.encode(token)
        lifetime = 0 if ttl is None else _milliseconds(ttl)  # 0: kept until replaced
        args = (owner, generation, token.fingerprint, payload, lifetime)
        reply = yield _Call(args, "save", (self._record(key), self._lease(key)))
        return int(reply) or None

    def delete(self, key: str, fingerprint: str) -> _Steps[bool]:
        reply = yield _Call((fingerprint,), "delete", (self._record(key),))
        return bool(reply)

    def acquire(self, key: str, ttl: float, owner: str) -> _Steps[str | None]:
        reply = yield _Call(
            (self._lease(key), owner),
            method="set",
            options=(("nx", True), ("px", _milliseconds(ttl))),
        )
        return owner if reply else None

    def extend(self, key: str, owner: str, ttl: float) -> _Steps[bool]:
        reply = yield _Call((owner, _milliseconds(ttl)), "extend", (self._lease(key),))
        return bool(reply)

    def release(self, key: str, owner: str) -> _Steps[bool]:
        reply = yield _Call((owner,), "release", (self._lease(key),))
        return bool(reply)


def _new_owner() -> str:
    import secrets

    return secrets.token_hex(16)


def _unavailable(error: redis.exceptions.RedisError) -> StoreUnavailable:
    return StoreUnavailable(f"redis failed: {type(error).__name__}")


class _SyncRedis:
    """The blocking backend: runs each operation's calls with a ``redis.Redis`` client."""

    __slots__ = ("_client", "_commands", "_scripts")

    def __init__(self, client: redis.Redis, commands: _Commands) -> None:
        self._client = client
        self._commands = commands
        self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}

    def _run(self, steps: _Steps[T]) -> T:
        reply: Any = None
        failure: BaseException | None = None
        while True:
            try:
                call = steps.send(reply) if failure is None else steps.throw(failure)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, failure = None, None
            try:
                if call.script is None:
                    reply = getattr(self._client, call.method)(*call.args, **dict(call.options))
                else:
                    reply = self._scripts[call.script](keys=call.keys, args=call.args)
            except redis.exceptions.ResponseError as error:
                failure = error  # the operation decides what a refused command means
            except redis.exceptions.RedisError as error:
                raise _unavailable(error) from None

    def load(self, key: str) -> Record | None:
        return self._run(self._commands.load(key))

    def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        return self._run(
            self._commands.save(key, token, ttl=ttl, owner=owner, generation=generation)
        )

    def delete(self, key: str, fingerprint: str) -> bool:
        return self._run(self._commands.delete(key, fingerprint))

    def acquire(self, key: str, ttl: float) -> str | None:
        return self._run(self._commands.acquire(key, ttl, _new_owner()))

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        return self._run(self._commands.extend(key, owner, ttl))

    def release(self, key: str, owner: str) -> bool:
        return self._run(self._commands.release(key, owner))


class _AsyncRedis:
    """The async backend: runs each operation's calls with a ``redis.asyncio.Redis`` client."""

    __slots__ = ("_client", "_commands", "_scripts")

    def __init__(self, client: redis.asyncio.Redis, commands: _Commands) -> None:
        self._client = client
        self._commands = commands
        self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}

    async def _run(self, steps: _Steps[T]) -> T:
        reply: Any = None
        failure: BaseException | None = None
        while True:
            try:
                call = steps.send(reply) if failure is None else steps.throw(failure)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, failure = None, None
            try:
                if call.script is None:
                    method = getattr(self._client, call.method)
                    pending: Awaitable[Any] = method(*call.args, **dict(call.options))
                else:
                    pending = self._scripts[call.script](keys=call.keys, args=call.args)
                reply = await pending
            except redis.exceptions.ResponseError as error:
                failure = error
            except redis.exceptions.RedisError as error:
                raise _unavailable(error) from None

    async def load(self, key: str) -> Record | None:
        return await self._run(self._commands.load(key))

    async def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        return await self._run(
            self._commands.save(key, token, ttl=ttl, owner=owner, generation=generation)
        )

    async def delete(self, key: str, fingerprint: str) -> bool:
        return await self._run(self._commands.delete(key, fingerprint))

    async def acquire(self, key: str, ttl: float) -> str | None:
        return await self._run(self._commands.acquire(key, ttl, _new_owner()))

    async def extend(self, key: str, owner: str, ttl: float) -> bool:
        return await self._run(self._commands.extend(key, owner, ttl))

    async def release(self, key: str, owner: str) -> bool:
        return await self._run(self._commands.release(key, owner))


#: Connection settings carried over from an async client to the blocking client derived from it.
_TWIN_SETTINGS = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "client_name",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
)


def _sync_twin(client: redis.asyncio.Redis) -> redis.Redis:
    """A blocking client for the server an async client talks to (for ``get()`` in threads: an
    async client's connections belong to its event loop and cannot be used from another)."""
    pool = client.connection_pool
    settings = {
        name: value for name, value in pool.connection_kwargs.items() if name in _TWIN_SETTINGS
    }
    kind = pool.connection_class.__name__
    if "path" in settings:
        settings["unix_socket_path"] = settings.pop("path")
    elif "SSL" in kind:
        settings["ssl"] = True
    return redis.Redis(**settings)


class RedisStore:
    """Tokens shared by a fleet through Redis (see the module docstring).

    ``client``          a ``redis.Redis`` or a ``redis.asyncio.Redis``; the store serves both
                        ``get()`` and ``aget()`` with either (a blocking client is used from a
                        worker thread in ``aget()``; a blocking twin of an async client, with the
                        same connection settings, serves ``get()``)
    ``prefix``          prepended to every Redis key
    ``encryption_key``  a Fernet key (str or bytes) or a list of them; Redis then holds no
                        readable token
    ``lease_time``      seconds a lease holder has to fetch and save before another takes over
    """

    __slots__ = ("_async_backend", "_backend", "_client", "_health", "lease_time", "prefix")

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        *,
        prefix: str = "freshtoken:",
        encryption_key: EncryptionKey | None = None,
        lease_time: float = DEFAULT_LEASE_TIME,
    ) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("RedisStore prefix must be a string")
        commands = _Commands(prefix, TokenCodec(encryption_key))
        self.prefix = prefix
        self.lease_time = check_lease_time(lease_time)
        self._client = client
        self._health = StoreHealth()
        if isinstance(client, redis.asyncio.Redis):
            self._async_backend: Any = _AsyncRedis(client, commands)
            self._backend: Any = _LazyTwin(lambda: _SyncRedis(_sync_twin(client), commands))
        elif isinstance(client, redis.Redis):
            self._backend = _SyncRedis(client, commands)
            self._async_backend = ThreadedBackend(self._backend)
        else:
            raise ConfigurationError(
                f"RedisStore needs a redis.Redis or redis.asyncio.Redis client, got "
                f"{type(client).__name__}"
            )

    def fetcher(self, key: str) -> LeaseFetcher:
        return LeaseFetcher(
            key,
            self._backend,
            self._async_backend,
            health=self._health,
            lease_time=self.lease_time,
        )

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"


class _LazyTwin:
    """Creates the blocking twin of an async client on first use (most async programs never
    call ``get()``, and need no second connection pool)."""

    __slots__ = ("_backend", "_make")

    def __init__(self, make: Callable[[], _SyncRedis]) -> None:
        self._make = make
        self._backend: _SyncRedis | None = None

    def __getattr__(self, name: str) -> Any:
        if self._backend is None:
            self._backend = self._make()
        return getattr(self._backend, name)
