"""Server-supplied text made safe to show: token-like runs cut out, length bounded.

Authorization servers put free text in places freshtoken repeats (``error_description``, the
excerpt of an HTML error page). Some servers echo what they were sent, a refresh token or an
assertion included, so every such text passes through :func:`safe_server_text` before it reaches
an exception message, a log record or the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MIN_ECHO_LENGTH", "safe_server_text", "scrub_sent"]

#: Runs of token-ish characters (JWTs, opaque tokens, base64 secrets, hex keys).
_TOKENISH = re.compile(r"[A-Za-z0-9\-_.~+/=]{16,}")
#: A run in one case with no digit (``client_credentials``, ``INVALID_REQUEST``) reads as a word;
#: a random secret of 16 or more characters almost never does.
_WORDISH = re.compile(r"[a-z\-_.]+|[A-Z\-_.]+")


def _cut(match: re.Match[str]) -> str:
    run = match.group()
    return run if _WORDISH.fullmatch(run) else "<redacted>"


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
