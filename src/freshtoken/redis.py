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
The holder extends its lease while its request runs, and a crashed holder's lease expires after
``lease_time``: the next waiter takes it over.

Push wake-ups (``pubsub=True``, the default): the save and release scripts PUBLISH on
``<record key>:wake`` (with ``redis.pcall``, so a user without pub/sub permission still saves).
Each process subscribes once per client (a daemon thread, :class:`_Listener`) and wakes its
waiting threads and tasks; a waiter subscribes before its last look at the record, so no save is
missed, and looks again anyway after 200 ms (a lost message costs no more than polling did).
When the server refuses SUBSCRIBE (an ACL without ``@pubsub``) or the subscription is lost,
waiters poll with backoff (10 ms to 200 ms), as with ``pubsub=False``.

Redis Cluster (``redis.cluster.RedisCluster``, ``redis.asyncio.cluster.RedisCluster``): the keys
carry the storage key as a hash tag, ``freshtoken:{v1:<h>}`` and ``freshtoken:{v1:<h>}:lease``,
so that each script touches one slot; the wake-ups use plain PUBLISH, which the cluster bus
delivers to subscribers on every node, and the listener subscribes on any one node.

With ``encryption_key`` (a Fernet key, or a list of them for rotation: the first encrypts, all
decrypt) the record, refresh token included, is encrypted before it leaves the process.

When Redis is down or times out, managers fetch locally, report ``store_unavailable`` (an event
and a warning log), and try Redis again after a backoff. Give the client a ``socket_timeout`` so
that a hung server is noticed quickly.

This is the only freshtoken module that imports ``redis`` (``pip install 'freshtoken[redis]'``).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    import redis.exceptions
except ImportError as missing:  # pragma: no cover - exercised only without redis-py installed
    raise ImportError(
        "freshtoken.redis needs redis-py: pip install 'freshtoken[redis]'"
    ) from missing

from ._core.errors import ConfigurationError
from ._core.events import logger
from ._core.token import Token
from ._runtime.forksafe import fork_safe_lock
from ._stores.codec import EncryptionKey, TokenCodec
from ._stores.shared import (
    DEFAULT_LEASE_TIME,
    RECHECK,
    LeaseFetcher,
    StoreHealth,
    check_lease_time,
)
from ._stores.store import Record, StoreUnavailable, ThreadedBackend, UnreadableRecord
from ._stores.wakeups import Hub, Wakeups

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
if ARGV[6] ~= '' then redis.pcall('PUBLISH', ARGV[6], ARGV[2] + 1) end
return ARGV[2] + 1
"""

_DELETE = """
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'f') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local deleted = redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then redis.pcall('PUBLISH', ARGV[2], '0') end
  return deleted
end
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

    __slots__ = ("_codec", "_prefix", "_publish", "_tagged")

    def __init__(self, prefix: str, codec: TokenCodec, *, tagged: bool, publish: bool) -> None:
        self._prefix = prefix
        self._codec = codec
        self._tagged = tagged
        self._publish = publish

    def _record(self, key: str) -> str:
        # On a cluster every key of a script must lie in one hash slot: the storage key is the
        # hash tag. A standalone server keeps the untagged layout, which processes of earlier
        # versions share during a rolling upgrade (a second layout would mean a second lease).
        return self._prefix + ("{" + key + "}" if self._tagged else key)

    def _lease(self, key: str) -> str:
        return self._record(key) + ":lease"

    def channel(self, key: str) -> str:
        """The pub/sub channel on which a save or a release of ``key`` is announced."""
        return self._record(key) + ":wake"

    def _announce(self, key: str) -> str:
        return self.channel(key) if self._publish else ""

    def load(self, key: str) -> _Steps[Record | None]:
        try:
            reply = yield _Call((self._record(key), "d", "g"), method="hmget")
        except redis.exceptions.ResponseError as error:
            if not str(error).startswith("WRONGTYPE"):
                raise  # a cluster in failover, a redirect: the store is unavailable
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
        args = (owner, generation, token.fingerprint, payload, lifetime, self._announce(key))
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
        reply = yield _Call((owner, self._announce(key)), "release", (self._lease(key),))
        return bool(reply)


def _new_owner() -> str:
    import secrets

    return secrets.token_hex(16)


#: What a client raises when Redis cannot be used (a cluster client's own errors, such as no
#: reachable node or an uncovered slot, are not RedisErrors).
_FAILURES = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"redis failed: {type(error).__name__}")


class _SyncRedis:
    """The blocking backend: runs each operation's calls with a ``redis.Redis`` client."""

    __slots__ = ("_client", "_commands", "_scripts")

    def __init__(
        self, client: redis.Redis | redis.cluster.RedisCluster, commands: _Commands
    ) -> None:
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
            except _FAILURES as error:
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

    def __init__(
        self, client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, commands: _Commands
    ) -> None:
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
            except _FAILURES as error:
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


