"""FileStore: one host, many processes, one file per token.

Layout of the directory (created ``0700``)::

    v1-<hash>.json   the token record (mode 0600): its generation on the first line, then the
                     encoded token; replaced atomically, so both change together or not at all
    v1-<hash>.lease  the lease: owner, pid, deadline, and the lowest generation the next record
                     may have (kept when a record is deleted, so generations never repeat)
    v1-<hash>.lock   guards the two files above: an advisory ``fcntl.flock``, held only for the
                     moment of one read or one read-modify-write, never across a token request

Writes go to a temporary file in the same directory, are fsynced, and then renamed over the record
(``os.replace``), so a reader sees the old record or the new one, never half of one, and a crash
leaves no torn file. The lease is a record with a deadline on the host's monotonic clock (shared
by its processes), extended by its holder while its token request runs: a holder that hangs or is
stopped (SIGSTOP) is superseded once its lease runs out, a holder that died (its pid is gone) at
once, and a child forked while its parent holds the lease holds nothing. A save is accepted only
from the lease's current owner (fencing) and advances the generation.

A record that others could have written (foreign owner, group/world-writable, a symlink) is not
trusted: it is reported (``store_unavailable``, logged as a warning), ignored, and replaced by the
next save. So is a corrupt or truncated record. Nothing here ever raises into the caller: the
shared fetcher turns :class:`~freshtoken._stores.store.StoreUnavailable` into a local fetch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from freshtoken._core.errors import ConfigurationError
from freshtoken._core.token import MAX_RESPONSE_BYTES, Token

from .codec import TokenCodec
from .shared import DEFAULT_LEASE_TIME, LeaseFetcher, StoreHealth, check_lease_time
from .store import Record, StoreUnavailable, ThreadedBackend, UnreadableRecord

__all__ = ["FileStore"]

#: A record larger than this is not a token record.
MAX_RECORD_BYTES = 2 * MAX_RESPONSE_BYTES
_UNTRUSTED_MODE = stat.S_IWGRP | stat.S_IWOTH


def _file_stem(key: str) -> str:
    return key.replace(":", "-")


def _unavailable(operation: str, error: OSError) -> StoreUnavailable:
    name = errno.errorcode.get(error.errno or 0, type(error).__name__)
    return StoreUnavailable(f"file store {operation} failed: {name}")


class _FileBackend:
    """The blocking storage operations of a FileStore (see the module docstring)."""

    __slots__ = ("_codec", "_directory", "_ready")

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._codec = TokenCodec()
        self._ready = False

    # -- the directory ---------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        """Create the directory 0700 if missing; refuse one that others could write into."""
        if self._ready:
            return
        directory = self._directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.stat(directory)
        except OSError as error:
            raise _unavailable("mkdir", error) from None
        if info.st_uid != os.geteuid():
            raise StoreUnavailable("the token directory belongs to another user")
        if info.st_mode & _UNTRUSTED_MODE:
            raise StoreUnavailable(
                "the token directory is writable by other users; use a private directory"
            )
        self._ready = True

    def _path(self, key: str, suffix: str) -> Path:
        return self._directory / f"{_file_stem(key)}{suffix}"

    # -- records ---------------------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnreadableRecord(f"the token file {path.name} is a symbolic link") from None
            raise _unavailable("read", error) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableRecord(f"the token file {path.name} is not a regular file")
            if info.st_uid != os.geteuid():
                raise UnreadableRecord(f"the token file {path.name} belongs to another user")
            if info.st_mode & _UNTRUSTED_MODE:
                raise UnreadableRecord(f"the token file {path.name} is writable by other users")
            if info.st_size > MAX_RECORD_BYTES:
                raise UnreadableRecord(f"the token file {path.name} is too large")
            chunks: list[bytes] = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as error:
            raise _unavailable("read", error) from None
        finally:
            os.close(fd)

    def load(self, key: str) -> Record | None:
        path = self._path(key, ".json")
        with self._guard(key, fcntl.LOCK_SH):
            floor = self._lease_state(key).generation
            try:
                data = self._read(path)
            except UnreadableRecord as problem:
                raise UnreadableRecord(str(problem), generation=floor) from None
        if data is None:
            return None
        generation, body = _split_generation(data, floor)
        try:
            return Record(self._codec.decode(body), generation)
        except UnreadableRecord as problem:
            raise UnreadableRecord(
                f"the token file {path.name}: {problem}", generation=generation
            ) from None

    def _generation(self, key: str, floor: int) -> int:
        """The generation of the record of ``key`` (under the guard); ``floor`` without one."""
        try:
            data = self._read(self._path(key, ".json"))
        except UnreadableRecord:
            return floor
        return floor if data is None else _split_generation(data, floor)[0]

    def save(
        self, key: str, token: Token, *, ttl: float | None, owner: str, generation: int
    ) -> int | None:
        self._ensure_directory()
        data = self._codec.encode(token)
        with self._guard(key, fcntl.LOCK_EX):
            state = self._lease_state(key)
            if not state.held_by(owner, time.monotonic()):
                return None
            if self._generation(key, state.generation) > generation:
                return None
            # One atomic write carries the token and its generation: a save lands whole or not
            # at all, so a failed save never leaves a new token under an old generation.
            self._write(self._path(key, ".json"), b"%d\n" % (generation + 1) + data)
        return generation + 1

    def _write(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically and durably (temporary file, fsync, rename)."""
        try:
            fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".tmp-", suffix=".json")
        except OSError as error:
            raise _unavailable("write", error) from None
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise _unavailable("write", error) from None
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make the rename durable (best effort: not every file system allows it)."""
        try:
            fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def delete(self, key: str, fingerprint: str) -> bool:
        with self._guard(key, fcntl.LOCK_EX):
            try:
                data = self._read(self._path(key, ".json"))
                existing = (
                    None if data is None else self._codec.decode(_split_generation(data, 0)[1])
                )
            except UnreadableRecord:
                return False
            if existing is None or existing.fingerprint != fingerprint:
                return False
            # The generation outlives the record (in the lease file), so that the next save
            # still advances it: generations never repeat.
            state = self._lease_state(key)
            floor = self._generation(key, state.generation)
            self._write_lease(key, dataclasses.replace(state, generation=floor))
            try:
                os.unlink(self._path(key, ".json"))
            except FileNotFoundError:
                return False
            except OSError as error:
                raise _unavailable("delete", error) from None
        return True

    # -- the guard and the lease -------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, key: str, mode: int) -> Iterator[None]:
        """Hold the key's flock for one short step. Released explicitly (``LOCK_UN``), so a child
        forked meanwhile, which shares the open file, keeps nothing locked."""
        self._ensure_directory()
        try:
            fd = os.open(
                self._path(key, ".lock"),
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as error:
            raise _unavailable("lock", error) from None
        try:
            fcntl.flock(fd, mode)
        except OSError as error:
            os.close(fd)
            raise _unavailable("lock", error) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _lease_state(self, key: str) -> _Lease:
        """The lease file's content (under the guard); an unreadable one counts as no lease."""
        try:
            data = self._read(self._path(key, ".lease"))
        except UnreadableRecord:
            return _Lease()
        return _Lease() if data is None else _Lease.parse(data)

    def _write_lease(self, key: str, state: _Lease) -> None:
        self._write(self._path(key, ".lease"), state.dump())

    def acquire(self, key: str, ttl: float) -> str | None:
        with self._guard(key, fcntl.LOCK_EX):
            state = self._lease_state(key)
            now = time.monotonic()
            if state.live(now):
                return None
            owner = secrets.token_hex(16)
            self._write_lease(
                key,
                dataclasses.replace(state, owner=owner, pid=os.getpid(), until=now + ttl),
            )
        return owner

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        with self._guard(key, fcntl.LOCK_EX):
            state = self._lease_state(key)
            now = time.monotonic()
            if not state.held_by(owner, now):
                return False
            self._write_lease(key, dataclasses.replace(state, until=now + ttl))
        return True

    def release(self, key: str, owner: str) -> bool:
        with self._guard(key, fcntl.LOCK_EX):
            state = self._lease_state(key)
            if state.owner != owner:
                return False
            self._write_lease(key, dataclasses.replace(state, owner="", pid=0, until=0.0))
        return True


