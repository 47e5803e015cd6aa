"""The token value and the strict parsing of RFC 6749 §5.1 token responses.

A :class:`Token` is an immutable value. It knows how to present itself (``authorization``) and how
to be named in logs (``fingerprint``); it never shows its secrets in ``repr``/``str``.

:func:`parse_token_response` is the single place where untrusted token responses (from HTTP or from
a user's callable) become tokens. Every way a response can be wrong raises
:class:`~freshtoken.TokenResponseError` naming the field, never ``KeyError``/``TypeError``/
``ValueError``, and never quoting a secret.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .errors import ConfigurationError, OAuthError, TokenResponseError
from .jwt import unverified_claims
from .redact import safe_error_code, safe_error_uri, safe_server_text

__all__ = [
    "MAX_ACCESS_TOKEN_LENGTH",
    "MAX_EXPIRES_IN",
    "MAX_RESPONSE_BYTES",
    "ParsedToken",
    "ProofSigner",
    "Token",
    "parse_token_response",
]

#: An access token longer than this is refused (API.md: 64 KiB).
MAX_ACCESS_TOKEN_LENGTH = 64 * 1024
#: A token response body larger than this is refused (API.md: 1 MiB).
MAX_RESPONSE_BYTES = 1024 * 1024
#: ``expires_in`` above ten years is taken for a bug on the server, not a lifetime.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
#: A difference between the server's clock and ours below this is noise, not skew.
SKEW_TOLERANCE = 5.0

_STANDARD_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "scope", "refresh_token", "id_token"}
)
#: How each presentable token type is spelled in the Authorization header.
_PRESENTABLE_TYPES = {"bearer": "Bearer", "dpop": "DPoP"}


def _now_utc() -> datetime:
    return datetime.now(UTC)


def _header_safe(value: str) -> bool:
    """True when ``value`` can go in an HTTP header as is (visible ASCII, no spaces)."""
    return value.isascii() and all(33 <= ord(ch) <= 126 for ch in value)


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class ProofSigner(Protocol):
    """Signs the DPoP proof of one resource request for a DPoP-bound token (RFC 9449 §7): the
    grant that obtained the token attaches one (``_oauth/dpop.py``); the core only calls it."""

    def __call__(self, method: str, url: str, access_token: str) -> str: ...


@dataclass(frozen=True, eq=True, repr=False)
class Token:
    """An access token and what the authorization server said about it.

    ``expires_at`` is ``None`` when the server gave no lifetime and the token is not a JWT with an
    ``exp`` claim; the manager then applies the policy's default lifetime. ``issued_at`` is when
    this process received the token (or, for a token built by hand, when it was built).
    """

    access_token: str
    token_type: str = "Bearer"
    expires_at: datetime | None = None
    issued_at: datetime = field(default_factory=_now_utc)
    scope: str | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    _fingerprint: str = field(init=False, compare=False)
    _authorization: str = field(init=False, compare=False)
    # The DPoP key's signer for a DPoP-bound token: not a field of the value (not compared, not
    # pickled, not stored; a store's copy gets it back from the grant that loads it).
    _signer: ProofSigner | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not self.access_token:
            raise TokenResponseError(
                "access_token must be a non-empty string", field="access_token"
            )
        if not _header_safe(self.access_token):
            raise TokenResponseError(
                "access_token contains characters that cannot be sent in an HTTP header",
                field="access_token",
            )
        if not isinstance(self.token_type, str) or not _header_safe(self.token_type):
            raise TokenResponseError("token_type must be a single word", field="token_type")
        for name in ("expires_at", "issued_at"):
            value = getattr(self, name)
            if value is None and name == "expires_at":
                continue
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise TokenResponseError(f"{name} must be a timezone-aware datetime", field=name)
        if not isinstance(self.extra, types.MappingProxyType):
            object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))
        object.__setattr__(self, "_fingerprint", _fingerprint(self.access_token))
        object.__setattr__(self, "_authorization", f"{self.token_type} {self.access_token}")

    @property
    def authorization(self) -> str:
        """The value of the ``Authorization`` header that presents this token."""
        return self._authorization

    def headers(self, method: str, url: str) -> dict[str, str]:
        """The headers one request to ``url`` with ``method`` needs to present this token.

        A bearer token: ``Authorization`` alone. A DPoP token (RFC 9449 §7.1): ``Authorization:
        DPoP ...`` and a ``DPoP`` header with a fresh proof over ``method``, ``url`` and the
        access token (``ath``), carrying the newest nonce the URL's server gave. Call it once per
        request: a proof is single-use. A DPoP token whose key is not at hand (built by hand,
        unpickled) raises :class:`~freshtoken.ConfigurationError`.
        """
        if self.token_type != "DPoP":
            return {"Authorization": self._authorization}
        if self._signer is None:
            raise ConfigurationError(
                "this DPoP token has no DPoP key to sign proofs with: DPoP-bound tokens come from "
                "a grant given dpop=DPoPKey(...) (a token built by hand or unpickled has none)"
            )
        return {
            "Authorization": self._authorization,
            "DPoP": self._signer(method, url, self.access_token),
        }

    def _signed_by(self, signer: ProofSigner | None) -> Token:
        """This token with ``signer`` attached (a copy; the value itself is unchanged)."""
        copy = dataclasses.replace(self)
        object.__setattr__(copy, "_signer", signer)
        return copy

    @property
    def fingerprint(self) -> str:
        """First 8 hex characters of SHA-256 of the access token: the only loggable form."""
        return self._fingerprint

    @property
    def lifetime(self) -> float | None:
        """Seconds from ``issued_at`` to ``expires_at`` (``None`` when the expiry is unknown)."""
        if self.expires_at is None:
            return None
        return (self.expires_at - self.issued_at).total_seconds()

    def __hash__(self) -> int:
        return hash((self.access_token, self.token_type))

    def __reduce__(self) -> tuple[object, ...]:
        # mappingproxy does not pickle: rebuild from plain fields (multiprocessing needs this).
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        fields["extra"] = dict(self.extra)
        return (_rebuild_token, (fields,))

    def __repr__(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        parts = [
            f"fingerprint={self._fingerprint!r}",
            f"token_type={self.token_type!r}",
            f"expires_at={expires!r}",
        ]
        if self.scope is not None:
            parts.append(f"scope={self.scope!r}")
        if self.refresh_token is not None:
            parts.append("refresh_token=<redacted>")
        if self.id_token is not None:
            parts.append("id_token=<redacted>")
        if self.extra:
            parts.append(f"extra_keys={sorted(self.extra)!r}")
        return f"Token({', '.join(parts)})"

    __str__ = __repr__

    def replace(self, **changes: Any) -> Token:
        """A copy with some fields changed (``dataclasses.replace``); a DPoP token keeps its
        key."""
        copy = dataclasses.replace(self, **changes)
        object.__setattr__(copy, "_signer", self._signer)
        return copy

    @classmethod
    def from_response(cls, response: Mapping[str, object], *, now: float | None = None) -> Token:
        """Parse an RFC 6749 §5.1 token response strictly (see :func:`parse_token_response`)."""
        return parse_token_response(response, now=now).token


def _rebuild_token(fields: dict[str, Any]) -> Token:
    return Token(**fields)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A parsed token and what parsing learned about the server's clock.

    ``skew`` is the server's clock minus ours in seconds when it differs by more than
    :data:`SKEW_TOLERANCE` (from the JWT ``iat`` or the ``Date`` header), else ``None``.
    """

    token: Token
    skew: float | None = None


