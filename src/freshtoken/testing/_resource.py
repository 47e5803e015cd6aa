"""The protected resource under ``/api/``: strict bearer (RFC 6750) and DPoP (RFC 9449 §7) checks.

Strict means: our signature, our issuer, our audience, ``exp`` with no leeway at all, and not
revoked. A client library that sends a token one millisecond after it expires gets a 401 here, which
is the point: that is the bug this endpoint exists to expose.

Signature and audience results are cached per token string (verifying an ES256 signature costs far
more than answering a request), but ``exp`` and revocation are checked on every request.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import jwt

from freshtoken.testing._challenges import Demands
from freshtoken.testing._counters import Counters
from freshtoken.testing._dpop import DPOP_ALGORITHMS, DPoPVerifier, Proof, ProofError, request_url
from freshtoken.testing._errors import REALM, json_response
from freshtoken.testing._http import Request, Response
from freshtoken.testing._tokens import TokenStore

__all__ = ["ResourceEndpoint", "REASONS"]

#: The reasons counted in ``server.unauthorized``.
REASONS = (
    "missing",
    "malformed",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "revoked",
    "dpop_proof",
    "dpop_binding",
    "dpop_as_bearer",
)
_CACHE_LIMIT = 100_000
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _Unauthorized(Exception):
    """A 401: ``reason`` is what ``server.unauthorized`` counts, ``error`` the challenge's code;
    ``dpop`` selects the ``DPoP`` challenge (the request used DPoP, or the token is bound)."""

    def __init__(
        self,
        reason: str,
        description: str,
        *,
        error: str = "invalid_token",
        dpop: bool = False,
    ) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.error = error
        self.dpop = dpop


def _bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    if error is None:
        return f'Bearer realm="{REALM}"'
    challenge = f'Bearer realm="{REALM}", error="{error}"'
    if description:
        challenge += f', error_description="{description}"'
    return challenge


def _dpop_challenge(error: str, description: str) -> str:
    """RFC 9449 §7.1: ``DPoP error=..., error_description=..., algs=...``."""
    quoted = description.replace("\\", "'").replace('"', "'")
    algs = " ".join(DPOP_ALGORITHMS)
    return f'DPoP error="{error}", error_description="{quoted}", algs="{algs}"'


def _binding(claims: dict[str, Any]) -> str | None:
    """The ``cnf.jkt`` a token is bound to (RFC 9449 §6.1), or ``None`` for a bearer token."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


