"""``freshtoken inspect``: decode a JWT and show its timing against the default refresh policy.

Decoding is unverified unless ``--jwks URL`` is given: then the signature is checked with the keys
published there (PyJWT's ``PyJWKClient``), but expiry, ``nbf``, audience and issuer are *shown*,
not enforced, so that an expired token can still be inspected. The token itself is never printed,
only its fingerprint. A token given as an argument stays in shell history; ``-`` (the default)
reads it from standard input.

The timing and the timeline are pure functions of the claims and ``now``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from freshtoken._core.errors import TokenEndpointUnavailable
from freshtoken._core.jwt import unverified_claims, unverified_header
from freshtoken._core.policy import RefreshPolicy

from .common import EXIT_OK, UsageError

__all__ = [
    "SignatureInvalid",
    "Timing",
    "decode",
    "describe_duration",
    "read_token",
    "render_text",
    "run",
    "timeline",
    "timing_of",
    "verify_signature",
]

_NOT_A_JWT = (
    "an opaque token (or a truncated copy) cannot be decoded; check that you copied the whole "
    "access token"
)
_TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")
#: Only signature algorithms with a public key: an HMAC or "none" token cannot be checked
#: against a JWKS, and accepting them would let a forged token pass.
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class SignatureInvalid(Exception):
    """``--jwks`` could not vouch for the token (exit 4). The message never quotes the token."""


def read_token(argument: str, stdin: IO[str]) -> str:
    """The token from the argument, or from standard input for ``-``; a ``Bearer`` prefix (as
    copied from an Authorization header) is dropped."""
    if argument == "-":
        if stdin.isatty():
            raise UsageError(
                'no token: pipe it in (e.g. `echo "$TOKEN" | freshtoken inspect -`) '
                "or pass it as an argument (it then stays in your shell history)"
            )
        argument = stdin.read(256 * 1024)
    text = re.sub(r"(?i)^bearer(\s+|$)", "", argument.strip())
    if not text:
        raise UsageError("the token is empty; pass a JWT or pipe one in with `-`")
    return text


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT, read without verification; UsageError otherwise."""
    segments = token.count(".") + 1
    if segments != 3:
        detail = "it has no '.'" if segments == 1 else f"it has {segments} segments"
        raise UsageError(
            f"not a JWT: {detail}, a JWT has 3 (header.claims.signature); {_NOT_A_JWT}"
        )
    header = unverified_header(token)
    if header is None:
        raise UsageError(
            f"not a JWT: its header is not base64url-encoded JSON with an 'alg'; {_NOT_A_JWT}"
        )
    claims = unverified_claims(token)
    if claims is None:
        raise UsageError(
            f"not a JWT: its claims are not a base64url-encoded JSON object; {_NOT_A_JWT}"
        )
    return header, claims


