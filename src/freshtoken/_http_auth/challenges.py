"""Reading a resource's ``WWW-Authenticate`` and deciding what it asks for. Pure functions.

A resource that refuses a request says why in its challenge (RFC 9110 §11.6.1, RFC 6750 §3):

==========================================  ==================================================
``401`` ``invalid_token``, no error code,   the token itself was refused: a new one may work
no challenge at all                         (:data:`REFRESH`: invalidate, replay once)
``401``/``403`` ``insufficient_scope``      the token lacks a scope (``scope=`` names it); a
                                            new token from the same grant has the same scope
                                            (:data:`INSUFFICIENT_SCOPE`)
``401`` ``insufficient_user_authentication`` RFC 9470 step-up: the user must authenticate anew
                                            (``acr_values``, ``max_age``) (:data:`STEP_UP`)
anything else                               not the token's business (:data:`PASS`)
==========================================  ==================================================

The two typed answers raise :class:`~freshtoken.InsufficientScope` and
:class:`~freshtoken.StepUpRequired` and never cause a token request: refreshing would only fetch
a token with the same scope and the same authentication, and replaying would loop.

The parser reads what real servers send (several challenges in one header, several headers joined
with ``", "``, quoted strings with commas and escapes, token68 credentials, unknown schemes) and
never raises: what it cannot read is skipped, and a header over :data:`MAX_HEADER_LENGTH` is
ignored whole, so a hostile resource gets no more than a refused request's ordinary treatment.
Values that reach an exception are checked against their RFC syntax and cut of the token that was
sent (a server may echo it), and the message shows them redacted (:mod:`freshtoken._core.redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from freshtoken._core.errors import InsufficientScope, StepUpRequired, Unauthorized
from freshtoken._core.redact import safe_error_code, safe_server_text, scrub_sent
from freshtoken._oauth.http import is_loopback

__all__ = [
    "INSUFFICIENT_SCOPE",
    "MAX_CHALLENGES",
    "MAX_HEADER_LENGTH",
    "MAX_PARAMS",
    "PASS",
    "REFRESH",
    "STEP_UP",
    "Challenge",
    "Decision",
    "decide",
    "parse_challenges",
]

#: A ``WWW-Authenticate`` longer than this (all headers joined) is ignored, not parsed.
MAX_HEADER_LENGTH: Final = 16 * 1024
#: Challenges read from one header; the rest are ignored.
MAX_CHALLENGES: Final = 32
#: Parameters read per challenge; the rest are ignored.
MAX_PARAMS: Final = 32
#: The longest ``scope`` / ``acr_values`` kept (longer: not kept at all).
_MAX_VALUE = 2048
#: The longest ``error_description`` shown in a message.
_DESCRIPTION_LIMIT = 200

Action = Literal["pass", "refresh", "insufficient_scope", "step_up"]
PASS: Final = "pass"
REFRESH: Final = "refresh"
INSUFFICIENT_SCOPE: Final = "insufficient_scope"
STEP_UP: Final = "step_up"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: the scheme (lower-cased) and its parameters (names
    lower-cased; a token68 credential under the name ``""``)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


# -- the parser ----------------------------------------------------------------------------------

#: RFC 9110 §5.6.2 ``token``.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 §11.2 ``token68``, only when the rest of the list element is blank.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*[ \t]*(?=,|$)")
_OWS = re.compile(r"[ \t]*")
#: A list element that is a parameter: ``token BWS "="`` (a new challenge starts otherwise).
_PARAM_START = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=")
#: RFC 9110 §5.6.4 ``quoted-string`` (``qdtext`` and ``quoted-pair``), closing quote included.
_QUOTED = re.compile(
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\t \x21-\x7e\x80-\U0010ffff])*)"'
)
_UNESCAPE = re.compile(r"\\(.)")


class _Reader:
    """A cursor over one header value."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = pattern.match(self.text, self.pos)
        if found is not None:
            self.pos = found.end()
        return found

    def skip_ows(self) -> None:
        self.match(_OWS)

    def at(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def skip_element(self) -> None:
        """Resynchronise after something unreadable: past the next comma outside quotes."""
        text = self.text
        quoted = escaped = False
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if escaped:
                escaped = False
            elif quoted and char == "\\":
                escaped = True
            elif char == '"':
                quoted = not quoted
            elif char == "," and not quoted:
                return

    def skip_commas(self) -> None:
        """Past empty list elements (RFC 9110 §5.6.1: ``, ,`` is allowed and means nothing)."""
        while True:
            self.skip_ows()
            if not self.at(","):
                return
            self.pos += 1


def _param_value(reader: _Reader) -> str | None:
    """A ``token`` or ``quoted-string`` (unescaped); ``None`` if neither is there."""
    if reader.at('"'):
        quoted = reader.match(_QUOTED)
        if quoted is None:
            return None
        return _UNESCAPE.sub(r"\1", quoted.group(1))
    token = reader.match(_TOKEN)
    return "" if token is None else token.group()


def _end_of_element(reader: _Reader) -> bool:
    """After a parameter: past its comma; False when garbage follows (then skipped)."""
    reader.skip_ows()
    if reader.done():
        return True
    if reader.at(","):
        reader.pos += 1
        return True
    reader.skip_element()
    return False


def _read_params(reader: _Reader, params: dict[str, str]) -> None:
    """Read ``auth-param`` list elements into ``params`` until the next challenge starts."""
    while True:
        reader.skip_commas()
        if reader.done() or _PARAM_START.match(reader.text, reader.pos) is None:
            return  # the end, or the scheme of the next challenge
        name = reader.match(_TOKEN)
        assert name is not None
        reader.skip_ows()
        reader.pos += 1  # the "="
        reader.skip_ows()
        value = _param_value(reader)
        if value is None:
            reader.skip_element()
            continue
        key = name.group().lower()
        # RFC 9110 §11.2: a parameter name occurs once; a repeated one is ambiguous (which one
        # would a server act on?), so the first is kept and the others ignored.
        if key not in params and len(params) < MAX_PARAMS:
            params[key] = value
        _end_of_element(reader)


def parse_challenges(header: str | Iterable[str] | None) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (RFC 9110 §11.6.1) into its challenges, never raising.

    ``header`` is one value, or several (one per header line), which are joined with ``", "``
    as RFC 9110 §5.3 allows. ``Bearer realm="api", error="invalid_token", Basic realm="x"``
    gives two challenges; ``Negotiate abc==`` keeps the token68 credential under the name
    ``""``. An element that cannot be read is skipped to the next comma; a header over
    :data:`MAX_HEADER_LENGTH` characters gives no challenges at all.
    """
    if header is None:
        return []
    if not isinstance(header, str):
        header = ", ".join(value for value in header if isinstance(value, str))
    if len(header) > MAX_HEADER_LENGTH:
        return []
    reader = _Reader(header)
    challenges: list[Challenge] = []
    while len(challenges) < MAX_CHALLENGES:
        reader.skip_commas()
        if reader.done():
            break
        scheme = reader.match(_TOKEN)
        if scheme is None or reader.at("="):
            reader.skip_element()  # not a scheme (a stray parameter, a quote, garbage)
            continue
        challenge = Challenge(scheme.group().lower())
        challenges.append(challenge)
        if reader.done() or reader.at(","):
            continue
        if not reader.at(" "):  # RFC 9110: 1*SP between scheme and what follows
            reader.skip_element()
            continue
        reader.skip_ows()
        token68 = reader.match(_TOKEN68)
        if token68 is not None:
            challenge.params[""] = token68.group().rstrip(" \t")
            continue
        _read_params(reader, challenge.params)
    return challenges


# -- the decision --------------------------------------------------------------------------------

#: Schemes whose ``error`` parameter is RFC 6750 §3's (DPoP, RFC 9449 §7.1, reuses it).
_TOKEN_SCHEMES = frozenset({"bearer", "dpop"})
#: Visible ASCII but ``"`` and ``\``: RFC 6749 §3.3 ``scope-token``, and the ACR values of
#: RFC 9470 §4 / OpenID Connect ``acr_values`` (space-separated strings of the same kind).
_WORD = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_MAX_AGE = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class Decision:
    """What a response's challenge asks for: ``action`` and the challenge it was read from."""

    action: Action
    status: int
    challenge: Challenge | None = None

    def error(self, *, sent: Iterable[str] = ()) -> Unauthorized | None:
        """The typed error for :data:`INSUFFICIENT_SCOPE` / :data:`STEP_UP` (``None`` for the
        others). ``sent``: the secrets of the refused request (the token), cut out of every
        value the server supplied."""
        if self.action not in (INSUFFICIENT_SCOPE, STEP_UP) or self.challenge is None:
            return None
        secrets = [value for value in sent if value]
        params = self.challenge.params
        description = params.get("error_description")
        shown = (
            safe_server_text(description, _DESCRIPTION_LIMIT, sent=secrets) if description else ""
        )
        metadata = _metadata_url(params.get("resource_metadata"))
        if self.action == INSUFFICIENT_SCOPE:
            scope = _words(params.get("scope"), secrets)
            text = f"the resource answered HTTP {self.status}: the token lacks a scope it needs"
            if scope is not None:
                text += f" (scope {safe_server_text(scope, 200)!r})"
            text += "; a new token of the same grant would not have it: request that scope"
            return InsufficientScope(
                _with(text, shown),
                scope=scope,
                status=self.status,
                resource_metadata=metadata,
            )
        acr_values = _words(params.get("acr_values"), secrets)
        max_age_text = params.get("max_age", "")
        max_age = int(max_age_text) if _MAX_AGE.fullmatch(max_age_text) else None
        text = (
            f"the resource answered HTTP {self.status}: it requires a stronger or more recent "
            "user authentication (RFC 9470 step-up)"
        )
        wants = []
        if acr_values is not None:
            wants.append(f"acr_values {safe_server_text(acr_values, 200)!r}")
        if max_age is not None:
            wants.append(f"max_age {max_age}")
        if wants:
            text += " with " + " and ".join(wants)
        text += "; a refreshed token would not satisfy it: the user must sign in again"
        return StepUpRequired(
            _with(text, shown),
            acr_values=acr_values,
            max_age=max_age,
            status=self.status,
            resource_metadata=metadata,
        )


def _with(text: str, description: str) -> str:
    return f"{text} (the resource says: {description})" if description else text


def _words(value: str | None, secrets: list[str]) -> str | None:
    """A space-separated list of visible-ASCII words, normalised, with ``secrets`` cut out;
    ``None`` when absent, empty, too long or outside that syntax."""
    if value is None or len(value) > _MAX_VALUE:
        return None
    words = scrub_sent(value, secrets).split(" ")
    kept = [word for word in words if word]
    if not kept or not all(_WORD.fullmatch(word) for word in kept):
        return None
    return " ".join(dict.fromkeys(kept))


def _metadata_url(value: str | None) -> str | None:
    """RFC 9728 §5.1 ``resource_metadata``: kept when it is an https URL (or http to a loopback
    host) without credentials, fragment or odd characters; ``None`` otherwise."""
    if value is None or len(value) > _MAX_VALUE or not value.isascii():
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        return None
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return value
    return None


def _error_code(challenge: Challenge) -> str | None:
    code = challenge.params.get("error")
    return None if code is None else safe_error_code(code)


def decide(status: int, www_authenticate: str | Iterable[str] | None) -> Decision:
    """What the answer ``status`` with challenge ``www_authenticate`` asks of the client.

    Only 401 and 403 are read. The first Bearer (or DPoP) challenge carrying an ``error`` code
    decides: ``insufficient_scope`` (401 or 403) and ``insufficient_user_authentication`` (RFC
    9470 says 401; a 403 is read the same way) are typed; on a 401, ``invalid_request`` is passed
    through (a new token would be just as malformed a request) and anything else, or no
    challenge, is about the token. A 403 with any other code is passed through.
    """
    if status not in (401, 403):
        return Decision(PASS, status)
    challenges = parse_challenges(www_authenticate) if www_authenticate else []
    ours = [c for c in challenges if c.scheme in _TOKEN_SCHEMES]
    coded = next((c for c in ours if "error" in c.params), None)
    code = None if coded is None else _error_code(coded)
    if code == "insufficient_scope":
        return Decision(INSUFFICIENT_SCOPE, status, coded)
    if code == "insufficient_user_authentication":
        return Decision(STEP_UP, status, coded)
    if status == 403 or code == "invalid_request":
        return Decision(PASS, status, coded)
    return Decision(REFRESH, status, coded or (ours[0] if ours else None))
