"""Reading token-endpoint responses strictly: JSON only, and nothing secret in any message.

RFC 6749 §5.1 says token responses are ``application/json``. Whatever else arrives (an HTML page
from a proxy, a truncated body, JSON with duplicate keys or ``NaN``) is refused here with a
:class:`~freshtoken.TokenResponseError` that carries the status and, for non-JSON bodies only, a
short excerpt from which anything that looks like a token has been cut out.
"""

from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime

from freshtoken._core.errors import TokenResponseError
from freshtoken._core.redact import INVALID_ERROR_CODE, safe_server_text

from .http import HttpResponse

__all__ = [
    "EXCERPT_LENGTH",
    "describe_body",
    "excerpt",
    "is_json",
    "media_type",
    "peek_error_code",
    "read_json",
    "server_date",
]

#: At most this many characters of a non-JSON body appear in an error message.
EXCERPT_LENGTH = 80
_BOM = b"\xef\xbb\xbf"
#: The shape of every registered OAuth error code (``temporarily_unavailable``).
_ERROR_WORD = re.compile(r"[a-z][a-z_]{0,63}")
_SECRET_WORDS = re.compile(r"(?i)(token|secret|password|assertion|bearer|key)")


class _DuplicateKey(ValueError):
    pass


def media_type(response: HttpResponse) -> str:
    """The media type of the response, lower-cased, without parameters (``""`` if none)."""
    value = response.header("content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def is_json(response: HttpResponse) -> bool:
    """``application/json`` (parameters such as ``; charset=utf-8`` tolerated) or ``+json``."""
    kind = media_type(response)
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def excerpt(body: bytes) -> str:
    """The first printable characters of a non-JSON body, with token-like runs cut out.

    A body that looks like JSON gives no excerpt at all: it may be a token response served with
    the wrong content type.
    """
    text = body[:4096].decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")):
        return ""
    if _SECRET_WORDS.search(text):
        text = _SECRET_WORDS.split(text, maxsplit=1)[0] + "…"
    return safe_server_text(text, EXCERPT_LENGTH)


def describe_body(response: HttpResponse) -> str:
    """``text/html: 'Bad Gateway …'``: the content type and a safe excerpt, for messages."""
    kind = media_type(response) or "no content type"
    shown = excerpt(response.body)
    return f"{kind}: {shown!r}" if shown else kind


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def read_json(response: HttpResponse, *, what: str = "token response") -> object:
    """The body decoded as strict JSON (RFC 8259): UTF-8 without BOM, no duplicate keys, no
    ``NaN``/``Infinity``, bounded nesting. Anything else raises TokenResponseError."""
    status = response.status
    body = response.body
    if body.startswith(_BOM):
        raise TokenResponseError(f"the {what} starts with a byte-order mark", status=status)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenResponseError(f"the {what} is not valid UTF-8", status=status) from None
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey as duplicate:
        name = str(duplicate)
        shown = name if len(name) <= 40 and name.isprintable() else "<long key>"
        raise TokenResponseError(
            f"the {what} repeats the key {shown!r}", field=shown, status=status
        ) from None
    except RecursionError:
        raise TokenResponseError(f"the {what} is nested too deeply", status=status) from None
    except ValueError:
        raise TokenResponseError(f"the {what} is not valid JSON", status=status) from None


def peek_error_code(response: HttpResponse) -> str | None:
    """The ``error`` member of a JSON body (never raises): ``None`` if there is none, and
    :data:`INVALID_ERROR_CODE` unless it reads as a registered code does (``snake_case`` letters),
    since the request's secrets are not at hand here to cut out of anything else."""
    if not is_json(response):
        return None
    try:
        data = read_json(response)
    except TokenResponseError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, str):
        return None
    return error if _ERROR_WORD.fullmatch(error) else INVALID_ERROR_CODE


def server_date(response: HttpResponse) -> float | None:
    """The ``Date`` header as epoch seconds (``None`` if absent or unreadable)."""
    value = response.header("date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()
