"""A small DPoP token endpoint and resource on 127.0.0.1, verifying proofs with PyJWT.

It is a real HTTP server (``http.server`` in a thread), written independently of freshtoken's DPoP
code: the proof's signature is checked with the JWK the proof carries, the thumbprint is computed
here from RFC 7638's text, and every claim is compared with what RFC 9449 §4.3 asks. Until
``freshtoken.testing.AuthorizationServer`` validates DPoP itself, the grant tests run against this.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jkt(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: the required members, sorted, compact JSON, SHA-256, base64url."""
    required = {
        "EC": ["crv", "kty", "x", "y"],
        "RSA": ["e", "kty", "n"],
        "OKP": ["crv", "kty", "x"],
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    text = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode()).digest())


class ProofError(Exception):
    pass


@dataclass
class Behaviour:
    """What the server does; tests change it between requests."""

    nonce_required: bool = False
    #: Issue a new nonce with every answer (success included), as nonce-rotating servers do.
    rotate_on_success: bool = False
    #: Never accept a proof's nonce (each demand names a new one).
    never_accept: bool = False
    token_type: str = "DPoP"
    #: Put this jkt into the access token's cnf instead of the proof key's thumbprint.
    wrong_jkt: bool = False
    #: Answer this many token requests with 503 first.
    unavailable: int = 0
    expires_in: int = 3600
    resource_nonce_required: bool = False


@dataclass
class Recorder:
    token_requests: int = 0
    nonce_demands: int = 0
    proofs: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    resource_ok: int = 0
    resource_errors: list[str] = field(default_factory=list)
    forms: list[dict[str, str]] = field(default_factory=list)


class DPoPServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.seen = Recorder()
        self.nonce = secrets.token_urlsafe(8)
        self.resource_nonce = secrets.token_urlsafe(8)
        self._jtis: set[str] = set()
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # access token -> jkt
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                server._token(self, dict(parse_qsl(body)))

            def do_GET(self) -> None:
                server._resource(self)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self.token_url = f"http://127.0.0.1:{self.port}/token"
        self.resource_url = f"http://127.0.0.1:{self.port}/api/items"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> DPoPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # -- verification ----------------------------------------------------------------------

    def verify(
        self, proof: str | None, method: str, url: str, *, nonce: str | None, ath: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not proof or proof.count(".") != 2:
            raise ProofError("no DPoP proof")
        header = jwt.get_unverified_header(proof)
        if header.get("typ") != "dpop+jwt":
            raise ProofError("typ")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk or "p" in jwk:
            raise ProofError("jwk must be a public key")
        key = jwt.PyJWK(jwk, algorithm=header["alg"])
        claims = jwt.decode(proof, key.key, algorithms=[header["alg"]])
        if claims.get("htm") != method or claims.get("htu") != url:
            raise ProofError(f"htm/htu {claims.get('htm')} {claims.get('htu')}")
        if abs(claims["iat"] - time.time()) > 60:
            raise ProofError("iat")
        with self._lock:
            if claims["jti"] in self._jtis:
                raise ProofError("jti replayed")
            self._jtis.add(claims["jti"])
        if ath is not None and claims.get("ath") != ath:
            raise ProofError("ath")
        if nonce is not None and claims.get("nonce") != nonce:
            raise ProofError("use_dpop_nonce")
        return header, claims

    # -- endpoints -------------------------------------------------------------------------

    def _answer(
        self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], **headers: str
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(data)

    def _token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        behaviour = self.behaviour
        with self._lock:
            self.seen.token_requests += 1
            self.seen.forms.append(form)
            if behaviour.unavailable > 0:
                behaviour.unavailable -= 1
                unavailable = True
            else:
                unavailable = False
        proof = handler.headers.get("DPoP")
        try:
            header, claims = self.verify(proof, "POST", self.token_url, nonce=None, ath=None)
        except (ProofError, jwt.PyJWTError, KeyError, ValueError) as error:
            self._answer(
                handler, 400, {"error": "invalid_dpop_proof", "error_description": str(error)}
            )
            return
        self.seen.proofs.append(claims)
        self.seen.headers.append(header)
        if unavailable:
            self._answer(handler, 503, {"error": "temporarily_unavailable"})
            return
        if behaviour.nonce_required and (
            behaviour.never_accept or claims.get("nonce") != self.nonce
        ):
            with self._lock:
                self.seen.nonce_demands += 1
                if behaviour.never_accept:
                    self.nonce = secrets.token_urlsafe(8)
            self._answer(
                handler,
                400,
                {"error": "use_dpop_nonce", "error_description": "a nonce is required"},
                DPoP_Nonce=self.nonce,
            )
            return
        thumb = "x" * 43 if behaviour.wrong_jkt else jkt(header["jwk"])
        access = jwt.encode(
            {"sub": "client", "cnf": {"jkt": thumb}, "jti": secrets.token_hex(8)},
            "server-secret-of-32-bytes-or-more!",
            algorithm="HS256",
        )
        self._tokens[access] = thumb
        extra: dict[str, str] = {}
        if behaviour.rotate_on_success:
            self.nonce = secrets.token_urlsafe(8)
            extra["DPoP_Nonce"] = self.nonce
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": behaviour.token_type,
            "expires_in": behaviour.expires_in,
        }
        self._answer(handler, 200, body, **extra)

    def _resource(self, handler: BaseHTTPRequestHandler) -> None:
        authorization = handler.headers.get("Authorization", "")
        scheme, _, access = authorization.partition(" ")
        url = self.resource_url if handler.path.startswith("/api/items") else "?"
        try:
            if scheme != "DPoP" or access not in self._tokens:
                raise ProofError("not a DPoP token of ours")
            ath = b64url(hashlib.sha256(access.encode()).digest())
            nonce = self.resource_nonce if self.behaviour.resource_nonce_required else None
            header, _ = self.verify(handler.headers.get("DPoP"), "GET", url, nonce=nonce, ath=ath)
            if jkt(header["jwk"]) != self._tokens[access]:
                raise ProofError("the proof key is not the token's key")
        except (ProofError, jwt.PyJWTError, KeyError, ValueError) as error:
            self.seen.resource_errors.append(str(error))
            if str(error) == "use_dpop_nonce":
                self._answer(
                    handler,
                    401,
                    {"error": "use_dpop_nonce"},
                    WWW_Authenticate='DPoP error="use_dpop_nonce"',
                    DPoP_Nonce=self.resource_nonce,
                )
            else:
                self._answer(handler, 401, {"error": "invalid_token"})
            return
        self.seen.resource_ok += 1
        self._answer(handler, 200, {"items": []})


@contextmanager
def running() -> Iterator[DPoPServer]:
    with DPoPServer() as server:
        yield server