def _split_generation(data: bytes, floor: int) -> tuple[int, bytes]:
    """A token file's generation and encoded token. The file starts with its generation on a
    line of its own; a file written before generations moved into it has ``floor``'s (the lease
    file's). A generation never goes below ``floor``."""
    head, newline, body = data.partition(b"\n")
    if newline and head.isdigit() and len(head) <= 18:
        return max(int(head), floor), body
    return floor, data


@dataclass(frozen=True, slots=True)
class _Lease:
    """The lease file: who holds the lease until when (host monotonic clock), and the floor of
    the record's generation. Parsed strictly; anything odd reads as "no lease, generation 0"."""

    owner: str = ""
    pid: int = 0
    until: float = 0.0
    generation: int = 0

    @classmethod
    def parse(cls, data: bytes) -> _Lease:
        try:
            fields = json.loads(data)
            lease = cls(
                owner=fields["owner"],
                pid=fields["pid"],
                until=fields["until"],
                generation=fields["generation"],
            )
        except (ValueError, TypeError, KeyError):
            return cls()
        ok = (
            isinstance(lease.owner, str)
            and type(lease.pid) is int
            and type(lease.until) in (int, float)
            and type(lease.generation) is int
            and lease.generation >= 0
        )
        return lease if ok else cls()

    def dump(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    def live(self, now: float) -> bool:
        """Held by someone: before its deadline, and its process still exists."""
        return bool(self.owner) and now < self.until and _process_exists(self.pid)

    def held_by(self, owner: str, now: float) -> bool:
        return self.owner == owner and self.live(now)


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process: the directory is ours
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            state = stat_file.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):  # pragma: no cover - no /proc: trust kill()
        return True
    return state != b"Z"


class FileStore:
    """Tokens shared by the processes of one host, one file per token in ``directory``.

    ``directory`` is created with mode 0700 when missing; it must not be writable by other users
    (a token file that others could have written is never trusted). ``lease_time`` bounds how long
    a lease holder's fetch may take.
    """

    __slots__ = ("_backend", "_health", "directory", "lease_time")

    def __init__(
        self, directory: str | os.PathLike[str], *, lease_time: float = DEFAULT_LEASE_TIME
    ):
        if not isinstance(directory, str | os.PathLike):
            raise ConfigurationError("FileStore needs a directory path (str or os.PathLike)")
        self.directory = Path(directory)
        self.lease_time = check_lease_time(lease_time)
        self._backend = _FileBackend(self.directory)
        self._health = StoreHealth()

    def fetcher(self, key: str) -> LeaseFetcher:
        return LeaseFetcher(
            key,
            self._backend,
            ThreadedBackend(self._backend),
            health=self._health,
            lease_time=self.lease_time,
        )

    def __repr__(self) -> str:
        return f"FileStore({str(self.directory)!r})"
