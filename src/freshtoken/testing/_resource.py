"""The protected resource: strict bearer-token validation (RFC 6750) under ``/api/``.

Strict means: our signature, our issuer, our audience, ``exp`` with no leeway at all, and not
revoked. A client library that sends a token one millisecond after it expires gets a 401 here, which
is the point: that is the bug this endpoint exists to expose.

Signature and audience results are cached per token string (verifying an ES256 signature costs far
more than answering a request), but ``exp`` and revocation are checked on every request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import jwt

from freshtoken.testing._challenges import Demands
from freshtoken.testing._counters import Counters
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
)
_CACHE_LIMIT = 100_000
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _Unauthorized(Exception):
    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


def _bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    if error is None:
        return f'Bearer realm="{REALM}"'
    challenge = f'Bearer realm="{REALM}", error="{error}"'
    if description:
        challenge += f', error_description="{description}"'
    return challenge


class ResourceEndpoint:
    """Serves ``/api/...``: the protected resource plus a few helper routes."""

    def __init__(self, store: TokenStore, counters: Counters) -> None:
        self._store = store
        self._counters = counters
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
        authorization = request.header("authorization")
        try:
            claims = self._validate(authorization)
        except _Unauthorized as exc:
            self._counters.unauthorized(exc.reason)
            challenge = (
                _bearer_challenge()
                if exc.reason == "missing"
                else _bearer_challenge("invalid_token", exc.description)
            )
            if exc.reason == "missing" and self.metadata_url is not None:  # RFC 9728 §5.1
                challenge += f', resource_metadata="{self.metadata_url}"'
            return json_response(
                401,
                {
                    "error": "invalid_token",
                    "error_description": exc.description,
                    "reason": exc.reason,
                },
                [("WWW-Authenticate", challenge)],
            )
        refusal = self.demands.refusal(claims, self._store.clock.time())
        if refusal is not None:
            return refusal
        return json_response(
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

    # -- validation ---------------------------------------------------------------------

    def _validate(self, authorization: str | None) -> dict[str, Any]:
        if authorization is None:
            raise _Unauthorized("missing", "no access token")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _Unauthorized("missing", "no bearer token")
        token = token.strip()
        if not token or " " in token:
            raise _Unauthorized("malformed", "malformed bearer token")
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