#: How long the listener waits for traffic before it pings the server: a connection that answers
#: neither a message nor the ping within twice this is taken for dead (a half-open TCP link).
_HEARTBEAT = 30.0
#: After the server refuses SUBSCRIBE (an ACL without pub/sub, a proxy without it), waiters poll
#: and the listener asks again after this long.
_REFUSED_RETRY = 60.0


class _Listener:
    """The one pub/sub connection of a process for one Redis client: a daemon thread that
    subscribes to the channels its hub asks for and reports confirmations, messages, a lost
    connection or a refusal to the hub (see :mod:`freshtoken._stores.wakeups`).

    A thread serves blocking and async clients alike, whatever event loops the waiters run on:
    it completes their futures on their own loops. It holds only a weak reference to the Redis
    client and ends when the client is gone. A forked child starts a thread of its own (the
    parent's connection is left untouched: the child never reads from or closes it).
    """

    def __init__(self, client: Any, connect: Callable[[Any], redis.Redis]) -> None:
        self._owner = weakref.ref(client)
        self._connect = connect
        self.hub = Hub(self.subscribe)
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._lock = fork_safe_lock()
        self._wanted: set[str] = set()
        self._pubsub: Any = None
        self._thread: threading.Thread | None = None
        self._failures = 0  # connections lost in a row (the reconnection backoff)

    def subscribe(self, channel: str) -> None:
        """Ask for ``channel`` (called by the hub, from a waiter; never blocks on Redis for
        longer than one command, never raises)."""
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._wanted.add(channel)
            pubsub = self._pubsub
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="freshtoken-redis-wakeups", daemon=True
                )
                self._thread.start()
                return  # the thread subscribes to every wanted channel when it connects
        if pubsub is not None:
            with contextlib.suppress(Exception):  # the thread notices a broken connection
                pubsub.subscribe(channel)

    def _run(self) -> None:
        self._failures = 0
        while True:
            owner = self._owner()
            if owner is None:
                return
            pubsub: Any = None
            try:
                pubsub = self._connect(owner).pubsub()
                del owner
                with self._lock:
                    self._pubsub = pubsub
                    channels = sorted(self._wanted)
                pubsub.subscribe(*channels)
                self._listen(pubsub)
                return  # the client is gone
            except redis.exceptions.ResponseError as error:  # NOPERM, unknown command
                logger.debug("redis pub/sub refused (%s): waiters poll", type(error).__name__)
                self.hub.refused(_REFUSED_RETRY)
                pause = _REFUSED_RETRY
            except Exception as error:
                logger.debug("redis pub/sub lost (%s): waiters poll", type(error).__name__)
                self.hub.lost()
                self._failures += 1
                pause = min(30.0, 0.5 * 2.0 ** min(self._failures - 1, 10))
            finally:
                with self._lock:
                    if self._pubsub is pubsub:
                        self._pubsub = None
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            owner = None
            time.sleep(pause)

    def _listen(self, pubsub: Any) -> None:
        pinged = False
        confirmed: set[str] = set()
        while self._owner() is not None:
            message = pubsub.get_message(timeout=_HEARTBEAT)
            if message is None:
                if pinged:
                    raise redis.exceptions.ConnectionError("no answer to a ping")
                pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message.get("type")
            if kind not in ("subscribe", "message"):
                continue
            channel = message.get("channel")
            if isinstance(channel, bytes):
                channel = channel.decode()
            if kind == "message":
                self.hub.notified(channel)
                continue
            if channel in confirmed:
                # redis-py reconnected and subscribed again on its own: messages of the gap
                # may be lost, so every waiter looks at the store once more.
                self.hub.lost()
            confirmed.add(channel)
            self._failures = 0
            self.hub.confirmed(channel)


_LISTENERS: weakref.WeakKeyDictionary[Any, _Listener] = weakref.WeakKeyDictionary()
_LISTENERS_LOCK = fork_safe_lock()


def _listener(client: Any) -> _Listener:
    """The listener of ``client`` (one per client and process, shared by all its stores)."""
    with _LISTENERS_LOCK:
        listener = _LISTENERS.get(client)
        if listener is None:
            listener = _LISTENERS[client] = _Listener(client, _pubsub_connector(client))
        return listener


def _pubsub_connector(client: Any) -> Callable[[Any], redis.Redis]:
    """How the listener of ``client`` gets a blocking client to subscribe with.

    On a cluster a plain PUBLISH reaches the subscribers of every node (the cluster bus carries
    it), so the listener subscribes on any one node, and on another after a failure."""
    if isinstance(client, redis.Redis):
        return lambda owner: owner
    if isinstance(client, redis.asyncio.Redis):
        twins: list[redis.Redis] = []

        def twin(owner: Any) -> redis.Redis:
            if not twins:
                twins.append(_sync_twin(owner))
            return twins[0]

        return twin

    def any_node(owner: Any) -> redis.Redis:
        host, port = random.choice(_cluster_nodes(owner))
        return redis.Redis(host=host, port=port, **_cluster_settings(owner))

    return any_node


