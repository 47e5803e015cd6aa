"""A token or assertion held in a file that the platform rewrites (workload identity).

Kubernetes projected service-account tokens, Azure federated token files and SPIFFE JWT-SVIDs
written by a helper are short-lived credentials in a file that is replaced before it expires. A
client that reads such a file once fails after its first rotation, often a day later; one that
reads it on every call does needless I/O. :class:`TokenFile` re-reads the file only when a
``stat`` of its resolved path says it changed (device, inode, ``mtime_ns``, size), which also
detects the kubelet's atomic swap of the ``..data`` symlink: the resolved path then names
another file.
"""

from __future__ import annotations

import os
from pathlib import Path

from freshtoken._core.errors import ConfigurationError
from freshtoken._core.token import Token, parse_token_response

from .credential import NamedCredential
from .forksafe import fork_safe_lock
from .source import FetchContext

__all__ = ["TokenFile", "decode_credential"]

#: A credential file larger than this is not a token (and is not read whole into memory).
MAX_CREDENTIAL_BYTES = 64 * 1024

_Stamp = tuple[int, int, int, int, str]


def decode_credential(data: bytes, where: str) -> str:
    """The credential text of a file's bytes: UTF-8 (a leading BOM dropped), surrounding
    whitespace stripped, non-empty, one line of printable characters.

    Errors name ``where`` and what was wrong, never the content (it is a secret)."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is an editor's, not the token's
    except UnicodeDecodeError:
        raise ConfigurationError(f"the token file {where} is not UTF-8 text") from None
    text = text.strip()
    if not text:
        raise ConfigurationError(f"the token file {where} is empty")
    if "\n" in text or "\r" in text:
        # a token is one line: two are a file appended to, or two credentials concatenated
        raise ConfigurationError(f"the token file {where} holds more than one line")
    if not text.isprintable():
        raise ConfigurationError(f"the token file {where} holds control characters")
    return text


class TokenFile(NamedCredential):
    """``TokenFile(path)``: a token or assertion in a file, re-read only when the file changed.

    Use it as a token source (``TokenManager(TokenFile(path))``: the file holds an access token;
    a JWT's ``exp`` gives its lifetime), as a grant's ``assertion`` or ``subject_token``, or as
    client authentication (``auth=ClientAssertion(TokenFile(path))``). Calling it returns the
    current content. Its identity in a shared store is its resolved path, so no ``key=`` is
    needed. ``reads`` counts how many times the file was actually read. A missing, unreadable,
    empty, oversized or non-UTF-8 file raises :class:`~freshtoken.ConfigurationError` naming the
    path, never the content.
    """

    __slots__ = ("_lock", "_path", "_stamp", "_value", "reads")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ConfigurationError("TokenFile needs a non-empty path")
        self._path = Path(os.path.abspath(os.fspath(path)))
        self._lock = fork_safe_lock()
        self._stamp: _Stamp | None = None
        self._value: str | None = None
        self.reads = 0

    @property
    def path(self) -> Path:
        """The configured path (absolute; symlinks are resolved at each check, not here)."""
        return self._path

    @property
    def key(self) -> str:
        """``file:<path>``: the path names the credential for shared stores."""
        return f"file:{self._path}"

    def __repr__(self) -> str:
        return f"TokenFile({str(self._path)!r})"

    def _stamp_now(self) -> tuple[Path, _Stamp]:
        try:
            resolved = self._path.resolve(strict=True)
            info = resolved.stat()
        except FileNotFoundError:
            raise ConfigurationError(f"the token file {self._path} does not exist") from None
        except OSError as error:
            raise ConfigurationError(
                f"the token file {self._path} cannot be read ({type(error).__name__})"
            ) from None
        if not resolved.is_file():
            raise ConfigurationError(f"the token file {self._path} is not a regular file")
        stamp = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size, str(resolved))
        return resolved, stamp

    def __call__(self) -> str:
        """The file's current content: the cached text unless a ``stat`` shows a change."""
        resolved, stamp = self._stamp_now()
        with self._lock:
            if stamp == self._stamp and self._value is not None:
                return self._value
            if stamp[3] > MAX_CREDENTIAL_BYTES:
                raise ConfigurationError(
                    f"the token file {self._path} is larger than {MAX_CREDENTIAL_BYTES} bytes"
                )
            try:
                data = resolved.read_bytes()
            except OSError as error:
                raise ConfigurationError(
                    f"the token file {self._path} cannot be read ({type(error).__name__})"
                ) from None
            self.reads += 1
            value = decode_credential(data, str(self._path))
            self._stamp, self._value = stamp, value
            return value

    # -- the TokenSource protocol ------------------------------------------------------------

    def _sends_refresh_token(self, ctx: FetchContext) -> bool:
        return False

    def fetch(self, ctx: FetchContext) -> Token:
        """The access token the file holds now (a JWT's ``exp`` is its expiry)."""
        return ctx.note_skew(parse_token_response({"access_token": self()}, now=ctx.clock.time()))

    async def afetch(self, ctx: FetchContext) -> Token:
        """As :meth:`fetch`: a ``stat`` and, after a change, one read of a small local file,
        done on the loop (a thread hop would cost more than the read)."""
        return self.fetch(ctx)