class ResourceEndpoint:
    """Serves ``/api/...``: the protected resource plus a few helper routes."""

    def __init__(self, store: TokenStore, counters: Counters, dpop: DPoPVerifier) -> None:
        self._store = store
        self._counters = counters
        self._dpop = dpop
        self._cache: dict[str, dict[str, Any]] = {}
        #: Beyond a valid token (``server.demand``), and the RFC 9728 metadata URL named in the
        #: challenge to a request without a token (set when the server knows its URL).
        self.demands = Demands()
        self.metadata_url: str | None = None

    def handle(self, request: Request) -> Response:
        if request.path == "/api/redirect":
            return self._redirect(request)
        if request.path.startswith("/api/status/"):
            return self._status(request)
        try:
            claims = self._authorize(request)
        except _Unauthorized as exc:
            response = self._refusal(exc)
        else:
            refusal = self.demands.refusal(claims, self._store.clock.time())
            response = (
                refusal
                if refusal is not None
                else json_response(
                    200,
                    {
                        "ok": True,
                        "client_id": claims.get("client_id"),
                        "sub": claims.get("sub"),
                        "scope": claims.get("scope"),
                        "method": request.method,
                        "path": request.path,
                        "body_length": len(request.body),
                    },
                    [],
                )
            )
        nonce = self._dpop.current_nonce()
        if nonce is not None:
            response.set_header("DPoP-Nonce", nonce)
        return response

    def _refusal(self, exc: _Unauthorized) -> Response:
        if exc.reason == "use_dpop_nonce":
            # Not a failure but the first half of the nonce handshake: counted apart.
            self._counters.dpop_nonce_challenge()
        else:
            self._counters.unauthorized(exc.reason)
            if exc.error == "invalid_dpop_proof":
                self._counters.dpop_proof_rejected()
        if exc.dpop:
            challenge = _dpop_challenge(exc.error, exc.description)
        elif exc.reason == "missing":
            challenge = _bearer_challenge()
            if self.metadata_url is not None:  # RFC 9728 §5.1
                challenge += f', resource_metadata="{self.metadata_url}"'
        else:
            challenge = _bearer_challenge(exc.error, exc.description)
        return json_response(
            401,
            {"error": exc.error, "error_description": exc.description, "reason": exc.reason},
            [("WWW-Authenticate", challenge)],
        )

    # -- validation ---------------------------------------------------------------------

    def _authorize(self, request: Request) -> dict[str, Any]:
        """The claims of the request's valid token, presented as its binding requires."""
        authorization = request.header("authorization")
        if authorization is None:
            raise _Unauthorized("missing", "no access token")
        scheme, _, token = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop"):
            raise _Unauthorized("missing", "no bearer token")
        token = token.strip()
        is_dpop = scheme == "dpop"
        if not token or " " in token:
            name = "DPoP" if is_dpop else "bearer"
            raise _Unauthorized("malformed", f"malformed {name} token", dpop=is_dpop)
        proof = self._proof(request, token) if is_dpop else None
        try:
            claims = self._validate(token)
        except _Unauthorized as exc:
            exc.dpop = is_dpop
            raise
        jkt = _binding(claims)
        if proof is None and jkt is not None:
            raise _Unauthorized(
                "dpop_as_bearer",
                "the access token is DPoP-bound: send it as Authorization: DPoP with a proof",
                dpop=True,
            )
        if proof is not None and jkt is None:
            raise _Unauthorized(
                "dpop_binding",
                "the access token is not DPoP-bound: send it as a Bearer token",
                dpop=True,
            )
        # Bytes: a cnf.jkt minted through issue_token(claims=...) may be any string.
        if proof is not None and jkt is not None and not _same(jkt, proof.jkt):
            raise _Unauthorized(
                "dpop_binding",
                "the DPoP proof is signed by another key than the one the token is bound to",
                error="invalid_dpop_proof",
                dpop=True,
            )
        return claims

    def _proof(self, request: Request, token: str) -> Proof:
        """The verified proof of a DPoP request, for its method, URL and token (``ath``)."""
        value = request.header("dpop")
        if value is None:
            raise _Unauthorized(
                "dpop_proof",
                "a DPoP token needs a DPoP proof header",
                error="invalid_dpop_proof",
                dpop=True,
            )
        url = request_url(self._store.issuer, request.header("host"), request.target)
        try:
            return self._dpop.verify(value, method=request.method, url=url, access_token=token)
        except ProofError as exc:
            reason = "use_dpop_nonce" if exc.error == "use_dpop_nonce" else "dpop_proof"
            raise _Unauthorized(reason, exc.description, error=exc.error, dpop=True) from None

    def _validate(self, token: str) -> dict[str, Any]:
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = claims
        if self._store.clock.time() >= claims["exp"]:  # RFC 7519 §4.1.4, with no leeway
            raise _Unauthorized("expired", "the access token expired")
        if self._store.access_revoked(claims["jti"]):
            raise _Unauthorized("revoked", "the access token was revoked")
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        """Signature, issuer and audience: what never changes for a given token string."""
        try:
            claims = self._store.key.verify(token)
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise _Unauthorized("bad_signature", "the token signature is invalid") from None
        except jwt.InvalidTokenError:
            raise _Unauthorized("malformed", "the token is not a JWT") from None
        exp, jti = claims.get("exp"), claims.get("jti")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not isinstance(jti, str):
            raise _Unauthorized("malformed", "the token lacks exp or jti")
        if claims.get("iss") != self._store.issuer:
            raise _Unauthorized("wrong_issuer", "the token was issued for another issuer")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self._store.audience not in audiences:
            raise _Unauthorized("wrong_audience", "the token is not meant for this resource")
        return claims

    # -- helper routes ------------------------------------------------------------------

    @staticmethod
    def _redirect(request: Request) -> Response:
        """``/api/redirect?to=URL&status=302``: for testing what clients do with credentials."""
        target = request.query.get("to", [""])[0]
        status_text = request.query.get("status", ["302"])[0]
        status = int(status_text) if status_text.isdigit() else 0
        parts = urlsplit(target)
        if status not in _REDIRECT_STATUSES or not target or (parts.scheme and not parts.netloc):
            return json_response(400, {"error": "bad redirect request"}, [])
        return Response(status, b"", [("Location", target)])

    @staticmethod
    def _status(request: Request) -> Response:
        """``/api/status/<code>``: answer exactly that status, with the usual headers."""
        code_text = request.path.removeprefix("/api/status/").strip("/")
        code = int(code_text) if code_text.isdigit() else 0
        if not 200 <= code <= 599:
            return json_response(400, {"error": "bad status code"}, [])
        headers: list[tuple[str, str]] = []
        if code == 401:
            headers.append(("WWW-Authenticate", _bearer_challenge("invalid_token", "rejected")))
        elif code == 403:
            headers.append(("WWW-Authenticate", _bearer_challenge("insufficient_scope")))
        retry_after = request.query.get("retry_after")
        if retry_after:
            headers.append(("Retry-After", retry_after[0]))
        body = json.dumps({"status": code}).encode()
        return Response(code, body, [("Content-Type", "application/json"), *headers])