def _numeric(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Timing:
    """A token's life on the wall clock (epoch seconds), read from its claims, at ``now``.

    ``stale_at``/``hard_at`` are where :class:`~freshtoken.RefreshPolicy` (defaults, no jitter)
    turns the token stale (refreshed while still served) and where callers must wait for a new one.
    """

    now: float
    issued_at: float | None
    expires_at: float | None
    not_before: float | None
    stale_at: float | None
    hard_at: float | None

    @property
    def lifetime(self) -> float | None:
        if self.issued_at is None or self.expires_at is None:
            return None
        return self.expires_at - self.issued_at

    @property
    def remaining(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - self.now


def timing_of(claims: dict[str, Any], now: float, policy: RefreshPolicy) -> Timing:
    issued = _numeric(claims.get("iat"))
    expires = _numeric(claims.get("exp"))
    stale_at = hard_at = None
    if issued is not None and expires is not None and expires > issued:
        stale_margin, hard_margin = policy.margins(expires - issued)
        stale_at, hard_at = expires - stale_margin, expires - hard_margin
    return Timing(
        now=now,
        issued_at=issued,
        expires_at=expires,
        not_before=_numeric(claims.get("nbf")),
        stale_at=stale_at,
        hard_at=hard_at,
    )


def describe_duration(seconds: float) -> str:
    """``0.25 s``, ``42 s``, ``5 min 3 s``, ``2 h 0 min``, ``3 d 4 h``."""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s".replace(".00 s", " s")
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _when(epoch: float) -> str:
    """The instant in local time and in UTC: ``2025-05-01 14:00:00 CEST / 12:00:00 UTC``."""
    utc = datetime.fromtimestamp(epoch, UTC)
    local = utc.astimezone()
    pattern = "%Y-%m-%d %H:%M:%S.%f" if not float(epoch).is_integer() else "%Y-%m-%d %H:%M:%S"
    cut = 23 if "%f" in pattern else 19
    utc_text = utc.strftime(pattern)[:cut] + " UTC"
    if local.utcoffset() == utc.utcoffset():
        return utc_text
    return f"{local.strftime(pattern)[:cut]} {local.tzname()} / {utc_text}"


def _segment(width: int, label: str) -> str:
    if width >= len(label) + 2 and label:
        left = (width - len(label)) // 2
        return "=" * left + label + "=" * (width - len(label) - left)
    return "=" * width


#: ANSI colours of the phases (fresh, stale, must-replace); the plain text stays the same
#: without them, so the picture degrades to characters when colour is off.
_COLOURS = ("\x1b[32m", "\x1b[33m", "\x1b[31m")
_RESET = "\x1b[0m"


def _paint(text: str, colour: str, enabled: bool) -> str:
    return f"{colour}{text}{_RESET}" if enabled else text


def timeline(timing: Timing, width: int = 48, *, colour: bool = False) -> list[str]:
    """A picture of the lifetime (fresh | stale | must-replace), the points, and a marker for now.

    ``issued |=======fresh=======|===stale===|=| expires``, under it where the token turns stale
    and where the hard deadline is, then ``^ now``. Every phase is at least one character wide so
    that none disappears for very short or very long tokens; ``colour`` paints the phases with
    ANSI codes without moving any character.
    """
    lifetime = timing.lifetime
    if lifetime is None or timing.stale_at is None or timing.hard_at is None:
        return []
    assert timing.issued_at is not None
    fresh = max(1, round(width * (timing.stale_at - timing.issued_at) / lifetime))
    stale = max(1, round(width * (timing.hard_at - timing.stale_at) / lifetime))
    hard = max(1, width - fresh - stale)
    prefix = "issued |"
    phases = [
        _paint(_segment(size, label), tint, colour)
        for size, label, tint in zip(
            (fresh, stale, hard), ("fresh", "stale", ""), _COLOURS, strict=True
        )
    ]
    bar = prefix + "|".join(phases) + "| expires"
    plain_width = len(prefix) + fresh + stale + hard + 2 + len("| expires")
    inner = fresh + stale + hard + 2  # the phases and the two separators between them
    stale_column = len(prefix) + fresh
    hard_column = stale_column + 1 + stale
    stale_label = " " * stale_column + "^ stale"
    hard_label = " " * hard_column + "^ hard deadline"
    if len(stale_label) < hard_column:
        points = [stale_label.ljust(hard_column) + hard_label.lstrip()]
    else:  # too close to share a line
        points = [stale_label, hard_label]
    elapsed = (timing.now - timing.issued_at) / lifetime
    if elapsed < 0:
        marker = " " * (len(prefix) - 1) + "^ now (before issue: check the clocks)"
    elif elapsed > 1:
        marker = " " * (plain_width - len("expires")) + "^ now (expired)"
    else:
        column = len(prefix) + min(inner - 1, int(elapsed * inner))
        marker = " " * column + "^ now"
    return [bar, *points, marker]


def _phase(timing: Timing) -> str:
    assert timing.stale_at is not None
    assert timing.hard_at is not None
    assert timing.expires_at is not None
    if timing.now >= timing.expires_at:
        return "expired"
    if timing.now >= timing.hard_at:
        return "must be replaced (callers wait for a new token)"
    if timing.now >= timing.stale_at:
        return "stale (freshtoken serves it and refreshes it now)"
    return "fresh"


def render_text(
    header: dict[str, Any],
    claims: dict[str, Any],
    timing: Timing,
    *,
    fingerprint: str,
    verified: str,
    colour: bool = False,
) -> str:
    lines = ["header"]
    lines += [f"  {name}: {json.dumps(value)}" for name, value in header.items()]
    lines.append("claims")
    for name, value in claims.items():
        shown = json.dumps(value)
        instant = _numeric(value) if name in _TIME_CLAIMS else None
        if instant is not None and abs(instant) < 1e11:
            shown += f"  ({_when(instant)})"
        lines.append(f"  {name}: {shown}")
    lines.append("timing")
    if timing.issued_at is not None:
        lines.append(f"  issued     {_when(timing.issued_at)}")
    if timing.expires_at is None:
        lines.append(
            "  expires    never said (no numeric 'exp' claim); freshtoken would assume the "
            "policy's default lifetime of "
            f"{describe_duration(RefreshPolicy().default_lifetime)} unless the token response "
            "has expires_in"
        )
    else:
        lines.append(f"  expires    {_when(timing.expires_at)}")
        remaining = timing.remaining
        assert remaining is not None
        if remaining >= 0:
            lines.append(f"  remaining  {describe_duration(remaining)}")
        else:
            lines.append(f"  remaining  none: expired {describe_duration(remaining)} ago")
    lifetime = timing.lifetime
    if lifetime is not None:
        lines.append(f"  lifetime   {describe_duration(lifetime)}")
    if timing.stale_at is not None and timing.hard_at is not None:
        assert timing.issued_at is not None
        assert lifetime is not None
        stale_after = timing.stale_at - timing.issued_at
        hard_after = timing.hard_at - timing.issued_at
        lines.append(
            f"  stale at   {_when(timing.stale_at)}  ({describe_duration(stale_after)} after "
            f"issue, {stale_after / lifetime:.0%} of its life)"
        )
        lines.append(
            f"  hard at    {_when(timing.hard_at)}  ({describe_duration(hard_after)} after "
            f"issue, {hard_after / lifetime:.0%}: callers wait for a new token from here)"
        )
        lines.append(f"  now        {_phase(timing)}")
        lines.append("timeline (freshtoken's default RefreshPolicy)")
        lines += [f"  {line}" for line in timeline(timing, colour=colour)]
    elif timing.expires_at is not None:
        lines.append(
            "  (no numeric 'iat' before 'exp': the lifetime and refresh points are unknown)"
        )
    if timing.not_before is not None and timing.now < timing.not_before:
        lines.append(f"  not valid before {_when(timing.not_before)}")
    lines.append(f"fingerprint {fingerprint}")
    lines.append(f"signature   {verified}")
    return "\n".join(lines)


def render_json(
    header: dict[str, Any],
    claims: dict[str, Any],
    timing: Timing,
    *,
    fingerprint: str,
    verified: bool,
) -> str:
    def iso(epoch: float | None) -> str | None:
        return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()

    data = {
        "header": header,
        "claims": claims,
        "fingerprint": fingerprint,
        "signature_verified": verified,
        "timing": {
            "now": iso(timing.now),
            "issued_at": iso(timing.issued_at),
            "expires_at": iso(timing.expires_at),
            "lifetime": timing.lifetime,
            "remaining": timing.remaining,
            "expired": timing.remaining is not None and timing.remaining <= 0,
            "stale_at": iso(timing.stale_at),
            "hard_at": iso(timing.hard_at),
        },
    }
    return json.dumps(data, indent=2, default=str)


def verify_signature(token: str, header: dict[str, Any], jwks_url: str) -> None:
    """Check the signature with the JWKS at ``jwks_url``; expiry and audience not enforced.

    SignatureInvalid when the keys do not vouch for it; TokenEndpointUnavailable (exit 5) when
    the JWKS cannot be fetched.
    """
    import jwt

    algorithm = header.get("alg")
    if algorithm not in _ASYMMETRIC:
        raise SignatureInvalid(
            f"the token is signed with {algorithm!r}, which a JWKS of public keys cannot "
            f"verify (expected one of {', '.join(sorted(_ASYMMETRIC))})"
        )
    client = jwt.PyJWKClient(jwks_url, cache_keys=False, timeout=10)
    try:
        signing_key = client.get_signing_key_from_jwt(token)
        jwt.decode(
            token,
            signing_key.key,
            algorithms=[str(algorithm)],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWKClientConnectionError:
        raise TokenEndpointUnavailable(
            f"could not fetch the JWKS from {jwks_url}; check --jwks and that the server is up"
        ) from None
    except jwt.PyJWKClientError as error:
        raise SignatureInvalid(
            f"no key in the JWKS at {jwks_url} for this token: {error}"
        ) from None
    except jwt.InvalidSignatureError:
        raise SignatureInvalid(
            f"the signature does not verify with the keys at {jwks_url}: the token was not "
            "issued by that server, or was altered"
        ) from None
    except jwt.PyJWTError as error:
        # PyJWT's messages name what is wrong ("Invalid crypto padding"), never the token.
        raise SignatureInvalid(f"the token does not verify: {error}") from None


def run(args: argparse.Namespace) -> int:
    from freshtoken._oauth.discovery import check_url

    from .common import EXIT_REFUSED

    token = read_token(args.token, sys.stdin)
    header, claims = decode(token)
    # The same fingerprint freshtoken logs for this token (first 8 hex of its SHA-256).
    fingerprint = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    verified = False
    verdict = "not verified (give --jwks URL to check it)"
    if args.jwks:
        check_url(args.jwks, "--jwks", allow_insecure_http=args.allow_insecure_http)
        try:
            verify_signature(token, header, args.jwks)
        except SignatureInvalid as error:
            print(f"freshtoken inspect: error: {error}", file=sys.stderr)
            return EXIT_REFUSED
        verified = True
        verdict = f"verified with the JWKS at {args.jwks} (expiry shown, not enforced)"
    timing = timing_of(claims, time.time(), RefreshPolicy())
    if args.json:
        print(render_json(header, claims, timing, fingerprint=fingerprint, verified=verified))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        text = render_text(
            header, claims, timing, fingerprint=fingerprint, verified=verdict, colour=colour
        )
        print(text)
    return EXIT_OK
