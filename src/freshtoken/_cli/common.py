"""What every ``freshtoken`` sub-command shares: exit codes, usage errors, secret scrubbing.

The exit codes are part of the public contract (API.md, "CLI and testing"), so scripts can tell
"fix your command line" from "fix your configuration" from "the server said no" from "the server
is not there" without parsing messages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = [
    "EXIT_CONFIGURATION",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNEXPECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "REDACTED",
    "SECRETS",
    "SecretScrubber",
    "UsageError",
    "split_list",
]

EXIT_OK = 0
#: A bug or an environment problem nobody anticipated: the only case that prints a traceback.
EXIT_UNEXPECTED = 1
#: The command line is wrong (unknown flag, malformed token to inspect...).
EXIT_USAGE = 2
#: The configuration cannot work (missing secret, http:// URL to a remote host...).
EXIT_CONFIGURATION = 3
#: The authorization server refused (an OAuth error code) or answered something unusable; or
#: (``inspect --jwks``) the token's signature does not verify.
EXIT_REFUSED = 4
#: The token endpoint (or discovery, or the JWKS) could not be reached.
EXIT_UNREACHABLE = 5
#: Ctrl-C during ``token``, ``inspect`` or ``demo`` (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: What a secret is replaced with in output that was not asked to show it.
REDACTED = "[redacted]"


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (exit 2). The message says what
    to change and never quotes a secret."""


class SecretScrubber:
    """The secrets this process has handled, so that no unexpected error output shows them.

    Expected errors never hold secrets (freshtoken's errors are built that way); this is the last
    line of defence for the one path that prints a traceback (exit 1), whose exception may come
    from a third-party library that quotes what it was given.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        with self._lock:
            # Very short values would blank out ordinary words; they are not real secrets.
            self._values.update(v for v in values if v is not None and len(v) >= 4)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def scrub(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, REDACTED)
        return text


#: The process-wide scrubber the commands register their secrets with.
SECRETS = SecretScrubber()


def split_list(values: Iterable[str] | None, env_value: str | None) -> list[str]:
    """Repeated flag values, else the whitespace-separated environment value, else nothing."""
    given = [v for v in (values or ()) if v]
    if given:
        return given
    return (env_value or "").split()
