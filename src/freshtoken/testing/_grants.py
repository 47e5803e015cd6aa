"""The token endpoint: request validation, grant types, scopes and audiences.

Supported grants: ``client_credentials``, ``password``, ``refresh_token`` (rotating, with reuse
detection), RFC 7523 ``jwt-bearer`` and RFC 8693 ``token-exchange``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from freshtoken.testing._clientauth import (
    Authenticated,
    ClientAuthenticator,
    Form,
    check_assertion_claims,
)
from freshtoken.testing._counters import Counters
from freshtoken.testing._dpop import DPoPVerifier, Proof, ProofError, request_url
from freshtoken.testing._errors import OAuthError, json_response
from freshtoken.testing._http import Request, Response
from freshtoken.testing._keys import unverified_claims, verify_signature
from freshtoken.testing._registry import (
    ALL_GRANT_TYPES,
    JWT_BEARER,
    TOKEN_EXCHANGE,
    Client,
    Registry,
)
from freshtoken.testing._tokens import RefreshReuse, TokenStore, number

__all__ = ["TokenEndpoint", "ACCESS_TOKEN_TYPE", "JWT_TOKEN_TYPE"]

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
#: RFC 6749 §3.2: parameters must not repeat, except these (RFC 8707 and RFC 8693).
_REPEATABLE = frozenset({"resource", "audience"})


def parse_form(request: Request) -> Form:
    """The form-encoded body of a token request (an :class:`OAuthError` if it is not one)."""
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None
    return parse_qs(text, keep_blank_values=True)


def _one(form: Form, name: str, *, required: bool = False) -> str | None:
    values = form.get(name)
    if not values or values[0] == "":
        if required:
            raise OAuthError("invalid_request", f"missing parameter {name}")
        return None
    return values[0]


@dataclass(frozen=True)
class _Grant:
    """What a grant handler decided to issue."""

    sub: str
    scope: str | None
    audience: list[str] | None
    family: str | None = None
    refresh: bool = False
    extra: dict[str, Any] | None = None
    issued_token_type: str | None = None
    client_id: str | None = None
    #: The refresh token this grant rotates (its answer is kept for the reuse grace window).
    rotates: str | None = None
    #: An answer to send again: the refresh token was presented twice within grace.
    replay: dict[str, Any] | None = None


class TokenEndpoint:
    """Answers token requests; ``clock_offset`` comes from an active clock fault."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: TokenStore,
        authenticator: ClientAuthenticator,
        counters: Counters,
        audiences: Callable[[], tuple[str, ...]],
        token_lifetime: float,
        dpop: DPoPVerifier,
        origin: Callable[[], str],
    ) -> None:
        self._registry = registry
        self._dpop = dpop
        self._origin = origin
        self._store = store
        self._auth = authenticator
        self._counters = counters
        self._audiences = audiences
        self.token_lifetime = token_lifetime
        self._grants: dict[str, Callable[[Authenticated | None, Form], _Grant]] = {
            "client_credentials": self._client_credentials,
            "password": self._password,
            "refresh_token": self._refresh_token,
            JWT_BEARER: self._jwt_bearer,
            TOKEN_EXCHANGE: self._token_exchange,
        }

    def handle(self, request: Request, form: Form | None, *, clock_offset: float) -> Response:
        try:
            response = self._handle(request, form, clock_offset=clock_offset)
        except OAuthError as error:
            response = error.response()
        nonce = self._dpop.current_nonce()
        if nonce is not None:  # RFC 9449 §8: any response may carry the next nonce
            response.set_header("DPoP-Nonce", nonce)
        return response

    def _handle(self, request: Request, form: Form | None, *, clock_offset: float) -> Response:
        if request.method != "POST":
            raise OAuthError(
                "invalid_request",
                "the token endpoint accepts POST only",
                status=405,
                headers=[("Allow", "POST")],
            )
        if form is None:
            form = parse_form(request)
        repeated = [k for k, v in form.items() if len(v) > 1 and k not in _REPEATABLE]
        if repeated:
            raise OAuthError("invalid_request", f"repeated parameter {sorted(repeated)[0]}")
        grant_type = _one(form, "grant_type", required=True)
        assert grant_type is not None
        if grant_type not in ALL_GRANT_TYPES:
            raise OAuthError("unsupported_grant_type", f"grant type {grant_type} is not supported")
        proof = self._proof(request, clock_offset)
        client = self._auth.authenticate(request, form, required=grant_type != JWT_BEARER)
        if client is not None and grant_type not in client.record.client.grant_types:
            raise OAuthError("unauthorized_client", f"client may not use the {grant_type} grant")
        if grant_type == "refresh_token":
            self._check_refresh_binding(form, proof)
        grant = self._grants[grant_type](client, form)
        if grant.replay is not None:
            return json_response(200, grant.replay)
        return self._issue(client, grant, clock_offset, proof)

    # -- DPoP (RFC 9449) ------------------------------------------------------------------

    def _proof(self, request: Request, clock_offset: float) -> Proof | None:
        """The request's verified DPoP proof; ``None`` without a ``DPoP`` header (a bearer
        request). A bad proof is a 400 ``invalid_dpop_proof``, a missing or stale nonce a 400
        ``use_dpop_nonce`` (the new nonce goes out in ``DPoP-Nonce`` on every response)."""
        value = request.header("dpop")
        if value is None:
            return None
        url = request_url(self._origin(), request.header("host"), request.target)
        try:
            return self._dpop.verify(
                value, method=request.method, url=url, clock_offset=clock_offset
            )
        except ProofError as error:
            if error.error == "use_dpop_nonce":
                self._counters.dpop_nonce_challenge()
            else:
                self._counters.dpop_proof_rejected()
            raise OAuthError(error.error, error.description) from None

    def _check_refresh_binding(self, form: Form, proof: Proof | None) -> None:
        """RFC 9449 §5: a public client's bound refresh token is usable only with a proof from
        the same key. Checked before the token is consumed, so a refused attempt (a thief's, or
        a client that lost its key) does not rotate it away from its owner."""
        token = _one(form, "refresh_token")
        bound = None if token is None else self._store.refresh_binding(token)
        if bound is None:
            return
        if proof is None or not secrets.compare_digest(proof.jkt.encode(), bound.encode()):
            self._counters.dpop_proof_rejected()
            problem = "no DPoP proof" if proof is None else "a DPoP proof from another key"
            raise OAuthError(
                "invalid_dpop_proof", f"the refresh token is DPoP-bound and came with {problem}"
            )

    def _issue(
        self,
        client: Authenticated | None,
        grant: _Grant,
        clock_offset: float,
        proof: Proof | None = None,
    ) -> Response:
        registered: Client | None = None if client is None else client.record.client
        client_id = registered.client_id if registered is not None else grant.client_id or grant.sub
        lifetime = (
            registered.token_lifetime
            if registered is not None and registered.token_lifetime is not None
            else self.token_lifetime
        )
        family = grant.family
        if grant.refresh and family is None:
            family = self._store.new_family()
        extra = grant.extra
        if proof is not None:  # RFC 9449 §6.1: the token is bound to the proof's key
            extra = {**(extra or {}), "cnf": {"jkt": proof.jkt}}
        token, _ = self._store.mint(
            client_id=client_id,
            sub=grant.sub,
            lifetime=lifetime,
            scope=grant.scope,
            audience=grant.audience,
            clock_offset=clock_offset,
            family=family,
            extra=extra,
        )
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer" if proof is None else "DPoP",
            "expires_in": number(lifetime),
        }
        if grant.scope:
            payload["scope"] = grant.scope
        if grant.refresh:
            assert family is not None
            # Only a public client's refresh token is bound; a confidential client's is already
            # bound to its credentials (RFC 9449 §5).
            public = client is not None and client.method == "none"
            refresh_jkt = proof.jkt if proof is not None and public else None
            payload["refresh_token"] = self._store.new_refresh_token(
                client_id=client_id,
                sub=grant.sub,
                scope=grant.scope,
                audience=grant.audience,
                family=family,
                jkt=refresh_jkt,
            )
        if grant.issued_token_type is not None:
            payload["issued_token_type"] = grant.issued_token_type
        if grant.rotates is not None:
            self._store.remember_answer(grant.rotates, payload)
        self._counters.token_issued()
        return json_response(200, payload)

    # -- parameters shared by grants ------------------------------------------------------

    @staticmethod
    def _scope(client: Client | None, form: Form, ceiling: str | None = None) -> str | None:
        """The granted scope: the request's (checked), or by default the ceiling / all allowed."""
        allowed: set[str] | None = (
            None if client is None or client.scopes is None else set(client.scopes)
        )
        if ceiling is not None:
            allowed = set(ceiling.split()) if allowed is None else allowed & set(ceiling.split())
        requested = _one(form, "scope")
        if requested is None:
            if ceiling is not None:
                return ceiling
            return None if client is None or not client.scopes else " ".join(client.scopes)
        wanted = requested.split()
        if allowed is not None:
            refused = [s for s in wanted if s not in allowed]
            if refused:
                raise OAuthError("invalid_scope", f"scope {refused[0]} is not allowed")
        return " ".join(dict.fromkeys(wanted))

    @staticmethod
    def _audience(form: Form) -> list[str] | None:
        resources = [r for r in form.get("resource", []) if r]
        for resource in resources:
            parts = urlsplit(resource)
            if not parts.scheme or parts.fragment:  # RFC 8707 §2: URNs are absolute URIs
                raise OAuthError(
                    "invalid_target", "resource must be an absolute URI without a fragment"
                )
        audience = [a for a in form.get("audience", []) if a] + resources
        return list(dict.fromkeys(audience)) or None

    # -- grants -------------------------------------------------------------------------

    def _client_credentials(self, client: Authenticated | None, form: Form) -> _Grant:
        assert client is not None
        registered = client.record.client
        return _Grant(
            sub=registered.client_id,
            scope=self._scope(registered, form),
            audience=self._audience(form),
            refresh=registered.refresh_tokens,
        )

    def _password(self, client: Authenticated | None, form: Form) -> _Grant:
        assert client is not None
        username = _one(form, "username", required=True)
        password = _one(form, "password", required=True)
        assert username is not None
        assert password is not None
        if not self._registry.check_user(username, password):
            raise OAuthError("invalid_grant", "invalid username or password")
        return _Grant(
            sub=username,
            scope=self._scope(client.record.client, form),
            audience=self._audience(form),
            refresh=True,
        )

    def _refresh_token(self, client: Authenticated | None, form: Form) -> _Grant:
        assert client is not None
        token = _one(form, "refresh_token", required=True)
        assert token is not None
        try:
            record = self._store.use_refresh_token(token, client.record.client.client_id)
        except RefreshReuse as reuse:
            self._counters.refresh_token_reused(family_revoked=reuse.newly_revoked)
            raise OAuthError(
                "invalid_grant", "refresh token reuse detected: the token family is revoked"
            ) from None
        if record is None:
            raise OAuthError("invalid_grant", "refresh token is invalid, expired or revoked")
        if record.answer is not None:
            return _Grant(sub=record.sub, scope=None, audience=None, replay=dict(record.answer))
        return _Grant(
            sub=record.sub,
            scope=self._scope(client.record.client, form, ceiling=record.scope),
            audience=self._audience(form) or record.audience,
            family=record.family,
            refresh=True,
            rotates=token,
        )

    def _jwt_bearer(self, client: Authenticated | None, form: Form) -> _Grant:
        assertion = _one(form, "assertion", required=True)
        assert assertion is not None
        try:
            issuer_name = unverified_claims(assertion).get("iss")
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "assertion is not a JWT") from None
        issuer = self._registry.issuer(issuer_name) if isinstance(issuer_name, str) else None
        if issuer is None:
            raise OAuthError("invalid_grant", "assertion issuer is not trusted")
        try:
            claims = verify_signature(assertion, issuer.key, list(issuer.algorithms))
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "assertion signature is invalid") from None
        problem = check_assertion_claims(
            claims, audiences=self._audiences(), now=self._store.clock.time()
        )
        if problem is not None:
            raise OAuthError("invalid_grant", problem)
        registered = None if client is None else client.record.client
        return _Grant(
            sub=claims["sub"],
            scope=self._scope(registered, form),
            audience=self._audience(form),
            client_id=issuer.issuer,
        )

    def _token_exchange(self, client: Authenticated | None, form: Form) -> _Grant:
        assert client is not None
        subject_token = _one(form, "subject_token", required=True)
        subject_type = _one(form, "subject_token_type", required=True)
        assert subject_token is not None
        if subject_type not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError("invalid_request", f"unsupported subject_token_type {subject_type}")
        requested = _one(form, "requested_token_type")
        if requested not in (None, ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError("invalid_request", f"unsupported requested_token_type {requested}")
        try:
            subject = self._store.key.verify(subject_token)
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_grant", "subject_token was not issued here") from None
        if self._store.clock.time() >= subject["exp"]:
            raise OAuthError("invalid_grant", "subject_token has expired")
        if self._store.access_revoked(subject["jti"]):
            raise OAuthError("invalid_grant", "subject_token has been revoked")
        registered = client.record.client
        return _Grant(
            sub=subject["sub"],
            scope=self._scope(registered, form, ceiling=subject.get("scope"))
            if subject.get("scope")
            else self._scope(registered, form),
            audience=self._audience(form),
            extra={"act": {"sub": registered.client_id}},
            issued_token_type=requested or ACCESS_TOKEN_TYPE,
        )
