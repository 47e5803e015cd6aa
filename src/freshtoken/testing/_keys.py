"""Keys: the server's own signing key, and the public keys clients and issuers register.

The server signs with a key generated at start-up, so a token can only verify against the server
that issued it. Claim checks (``exp``, ``aud``...) are done by the callers against the server's
clock, not by PyJWT against the wall clock: here we only verify signatures.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Literal, TypeAlias

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = [
    "SigningAlgorithm",
    "SigningKey",
    "PublicKey",
    "PublicKeyInput",
    "load_public_key",
    "public_key_pem",
    "algorithms_for",
    "generate_client_key",
    "verify_signature",
    "unverified_claims",
    "jwk_thumbprint",
]

SigningAlgorithm: TypeAlias = Literal["ES256", "RS256"]
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
#: What ``add_client(public_key=...)`` accepts: a key object, a PEM string/bytes, or a JWK dict.
PublicKeyInput: TypeAlias = PublicKey | str | bytes | dict[str, Any]

_JWS = jwt.PyJWS()


class SigningKey:
    """The server's signing key pair, with its ``kid`` and public JWK."""

    def __init__(self, algorithm: SigningAlgorithm = "ES256") -> None:
        self.algorithm = algorithm
        private: PrivateKey
        if algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        elif algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        else:
            raise ValueError(f"unsupported signing algorithm {algorithm!r}; use ES256 or RS256")
        self._private = private
        self.public_key: PublicKey = private.public_key()
        self.kid = jwk_thumbprint(jwk)
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid, "alg": algorithm, "use": "sig"}
        self._headers = {"kid": self.kid, "typ": "at+jwt"}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` with ``typ: at+jwt`` (RFC 9068) and our ``kid``."""
        return jwt.encode(claims, self._private, algorithm=self.algorithm, headers=self._headers)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` if we signed it; raise :class:`jwt.InvalidTokenError` if not."""
        header = jwt.get_unverified_header(token)
        if header.get("kid") != self.kid:
            raise jwt.InvalidSignatureError("unknown key id")
        return verify_signature(token, self.public_key, [self.algorithm])


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: a stable, content-derived key id (and DPoP's ``cnf.jkt``)."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def load_public_key(value: PublicKeyInput) -> PublicKey:
    """Turn a key object, PEM or JWK into a public key object (private keys are reduced)."""
    if isinstance(value, dict):
        kty = value.get("kty")
        algorithm: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}.get(str(kty))
        if algorithm is None:
            raise ValueError(f"unsupported JWK key type {kty!r}")
        key = algorithm.from_jwk(value)
    elif isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            key = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        key = value
    if hasattr(key, "public_key"):
        key = key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("only P-256 elliptic-curve keys are supported (ES256)")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def public_key_pem(key: PublicKey) -> str:
    """PEM (SubjectPublicKeyInfo) text of ``key``: how keys travel to a server subprocess."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def algorithms_for(key: PublicKey) -> list[str]:
    """The JWS algorithms a client may use with ``key`` (RS256/PS256, ES256, EdDSA)."""
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256", "PS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ["ES256"]
    return ["EdDSA"]


def generate_client_key() -> str:
    """A fresh P-256 private key as PKCS#8 PEM, for clients registered without a public key."""
    private = ec.generate_private_key(ec.SECP256R1())
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def verify_signature(token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
    """Verify the JWS signature only and return the claims (a JSON object)."""
    payload = _JWS.decode(token, key, algorithms=algorithms)
    return _claims_object(payload)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of ``token`` without checking anything: for routing and counting only."""
    payload = _JWS.decode(token, options={"verify_signature": False})
    return _claims_object(payload)


def _claims_object(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise jwt.DecodeError("claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise jwt.DecodeError("claims are not a JSON object")
    return claims
