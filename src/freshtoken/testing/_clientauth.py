"""Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2, OIDC Core §9).

Each client is registered with the method(s) it may use; a request that authenticates with a method
the client is not registered for is rejected, as is a request using more than one method.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import jwt

from freshtoken._runtime.clock import Clock
from freshtoken.testing._errors import OAuthError, invalid_client
from freshtoken.testing._http import Request
from freshtoken.testing._keys import unverified_claims, verify_signature
from freshtoken.testing._registry import AuthMethod, ClientRecord, Registry

__all__ = [
    "ASSERTION_TYPE",
    "ClientAuthenticator",
    "Form",
    "check_assertion_claims",
    "claimed_client_id",
    "decode_basic",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
Form = dict[str, list[str]]


def decode_basic(header: str) -> tuple[str, str] | None:
    """Decode ``Basic base64(urlencode(id):urlencode(secret))`` per RFC 6749 §2.3.1.

    The id and secret are form-encoded *before* base64, so ``+`` means a space and ``%XX`` escapes
    decode, which is what lets secrets contain ``:``. ``None`` if the header is not decodable.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def _one(form: Form, name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def claimed_client_id(request: Request, form: Form) -> str | None:
    """Which client the request says it comes from, unverified: for counting requests."""
    authorization = request.header("authorization")
    if authorization is not None:
        basic = decode_basic(authorization)
        if basic is not None:
            return basic[0]
    client_id = _one(form, "client_id")
    if client_id is not None:
        return client_id
    assertion = _one(form, "client_assertion")
    if assertion is not None:
        try:
            sub = unverified_claims(assertion).get("sub")
        except jwt.InvalidTokenError:
            return None
        return sub if isinstance(sub, str) else None
    return None


def _audience_ok(aud: object, accepted: tuple[str, ...]) -> bool:
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return any(value in accepted for value in values)


def check_assertion_claims(
    claims: dict[str, Any], *, audiences: tuple[str, ...], now: float
) -> str | None:
    """RFC 7523 §3 checks common to client and grant assertions; the failure, or ``None``."""
    if not isinstance(claims.get("iss"), str) or not isinstance(claims.get("sub"), str):
        return "assertion needs string iss and sub claims"
    if not _audience_ok(claims.get("aud"), audiences):
        return "assertion aud must be the token endpoint or the issuer"
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return "assertion needs a numeric exp claim"
    if now >= exp:
        return "assertion has expired"
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and now < nbf:
        return "assertion is not valid yet"
    return None


@dataclass(frozen=True)
class Authenticated:
    """The outcome of client authentication."""

    record: ClientRecord
    method: AuthMethod


class ClientAuthenticator:
    """Authenticates the client of a token request with the registered method."""

    def __init__(
        self, registry: Registry, clock: Clock, audiences: Callable[[], tuple[str, ...]]
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._audiences = audiences
        self._lock = threading.Lock()
        self._seen_jtis: dict[tuple[str, str], float] = {}

    def authenticate(self, request: Request, form: Form, *, required: bool) -> Authenticated | None:
        """The authenticated client; ``None`` only when none was presented and ``required`` is
        false; otherwise :class:`OAuthError`."""
        authorization = request.header("authorization")
        basic = authorization is not None and authorization.strip().lower().startswith("basic")
        used = [
            name
            for name, present in (
                ("client_secret_basic", basic),
                ("client_secret_post", "client_secret" in form),
                ("client_assertion", "client_assertion" in form),
            )
            if present
        ]
        if len(used) > 1:
            raise OAuthError(
                "invalid_request", "more than one client authentication method was used"
            )
        if basic:
            assert authorization is not None
            return self._basic(authorization, form)
        if used == ["client_secret_post"]:
            return self._secret_post(form)
        if used == ["client_assertion"]:
            return self._assertion(form)
        client_id = _one(form, "client_id")
        if client_id is None:
            if required:
                raise invalid_client("client authentication required", basic=False)
            return None
        record = self._registry.client(client_id)
        if record is None or "none" not in record.client.auth_methods:
            raise invalid_client("client authentication required", basic=False)
        return Authenticated(record, "none")

    def _lookup(self, client_id: str, method: AuthMethod, *, basic: bool) -> ClientRecord:
        record = self._registry.client(client_id)
        if record is None:
            raise invalid_client("unknown client", basic=basic)
        if method not in record.client.auth_methods:
            raise invalid_client(f"client is not registered for {method}", basic=basic)
        return record

    def _check_secret(self, record: ClientRecord, secret: str, *, basic: bool) -> None:
        expected = record.client.client_secret or ""
        if not secrets.compare_digest(expected.encode(), secret.encode()):
            raise invalid_client("client authentication failed", basic=basic)

    def _basic(self, header: str, form: Form) -> Authenticated:
        decoded = decode_basic(header)
        if decoded is None:
            raise invalid_client("malformed Basic credentials", basic=True)
        client_id, secret = decoded
        body_id = _one(form, "client_id")
        if body_id is not None and body_id != client_id:
            raise OAuthError("invalid_request", "client_id does not match the Basic credentials")
        record = self._lookup(client_id, "client_secret_basic", basic=True)
        self._check_secret(record, secret, basic=True)
        return Authenticated(record, "client_secret_basic")

    def _secret_post(self, form: Form) -> Authenticated:
        client_id = _one(form, "client_id")
        if client_id is None:
            raise invalid_client("client_secret without client_id", basic=False)
        record = self._lookup(client_id, "client_secret_post", basic=False)
        self._check_secret(record, _one(form, "client_secret") or "", basic=False)
        return Authenticated(record, "client_secret_post")

    def _assertion(self, form: Form) -> Authenticated:
        if _one(form, "client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}", basic=False)
        assertion = _one(form, "client_assertion") or ""
        try:
            header = jwt.get_unverified_header(assertion)
            claimed = unverified_claims(assertion)
        except jwt.InvalidTokenError:
            raise invalid_client("client_assertion is not a JWT", basic=False) from None
        client_id = _one(form, "client_id") or claimed.get("sub")
        if not isinstance(client_id, str):
            raise invalid_client("client_assertion has no sub", basic=False)
        algorithm = header.get("alg")
        method: AuthMethod = "client_secret_jwt" if algorithm == "HS256" else "private_key_jwt"
        record = self._lookup(client_id, method, basic=False)
        federation = (claimed.get("iss"), claimed.get("sub"))
        if federation in record.client.federated_credentials:
            return self._federated(record, assertion, federation[0])
        key: Any
        if method == "client_secret_jwt":
            key, algorithms = (record.client.client_secret or "").encode(), ["HS256"]
        else:
            key, algorithms = record.key, list(record.key_algorithms)
        try:
            claims = verify_signature(assertion, key, algorithms)
        except jwt.InvalidTokenError:
            raise invalid_client("client_assertion signature is invalid", basic=False) from None
        now = self._clock.time()
        problem = check_assertion_claims(claims, audiences=self._audiences(), now=now)
        if problem is None and not (claims["iss"] == claims["sub"] == client_id):
            problem = "client_assertion iss and sub must be the client_id"
        jti = claims.get("jti")
        if problem is None and not isinstance(jti, str):
            problem = "client_assertion needs a jti claim"
        if problem is not None:
            raise invalid_client(problem, basic=False)
        assert isinstance(jti, str)
        self._remember_jti(client_id, jti, float(claims["exp"]), now)
        return Authenticated(record, method)

    def _federated(
        self, record: ClientRecord, assertion: str, issuer_name: object
    ) -> Authenticated:
        """A platform's token (Kubernetes, GitHub Actions) standing for the client: signed by a
        trusted issuer, its ``(iss, sub)`` registered for the client. Replays are the platform's
        concern (its token is reused until it expires), so no jti is remembered."""
        issuer = self._registry.issuer(issuer_name) if isinstance(issuer_name, str) else None
        if issuer is None:
            raise invalid_client("client_assertion issuer is not trusted", basic=False)
        try:
            claims = verify_signature(assertion, issuer.key, list(issuer.algorithms))
        except jwt.InvalidTokenError:
            raise invalid_client("client_assertion signature is invalid", basic=False) from None
        problem = check_assertion_claims(
            claims, audiences=self._audiences(), now=self._clock.time()
        )
        if problem is not None:
            raise invalid_client(problem.replace("assertion", "client_assertion", 1), basic=False)
        return Authenticated(record, "private_key_jwt")

    def _remember_jti(self, client_id: str, jti: str, exp: float, now: float) -> None:
        """RFC 7523 §3 item 7: each assertion is usable once (until it expires)."""
        with self._lock:
            if (client_id, jti) in self._seen_jtis:
                raise invalid_client("client_assertion jti was already used", basic=False)
            if len(self._seen_jtis) > 10_000:
                self._seen_jtis = {k: v for k, v in self._seen_jtis.items() if v > now}
            self._seen_jtis[(client_id, jti)] = exp
