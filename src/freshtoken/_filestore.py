"""FileStore: one host, many processes, one file per token.

Layout of the directory (created ``0700``)::

    v1-<hash>.json   the token record (mode 0600), replaced atomically
    v1-<hash>.lock   the lease: an advisory ``fcntl.flock`` lock on this file

Writes go to a temporary file in the same directory, are fsynced, and then renamed over the record
(``os.replace``), so a reader sees the old record or the new one, never half of one, and a crash
leaves no torn file. The lease is a ``flock``: the kernel releases it when its holder exits or is
killed, so a crashed holder is replaced at once; a live holder's fetch is bounded by the lease
time (its fetch deadline), and a waiter polls with backoff.

A record that others could have written (foreign owner, group/world-writable, a symlink) is not
trusted: it is reported (``store_unavailable``, logged as a warning), ignored, and replaced by the
next save. So is a corrupt or truncated record. Nothing here ever raises into the caller: the
shared fetcher turns :class:`~freshtoken._store.StoreUnavailable` into a local fetch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import tempfile
import threading
from pathlib import Path

from ._codec import TokenCodec
from ._errors import ConfigurationError
from ._shared import DEFAULT_LEASE_TIME, LeaseFetcher, StoreHealth, check_lease_time
from ._store import StoreUnavailable, ThreadedBackend, UnreadableRecord
from ._token import MAX_RESPONSE_BYTES, Token

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

    __slots__ = ("_codec", "_directory", "_held", "_lock", "_ready")

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._codec = TokenCodec()
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # lease owner -> the locked file descriptor
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

    def load(self, key: str) -> Token | None:
        path = self._path(key, ".json")
        data = self._read(path)
        if data is None:
            return None
        try:
            return self._codec.decode(data)
        except UnreadableRecord as problem:
            raise UnreadableRecord(f"the token file {path.name}: {problem}") from None

    def save(self, key: str, token: Token, *, ttl: float | None, version: int) -> bool:
        self._ensure_directory()
        path = self._path(key, ".json")
        try:
            existing = self.load(key)
        except UnreadableRecord:
            existing = None  # untrusted or corrupt: replaced below
        if (
            existing is not None
            and existing.expires_at is not None
            and int(existing.expires_at.timestamp() * 1000) > version
        ):
            return False
        data = self._codec.encode(token)
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
        return True

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
        try:
            existing = self.load(key)
        except UnreadableRecord:
            return False
        if existing is None or existing.fingerprint != fingerprint:
            return False
        try:
            os.unlink(self._path(key, ".json"))
        except FileNotFoundError:
            return False
        except OSError as error:
            raise _unavailable("delete", error) from None
        return True

    # -- the lease -------------------------------------------------------------------------

    def acquire(self, key: str, ttl: float) -> str | None:
        self._ensure_directory()
        path = self._path(key, ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise _unavailable("lock", error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as error:
            os.close(fd)
            raise _unavailable("lock", error) from None
        owner = secrets.token_hex(16)
        with self._lock:
            self._held[owner] = fd
        return owner

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """A flock has no time limit of its own: still held is extended."""
        with self._lock:
            return owner in self._held

    def release(self, key: str, owner: str) -> bool:
        with self._lock:
            fd = self._held.pop(owner, None)
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return True


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
