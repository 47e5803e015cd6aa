"""Issued tokens: minting access tokens, refresh-token families, and revocation.

Every access token the server signs is recorded by ``jti`` with a serial number, so that revocation
can be precise ("this token"), per client ("everything client X holds") or global ("everything
issued so far") without keeping lists: a client-wide or global revocation is a serial-number
cutoff, and tokens issued afterwards are unaffected.

Refresh tokens rotate: using one marks it used and returns a new one of the same *family*. Using a
used refresh token again is the signature of a stolen token (RFC 6819 §5.2.2.3, OAuth 2.0 Security
BCP §4.14), so, as real servers do, the whole family is revoked: its refresh tokens and every access
token issued from it. A reuse grace window (``refresh_reuse_grace`` seconds after the first use)
forgives a client that never heard the answer: within it, the token gets the answer its first use
got, as Okta's and Auth0's grace windows do.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from freshtoken._runtime.clock import Clock
from freshtoken.testing._keys import SigningKey

__all__ = ["TokenStore", "RefreshRecord", "RefreshReuse", "number"]


def number(value: float) -> int | float:
    """``value`` as a JSON number: an int when integral, so ``3600.0`` serializes as ``3600``."""
    return int(value) if float(value).is_integer() else value


@dataclass(slots=True)
class _AccessRecord:
    client_id: str
    serial: int
    family: str | None


@dataclass(slots=True)
class RefreshRecord:
    """What a refresh token stands for."""

    client_id: str
    sub: str
    scope: str | None
    audience: list[str] | None
    family: str
    serial: int
    expires_at: float | None
    used: bool = False
    used_at: float = 0.0
    #: The token response its first use got, replayed within the reuse grace window.
    answer: dict[str, Any] | None = None
    #: The DPoP key thumbprint a public client's refresh token is bound to (RFC 9449 §5).
    jkt: str | None = None


class RefreshReuse(Exception):
    """A rotated-out refresh token was presented again; its family has been revoked.

    ``newly_revoked`` is false when an earlier reuse had already revoked the family.
    """

    def __init__(self, family: str, *, newly_revoked: bool) -> None:
        super().__init__(family)
        self.newly_revoked = newly_revoked


class TokenStore:
    """Mints and remembers tokens; answers "is this revoked?". Thread-safe."""

    def __init__(
        self,
        key: SigningKey,
        clock: Clock,
        *,
        integer_timestamps: bool = False,
        refresh_token_lifetime: float | None = None,
        refresh_reuse_grace: float = 0.0,
    ) -> None:
        if refresh_reuse_grace < 0:
            raise ValueError("refresh_reuse_grace must be >= 0")
        self.key = key
        self.refresh_reuse_grace = refresh_reuse_grace
        self.clock = clock
        self.integer_timestamps = integer_timestamps
        self.refresh_token_lifetime = refresh_token_lifetime
        self.issuer = ""
        self.audience = ""
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        self._access: dict[str, _AccessRecord] = {}
        self._refresh: dict[str, RefreshRecord] = {}
        self._revoked_jtis: set[str] = set()
        self._revoked_families: set[str] = set()
        self._client_cutoff: dict[str, int] = {}
        self._global_cutoff = 0

    # -- issuing -------------------------------------------------------------------------

    def mint(
        self,
        *,
        client_id: str,
        sub: str,
        lifetime: float,
        scope: str | None = None,
        audience: list[str] | None = None,
        clock_offset: float = 0.0,
        family: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign an access token; return it with its claims.

        ``iat``/``exp`` carry millisecond precision (RFC 7519 NumericDates may be non-integer) so
        that a 1.5 s lifetime really is 1.5 s; with ``integer_timestamps`` they are whole seconds,
        ``exp`` rounded down so that a token never outlives the ``expires_in`` announced for it.
        """
        now = self.clock.time() + clock_offset
        iat: float = round(now, 3)
        exp: float = round(now + lifetime, 3)
        if self.integer_timestamps:
            iat, exp = math.floor(now), math.floor(now + lifetime)
        jti = secrets.token_urlsafe(12)
        aud: str | list[str] = audience if audience else self.audience
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": number(iat),
            "exp": number(exp),
            "jti": jti,
            "client_id": client_id,
        }
        if scope:
            claims["scope"] = scope
        if extra:
            claims.update(extra)
        token = self.key.sign(claims)
        with self._lock:
            self._access[jti] = _AccessRecord(client_id, next(self._serials), family)
        return token, claims

    def new_family(self) -> str:
        return secrets.token_hex(8)

    def new_refresh_token(
        self,
        *,
        client_id: str,
        sub: str,
        scope: str | None,
        audience: list[str] | None,
        family: str,
        jkt: str | None = None,
    ) -> str:
        """An opaque refresh token in ``family`` (bound to the DPoP key ``jkt`` if given)."""
        token = secrets.token_urlsafe(32)
        expires_at = (
            None
            if self.refresh_token_lifetime is None
            else self.clock.time() + self.refresh_token_lifetime
        )
        with self._lock:
            self._refresh[token] = RefreshRecord(
                client_id, sub, scope, audience, family, next(self._serials), expires_at, jkt=jkt
            )
        return token

    def use_refresh_token(self, token: str, client_id: str) -> RefreshRecord | None:
        """Consume ``token`` for ``client_id``: its record, or ``None`` if it is not usable.

        A record that comes back already used, with its ``answer``, was presented again within
        the grace window: the caller replays that answer. Raises :class:`RefreshReuse` (after
        revoking the family) if it was used before, outside grace.
        """
        now = self.clock.time()
        with self._lock:
            record = self._refresh.get(token)
            if record is None or record.client_id != client_id:
                return None
            if record.used:
                return self._reused(record, now)
            if self._refresh_revoked(record) or (
                record.expires_at is not None and now >= record.expires_at
            ):
                return None
            record.used = True
            record.used_at = now
            return record

    def _reused(self, record: RefreshRecord, now: float) -> RefreshRecord | None:
        """A used refresh token again: forgiven within grace, else its family is revoked."""
        if now < record.used_at + self.refresh_reuse_grace and record.answer is not None:
            return None if self._refresh_revoked(record) else record
        newly = record.family not in self._revoked_families
        self._revoked_families.add(record.family)
        raise RefreshReuse(record.family, newly_revoked=newly)

    def remember_answer(self, token: str, answer: dict[str, Any]) -> None:
        """Keep the response a refresh with ``token`` got, for replay within grace."""
        with self._lock:
            record = self._refresh.get(token)
            if record is not None and self.refresh_reuse_grace > 0:
                record.answer = answer

    # -- revocation ----------------------------------------------------------------------

    def _refresh_revoked(self, record: RefreshRecord) -> bool:
        return (
            record.family in self._revoked_families
            or record.serial <= self._global_cutoff
            or record.serial <= self._client_cutoff.get(record.client_id, 0)
        )

    def access_revoked(self, jti: str) -> bool:
        """Whether the access token ``jti`` was revoked (unknown tokens count as revoked)."""
        record = self._access.get(jti)
        if record is None:
            return True
        if not (
            self._revoked_jtis
            or self._revoked_families
            or self._global_cutoff
            or self._client_cutoff
        ):
            return False  # fast path: nothing was ever revoked
        return (
            jti in self._revoked_jtis
            or (record.family is not None and record.family in self._revoked_families)
            or record.serial <= self._global_cutoff
            or record.serial <= self._client_cutoff.get(record.client_id, 0)
        )

    def refresh_binding(self, token: str) -> str | None:
        """The DPoP key thumbprint ``token`` is bound to, if it is a bound refresh token."""
        record = self._refresh.get(token)
        return None if record is None else record.jkt

    def refresh_owner(self, token: str) -> str | None:
        """The client ``token`` was issued to, if it is one of our refresh tokens."""
        record = self._refresh.get(token)
        return None if record is None else record.client_id

    def revoke_refresh(self, token: str) -> bool:
        """Revoke a refresh token's family (RFC 7009 §2.1 allows revoking related tokens)."""
        with self._lock:
            record = self._refresh.get(token)
            if record is None:
                return False
            self._revoked_families.add(record.family)
            return True

    def revoke_access(self, jti: str) -> bool:
        with self._lock:
            if jti not in self._access:
                return False
            self._revoked_jtis.add(jti)
            return True

    def revoke_client(self, client_id: str) -> None:
        """Revoke every token issued to ``client_id`` so far."""
        with self._lock:
            self._client_cutoff[client_id] = next(self._serials)

    def revoke_all(self) -> None:
        """Revoke every token issued so far; later tokens are unaffected."""
        with self._lock:
            self._global_cutoff = next(self._serials)