def _cluster_nodes(client: Any) -> list[tuple[str, int]]:
    """The nodes a cluster client knows of (its startup nodes before it first connected)."""
    manager = client.nodes_manager
    nodes = list(manager.nodes_cache.values()) or list(manager.startup_nodes.values())
    return [(node.host, int(node.port)) for node in nodes]


def _cluster_settings(client: Any) -> dict[str, Any]:
    """The connection settings (password, TLS, timeouts) of a cluster client's node connections."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        kwargs = client.connection_kwargs
    else:
        kwargs = client.nodes_manager.connection_kwargs
    settings = {
        name: value
        for name, value in kwargs.items()
        if name in _TWIN_SETTINGS and name not in ("host", "port", "path", "db")
    }
    if "SSL" in getattr(kwargs.get("connection_class"), "__name__", ""):
        settings["ssl"] = True
    return settings


def _sync_cluster_twin(client: redis.asyncio.cluster.RedisCluster) -> redis.cluster.RedisCluster:
    """A blocking cluster client for the cluster an async cluster client talks to."""
    node: Any = redis.cluster.ClusterNode
    nodes = [node(host, port) for host, port in _cluster_nodes(client)]
    return redis.cluster.RedisCluster(startup_nodes=nodes, **_cluster_settings(client))


class RedisStore:
    """Tokens shared by a fleet through Redis (see the module docstring).

    ``client``          a ``redis.Redis``, ``redis.asyncio.Redis``, ``redis.cluster.RedisCluster``
                        or ``redis.asyncio.cluster.RedisCluster``; the store serves both
                        ``get()`` and ``aget()`` with either (a blocking client is used from a
                        worker thread in ``aget()``; a blocking twin of an async client, with the
                        same connection settings, serves ``get()``)
    ``prefix``          prepended to every Redis key
    ``encryption_key``  a Fernet key (str or bytes) or a list of them; Redis then holds no
                        readable token
    ``lease_time``      seconds a lease holder has to fetch and save before another takes over
    ``pubsub``          announce saves and releases on a channel per token, and wake waiters by
                        them (one subscription per client and process); ``False``: waiters poll
    """

    __slots__ = (
        "_async_backend",
        "_backend",
        "_client",
        "_health",
        "_recheck",
        "_wakeups",
        "lease_time",
        "prefix",
    )

    def __init__(
        self,
        client: redis.Redis
        | redis.asyncio.Redis
        | redis.cluster.RedisCluster
        | redis.asyncio.cluster.RedisCluster,
        *,
        prefix: str = "freshtoken:",
        encryption_key: EncryptionKey | None = None,
        lease_time: float = DEFAULT_LEASE_TIME,
        pubsub: bool = True,
    ) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("RedisStore prefix must be a string")
        if not isinstance(pubsub, bool):
            raise ConfigurationError("RedisStore pubsub must be True or False")
        cluster = isinstance(
            client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster
        )
        commands = _Commands(prefix, TokenCodec(encryption_key), tagged=cluster, publish=pubsub)
        self.prefix = prefix
        self.lease_time = check_lease_time(lease_time)
        self._client = client
        self._health = StoreHealth()
        #: The safety-net interval of a waiter woken by pub/sub (tests make it long).
        self._recheck = RECHECK
        if isinstance(client, redis.asyncio.Redis):
            self._async_backend: Any = _AsyncRedis(client, commands)
            self._backend: Any = _LazyTwin(lambda: _SyncRedis(_sync_twin(client), commands))
        elif isinstance(client, redis.asyncio.cluster.RedisCluster):
            self._async_backend = _AsyncRedis(client, commands)
            self._backend = _LazyTwin(lambda: _SyncRedis(_sync_cluster_twin(client), commands))
        elif isinstance(client, redis.Redis | redis.cluster.RedisCluster):
            self._backend = _SyncRedis(client, commands)
            self._async_backend = ThreadedBackend(self._backend)
        else:
            raise ConfigurationError(
                "RedisStore needs a redis.Redis, redis.asyncio.Redis, redis.cluster.RedisCluster"
                f" or redis.asyncio.cluster.RedisCluster client, got {type(client).__name__}"
            )
        self._wakeups: Wakeups | None = None
        if pubsub:
            self._wakeups = Wakeups(_listener(client).hub, commands.channel, recheck=RECHECK)

    def fetcher(self, key: str) -> LeaseFetcher:
        wakeups = self._wakeups
        if wakeups is not None and wakeups.recheck != self._recheck:
            wakeups = self._wakeups = Wakeups(
                wakeups.hub, wakeups.channel_of, recheck=self._recheck
            )
        return LeaseFetcher(
            key,
            self._backend,
            self._async_backend,
            health=self._health,
            lease_time=self.lease_time,
            wakeups=wakeups,
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
