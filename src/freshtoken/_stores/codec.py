"""Token records: a token as bytes for a store, and back, optionally encrypted with Fernet.

The record is a JSON object with a ``format`` field, so that a later version can tell an old
record from a new one (and ignore what it cannot read) instead of misreading it. Every way a record
can be wrong (truncated, not JSON, a field of the wrong type, an unknown format, a key that cannot
decrypt it) raises :class:`~freshtoken._stores.store.UnreadableRecord` with a message that never
quotes the record: a store then treats it as absent, and the next save replaces it.

With an encryption key the whole record (access, refresh and id tokens included) is a Fernet token
(AES-128-CBC with HMAC-SHA256, from ``cryptography``): the store holds nothing readable. A list of
keys supports rotation, as :class:`cryptography.fernet.MultiFernet` does: the first key encrypts,
every key decrypts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from freshtoken._core.errors import ConfigurationError, FreshTokenError
from freshtoken._core.token import Token

from .store import UnreadableRecord

__all__ = ["FORMAT", "EncryptionKey", "TokenCodec"]

#: The record format written by this version.
FORMAT = 1

EncryptionKey = str | bytes | Sequence[str | bytes]


def _json_safe(extra: Mapping[str, object]) -> dict[str, Any]:
    """The members of ``extra`` that survive a JSON round trip (others are dropped, not failed:
    a source may put objects there that only make sense in its own process)."""
    kept: dict[str, Any] = {}
    for name, value in extra.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        kept[str(name)] = value
    return kept


def _timestamp(value: object, name: str, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnreadableRecord(f"the record's {name} is not a timestamp")
    try:
        if not math.isfinite(value):  # OverflowError for an int too large for a float
            raise UnreadableRecord(f"the record's {name} is not a timestamp")
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise UnreadableRecord(f"the record's {name} is out of range") from None


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise UnreadableRecord(f"the record's {name} is not a string")
    return value


class TokenCodec:
    """Turns tokens into records and back; encrypts them when given a key."""

    __slots__ = ("_fernet",)

    def __init__(self, encryption_key: EncryptionKey | None = None) -> None:
        self._fernet: Any = None if encryption_key is None else _fernet(encryption_key)

    @property
    def encrypted(self) -> bool:
        return self._fernet is not None

    def encode(self, token: Token) -> bytes:
        """The record of ``token`` (encrypted when a key was given)."""
        record = {
            "format": FORMAT,
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": None if token.expires_at is None else token.expires_at.timestamp(),
            "issued_at": token.issued_at.timestamp(),
            "scope": token.scope,
            "refresh_token": token.refresh_token,
            "id_token": token.id_token,
            "extra": _json_safe(token.extra),
        }
        data = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        if self._fernet is not None:
            data = self._fernet.encrypt(data)
        return bytes(data)

    def decode(self, data: bytes) -> Token:
        """The token in record ``data``; :class:`UnreadableRecord` if it cannot be trusted."""
        if self._fernet is not None:
            from cryptography.fernet import InvalidToken

            try:
                data = self._fernet.decrypt(data)
            except (InvalidToken, TypeError, ValueError):
                raise UnreadableRecord(
                    "the record cannot be decrypted with the configured key(s)"
                ) from None
        try:
            record = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UnreadableRecord("the record is not valid JSON (truncated or corrupt)") from None
        if not isinstance(record, dict):
            raise UnreadableRecord("the record is not a JSON object")
        if record.get("format") != FORMAT:
            raise UnreadableRecord("the record has an unknown format version")
        access_token = record.get("access_token")
        token_type = record.get("token_type")
        if not isinstance(access_token, str) or not isinstance(token_type, str):
            raise UnreadableRecord("the record has no access_token or token_type")
        extra = record.get("extra", {})
        if not isinstance(extra, dict):
            raise UnreadableRecord("the record's extra is not an object")
        issued_at = _timestamp(record.get("issued_at"), "issued_at")
        assert issued_at is not None
        try:
            return Token(
                access_token=access_token,
                token_type=token_type,
                expires_at=_timestamp(record.get("expires_at"), "expires_at", optional=True),
                issued_at=issued_at,
                scope=_optional_str(record, "scope"),
                refresh_token=_optional_str(record, "refresh_token"),
                id_token=_optional_str(record, "id_token"),
                extra=extra,
            )
        except FreshTokenError:
            raise UnreadableRecord("the record holds an invalid token") from None


def _fernet(encryption_key: EncryptionKey) -> Any:
    """A MultiFernet over the given key(s); ConfigurationError naming what is wrong."""
    from cryptography.fernet import Fernet, MultiFernet

    keys: list[object]
    if isinstance(encryption_key, str | bytes):
        keys = [encryption_key]
    elif isinstance(encryption_key, Sequence):
        keys = list(encryption_key)
    else:
        raise ConfigurationError(
            "encryption_key must be a Fernet key (str or bytes) or a list of them"
        )
    if not keys:
        raise ConfigurationError("encryption_key is an empty list; give at least one Fernet key")
    fernets = []
    for position, key in enumerate(keys):
        if not isinstance(key, str | bytes):
            raise ConfigurationError(
                f"encryption_key[{position}] must be a str or bytes Fernet key"
            )
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"encryption_key[{position}] is not a Fernet key (32 url-safe base64-encoded "
                "bytes, as Fernet.generate_key() makes)"
            ) from None
    return MultiFernet(fernets)
