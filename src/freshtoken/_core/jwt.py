"""Reading a JWT's claims without verifying it.

freshtoken only needs a token's timing (``exp``, ``iat``) to know when to refresh it; it never
trusts claims for authorization, so no signature check is needed here. Anything that is not a
well-formed compact JWS (three base64url segments, a JSON object header with ``alg``, a JSON object
payload) is simply an opaque token: :func:`unverified_claims` returns ``None`` for it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["b64url_decode", "unverified_claims", "unverified_header"]

#: A JWT larger than this is not decoded (it is still usable as an opaque token).
_MAX_JWT_LENGTH = 64 * 1024


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url, strictly (no characters outside the alphabet)."""
    padded = segment + "=" * (-len(segment) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _json_object(segment: str) -> dict[str, Any] | None:
    try:
        raw = b64url_decode(segment)
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _segments(token: str) -> list[str] | None:
    if len(token) > _MAX_JWT_LENGTH or token.count(".") != 2:
        return None
    parts = token.split(".")
    if not parts[0] or not parts[1] or not parts[0].isascii() or not parts[1].isascii():
        return None
    return parts


def unverified_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a compact JWT, or ``None`` when ``token`` is not one."""
    parts = _segments(token)
    if parts is None:
        return None
    header = _json_object(parts[0])
    if header is None or not isinstance(header.get("alg"), str):
        return None
    return header


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a compact JWT, read without verification, or ``None`` for an opaque token."""
    parts = _segments(token)
    if parts is None or unverified_header(token) is None:
        return None
    return _json_object(parts[1])
