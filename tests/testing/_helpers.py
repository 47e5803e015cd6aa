"""Shared helpers for the freshtoken.testing suite: plain httpx, never freshtoken itself."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt

from freshtoken.testing import AuthorizationServer, Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An RFC 6749 §2.3.1 Basic header: form-encode each part, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def client_auth(client: Client) -> dict[str, str]:
    assert client.client_secret is not None
    return basic(client.client_id, client.client_secret)


def token_request(
    http: httpx.Client,
    server: AuthorizationServer,
    data: dict[str, Any],
    *,
    client: Client | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a form to the token endpoint, authenticating ``client`` with Basic if given."""
    all_headers = dict(headers or {})
    if client is not None:
        all_headers.update(client_auth(client))
    return http.post(server.token_url, data=data, headers=all_headers)


def get_token(http: httpx.Client, server: AuthorizationServer, client: Client, **data: Any) -> str:
    response = token_request(
        http, server, {"grant_type": "client_credentials", **data}, client=client
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assertion(
    key: Any,
    algorithm: str,
    *,
    iss: str,
    sub: str | None = None,
    aud: str | list[str],
    lifetime: float = 60,
    jti: str | None = None,
    **extra: Any,
) -> str:
    """An RFC 7523 JWT: signed client or grant assertion."""
    now = time.time()
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": iss if sub is None else sub,
        "aud": aud,
        "iat": int(now),
        "exp": now + lifetime,
        "jti": jti or secrets.token_hex(8),
        **extra,
    }
    return jwt.encode(claims, key, algorithm=algorithm)


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded
