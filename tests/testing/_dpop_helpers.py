"""DPoP proofs built by hand with PyJWT and cryptography, never with freshtoken's client side.

The server's checks are tested against proofs assembled here field by field, so each test can
break exactly one thing; the thumbprint is computed here from RFC 7638 too, not by the server's
code, so a wrong ``cnf.jkt`` cannot agree with itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from freshtoken.testing import AuthorizationServer, Client
from tests.testing._helpers import client_auth

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_key(algorithm: str = "ES256") -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert algorithm == "EdDSA"
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(public, as_dict=True)
    return OKPAlgorithm.to_jwk(public, as_dict=True)


def private_jwk(key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAAlgorithm.to_jwk(key, as_dict=True)
    return OKPAlgorithm.to_jwk(key, as_dict=True)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: the required members, lexicographic order, no whitespace, SHA-256."""
    names = {"EC": ["crv", "kty", "x", "y"], "RSA": ["e", "kty", "n"], "OKP": ["crv", "kty", "x"]}
    canonical = "{" + ",".join(f'"{n}":"{jwk[n]}"' for n in names[jwk["kty"]]) + "}"
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ath(token: str) -> str:
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


_UNSET: Any = object()


def proof(
    key: PrivateKey | bytes | None,
    *,
    htm: str = "POST",
    htu: str,
    algorithm: str = "ES256",
    jti: Any = _UNSET,
    iat: Any = _UNSET,
    nonce: str | None = None,
    access_token: str | None = None,
    typ: str | None = "dpop+jwt",
    jwk: Any = _UNSET,
    claims: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A DPoP proof; every member can be replaced (``_UNSET``: the correct value, ``None``
    for ``jwk``/``typ``: leave it out)."""
    body: dict[str, Any] = {"htm": htm, "htu": htu}
    if jti is not None:
        body["jti"] = secrets.token_urlsafe(16) if jti is _UNSET else jti
    if iat is not None:
        body["iat"] = int(time.time() if now is None else now) if iat is _UNSET else iat
    if nonce is not None:
        body["nonce"] = nonce
    if access_token is not None:
        body["ath"] = ath(access_token)
    body.update(claims or {})
    headers: dict[str, Any] = {"typ": typ}
    if jwk is _UNSET:
        assert key is not None and not isinstance(key, bytes)
        headers["jwk"] = public_jwk(key)
    elif jwk is not None:
        headers["jwk"] = jwk
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def dpop_token_request(
    http: httpx.Client,
    server: AuthorizationServer,
    client: Client,
    dpop: str | bytes | None,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    auth = client_auth(client) if client.client_secret else {}
    headers = [(name.encode(), value.encode()) for name, value in auth.items()]
    if dpop is not None:
        headers.append((b"DPoP", dpop if isinstance(dpop, bytes) else dpop.encode()))
    form = {"grant_type": "client_credentials"} if data is None else data
    return http.post(server.token_url, data=form, headers=headers)


def dpop_resource(
    http: httpx.Client, url: str, token: str, dpop: str | None, method: str = "GET"
) -> httpx.Response:
    headers = {"Authorization": f"DPoP {token}"}
    if dpop is not None:
        headers["DPoP"] = dpop
    return http.request(method, url, headers=headers)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(header: Any, payload: Any, signature: bytes = b"sig") -> str:
    """A compact JWS with arbitrary (even non-object) header and payload: hostile input."""

    def encode(part: Any) -> str:
        return b64(part) if isinstance(part, bytes | str) else b64(json.dumps(part))

    return f"{encode(header)}.{encode(payload)}.{b64(signature)}"
