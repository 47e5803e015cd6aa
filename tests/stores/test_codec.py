"""Token records: a versioned JSON format, optional Fernet encryption, strict reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

import freshtoken as ft
from freshtoken._stores.codec import FORMAT, TokenCodec
from freshtoken._stores.store import UnreadableRecord

ISSUED = datetime(2030, 1, 1, tzinfo=UTC)


def full_token() -> ft.Token:
    return ft.Token(
        access_token="access-secretpart",
        token_type="DPoP",
        expires_at=ISSUED + timedelta(seconds=3600),
        issued_at=ISSUED,
        scope="read write",
        refresh_token="refresh-secretpart",
        id_token="id-secretpart",
        extra={"refresh_in": 1800, "not_json": object()},
    )


def test_a_token_survives_the_round_trip_with_every_field_and_a_format_version() -> None:
    codec = TokenCodec()
    data = codec.encode(full_token())
    assert json.loads(data)["format"] == FORMAT
    token = codec.decode(data)
    assert token == full_token().replace(extra={"refresh_in": 1800})
    assert token.refresh_token == "refresh-secretpart"
    assert token.lifetime == 3600


def test_an_encrypted_record_holds_nothing_readable() -> None:
    codec = TokenCodec(Fernet.generate_key())
    data = codec.encode(full_token())
    assert b"secretpart" not in data
    assert b"access_token" not in data
    assert codec.decode(data).access_token == "access-secretpart"
    assert codec.encrypted
    assert not TokenCodec().encrypted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issued_at": "yesterday"}, "issued_at"),
        ({"issued_at": 1e300}, "out of range"),
        ({"expires_at": True}, "expires_at"),
        ({"scope": 5}, "scope"),
        ({"extra": []}, "extra"),
        ({"access_token": "has space"}, "invalid token"),
        ({"format": 2}, "unknown format"),
    ],
)
def test_a_record_with_a_wrong_field_is_unreadable_without_quoting_it(
    change: dict[str, object], message: str
) -> None:
    record = json.loads(TokenCodec().encode(full_token()))
    record.update(change)
    with pytest.raises(UnreadableRecord, match=message) as caught:
        TokenCodec().decode(json.dumps(record).encode())
    assert "secretpart" not in str(caught.value)


def test_undecryptable_and_non_json_records_are_unreadable() -> None:
    with pytest.raises(UnreadableRecord, match="decrypted"):
        TokenCodec(Fernet.generate_key()).decode(b"plain")
    with pytest.raises(UnreadableRecord, match="JSON"):
        TokenCodec().decode(b"\xff\xfe")
