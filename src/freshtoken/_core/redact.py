"""Server-supplied text made safe to show: token-like runs cut out, length bounded.

Authorization servers put free text in places freshtoken repeats (``error_description``, the
excerpt of an HTML error page). Some servers echo what they were sent, a refresh token or an
assertion included, so every such text passes through :func:`safe_server_text` before it reaches
an exception message, a log record or the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "INVALID_ERROR_CODE",
    "MIN_ECHO_LENGTH",
    "safe_error_code",
    "safe_error_uri",
    "safe_server_text",
    "scrub_sent",
]

#: Runs of token-ish characters (JWTs, opaque tokens, base64 secrets, hex keys).
_TOKENISH = re.compile(r"[A-Za-z0-9\-_.~+/=]{16,}")
#: A run in one case with no digit (``client_credentials``, ``INVALID_REQUEST``) reads as a word;
#: a random secret of 16 or more characters almost never does.
_WORDISH = re.compile(r"[a-z\-_.]+|[A-Z\-_.]+")


def _cut(match: re.Match[str]) -> str:
    run = match.group()
    return run if _WORDISH.fullmatch(run) else "<redacted>"


#: RFC 6749 §5.2: ``error`` is %x20-21 / %x23-5B / %x5D-7E (printable ASCII but ``"`` and ``\\``).
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
#: RFC 6749 §5.2: ``error_uri`` is %x21 / %x23-5B / %x5D-7E (no space either).
_ERROR_URI = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,300}")
#: What an ``error`` outside that character set is shown as: never the value itself, which may
#: hold a forged log line or a secret in a form redaction cannot recognise.
INVALID_ERROR_CODE = "<invalid error code>"

#: Sent values shorter than this are not searched for (they would cut ordinary words).
MIN_ECHO_LENGTH = 4


def scrub_sent(text: str, sent: Iterable[str]) -> str:
    """``text`` with every value of ``sent`` (of at least :data:`MIN_ECHO_LENGTH` characters)
    replaced by ``<redacted>``: for text whose shape must stay, such as an ``error_uri``."""
    for value in sorted(sent, key=len, reverse=True):
        if len(value) >= MIN_ECHO_LENGTH:
            text = text.replace(value, "<redacted>")
    return text


def safe_server_text(text: str, limit: int, *, sent: Iterable[str] = ()) -> str:
    """``text`` on one printable line, cut to ``limit`` characters (an ellipsis marks the cut),
    with every value in ``sent`` (the secrets of the request the text answers) and every
    token-like run replaced by ``<redacted>``."""
    text = scrub_sent(text, sent)
    printable = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    printable = _TOKENISH.sub(_cut, printable)
    if len(printable) > limit:
        printable = printable[:limit] + "…"
    return printable


def safe_error_code(code: str, *, sent: Iterable[str] = ()) -> str:
    """A server's ``error`` code fit to show: its first 100 characters, redacted as
    ``error_description`` is, or :data:`INVALID_ERROR_CODE` when they break RFC 6749's
    character set."""
    code = code[:100]
    if not _ERROR_CODE.fullmatch(code):
        return INVALID_ERROR_CODE
    return safe_server_text(code, 100, sent=sent)


def safe_error_uri(uri: str, *, sent: Iterable[str] = ()) -> str | None:
    """A server's ``error_uri`` with sent secrets cut out, or ``None`` when it breaks RFC 6749's
    character set (a control character, a space, a quote) or is over 300 characters long."""
    if not _ERROR_URI.fullmatch(uri):
        return None
    return scrub_sent(uri, sent)