def _describe(value: object) -> str:
    """Name a value's type for an error message without showing the value."""
    return type(value).__name__


def _number(value: object, field_name: str) -> float:
    """A finite number from an int, a float or a numeric string, else TokenResponseError."""
    if isinstance(value, bool):
        raise TokenResponseError(f"{field_name} must be a number, not a boolean", field=field_name)
    if isinstance(value, int):
        number = float(value) if abs(value) < 10**300 else math.inf
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise TokenResponseError(f"{field_name} is not a number", field=field_name)
        try:
            number = float(text)
        except ValueError:
            raise TokenResponseError(f"{field_name} is not a number", field=field_name) from None
    else:
        raise TokenResponseError(
            f"{field_name} must be a number, got {_describe(value)}", field=field_name
        )
    if not math.isfinite(number):
        raise TokenResponseError(f"{field_name} must be a finite number", field=field_name)
    return number


def _finite(value: object) -> bool:
    """True for an int or float that is a finite float (an int too large for one is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _optional_string(data: Mapping[str, object], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TokenResponseError(
            f"{name} must be a non-empty string, got {_describe(value)}", field=name
        )
    return value


def _scope(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return " ".join(items)
    raise TokenResponseError(
        f"scope must be a space-separated string or a list of strings, got {_describe(value)}",
        field="scope",
    )


def _token_type(value: object, allowed_extra: frozenset[str]) -> str:
    if value is None:
        return "Bearer"  # RFC 6749 requires it; many servers omit it, and they all mean Bearer.
    if not isinstance(value, str):
        raise TokenResponseError(
            f"token_type must be a string, got {_describe(value)}", field="token_type"
        )
    presentable = _PRESENTABLE_TYPES.get(value.lower())
    if presentable is not None:
        return presentable
    for extra in allowed_extra:
        if value.lower() == extra.lower():
            return extra
    shown = value if len(value) <= 20 and _header_safe(value) else "<unprintable>"
    raise TokenResponseError(
        f"token_type {shown!r} cannot be presented: freshtoken sends Bearer and DPoP tokens",
        field="token_type",
    )


def _raise_error_response(
    data: Mapping[str, object], status: int | None, sent: Iterable[str]
) -> None:
    error = data.get("error")
    if not isinstance(error, str) or not error:
        raise TokenResponseError(
            "the token response has an 'error' member that is not a string", field="error"
        )
    description = data.get("error_description")
    uri = data.get("error_uri")
    raise OAuthError(
        safe_error_code(error, sent=sent),
        safe_server_text(description, 300, sent=sent) if isinstance(description, str) else None,
        safe_error_uri(uri, sent=sent) if isinstance(uri, str) else None,
        status,
    )


def _jwt_expiry(
    access_token: str, now: float, server_date: float | None
) -> tuple[float, float | None] | None:
    """(expires_at as our epoch seconds, detected skew) from a JWT ``exp``, or ``None``.

    When the server's clock differs from ours (by ``iat``, or else by the ``Date`` header), the
    expiry is taken from the server's view of the lifetime (``exp - iat`` or ``exp - Date``)
    counted from our ``now``, so a skewed server neither expires a token early nor keeps it late.
    """
    claims = unverified_claims(access_token)
    if claims is None or "exp" not in claims:
        return None
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenResponseError("the JWT exp claim must be a NumericDate number", field="exp")
    exp = _number(exp, "exp")
    if exp < 0:
        raise TokenResponseError("the JWT exp claim is negative", field="exp")
    iat = claims.get("iat")
    server_now: float | None = None
    if isinstance(iat, int | float) and _finite(iat):
        server_now = float(iat)
    elif server_date is not None:
        server_now = server_date
    if server_now is not None and abs(server_now - now) > SKEW_TOLERANCE:
        skew = server_now - now
        return now + max(0.0, exp - server_now), skew
    return exp, None


def parse_token_response(
    data: object,
    *,
    now: float | None = None,
    status: int | None = None,
    server_date: float | None = None,
    extra_token_types: frozenset[str] = frozenset(),
    sent: Iterable[str] = (),
) -> ParsedToken:
    """Turn an RFC 6749 §5.1 response (already JSON-decoded) into a :class:`Token`.

    ``now`` is the wall-clock time (epoch seconds) at which the request was sent: counting the
    lifetime from the request, not the response, errs on the safe side. ``server_date`` is the
    response's ``Date`` header as epoch seconds, used to detect skew when the JWT has no ``iat``.
    ``extra_token_types`` admits token types a grant defines (token exchange's ``N_A``).
    ``sent`` holds the secrets of the request: an ``error_description`` that echoes one of them
    shows ``<redacted>`` in its place.
    """
    if now is None:
        now = _now_utc().timestamp()
    if not isinstance(data, Mapping):
        raise TokenResponseError(
            f"a token response must be a JSON object, got {_describe(data)}", status=status
        )
    if "error" in data:
        _raise_error_response(data, status, sent)
    if "access_token" not in data:
        raise TokenResponseError(
            "the token response has no access_token", field="access_token", status=status
        )
    access_token = data["access_token"]
    if not isinstance(access_token, str) or not access_token:
        raise TokenResponseError(
            f"access_token must be a non-empty string, got {_describe(access_token)}",
            field="access_token",
            status=status,
        )
    if len(access_token) > MAX_ACCESS_TOKEN_LENGTH:
        raise TokenResponseError(
            f"access_token is longer than {MAX_ACCESS_TOKEN_LENGTH} characters",
            field="access_token",
            status=status,
        )
    token_type = _token_type(data.get("token_type"), extra_token_types)

    skew: float | None = None
    expires_at: float | None = None
    expires_in = data.get("expires_in")
    if expires_in is not None:
        seconds = _number(expires_in, "expires_in")
        if seconds < 0:
            raise TokenResponseError("expires_in must not be negative", field="expires_in")
        if seconds > MAX_EXPIRES_IN:
            raise TokenResponseError(
                f"expires_in is larger than {MAX_EXPIRES_IN} seconds (ten years)",
                field="expires_in",
            )
        expires_at = now + seconds
        # A JWT's own exp may come earlier than ``now + expires_in``: servers round iat down to
        # the second (oidc-provider) or count from before the request. The earlier one wins, so
        # a strict resource server never sees a token past its exp.
        try:
            from_jwt = _jwt_expiry(access_token, now, server_date)
        except TokenResponseError:
            from_jwt = None  # a malformed exp is ignored when expires_in says enough
        if from_jwt is not None and from_jwt[0] < expires_at:
            expires_at, skew = max(now, from_jwt[0]), from_jwt[1]
    else:
        from_jwt = _jwt_expiry(access_token, now, server_date)
        if from_jwt is not None:
            expires_at, skew = from_jwt
            if expires_at - now > MAX_EXPIRES_IN:
                raise TokenResponseError(
                    "the JWT exp claim lies more than ten years ahead", field="exp"
                )

    if skew is None and server_date is not None and abs(server_date - now) > SKEW_TOLERANCE:
        skew = server_date - now

    extra = {key: value for key, value in data.items() if key not in _STANDARD_FIELDS}
    issued = datetime.fromtimestamp(now, UTC)
    token = Token(
        access_token=access_token,
        token_type=token_type,
        expires_at=None if expires_at is None else issued + timedelta(seconds=expires_at - now),
        issued_at=issued,
        scope=_scope(data.get("scope")),
        refresh_token=_optional_string(data, "refresh_token"),
        id_token=_optional_string(data, "id_token"),
        extra=extra,
    )
    return ParsedToken(token, skew)
