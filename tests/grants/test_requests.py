"""The token requests each grant builds, read off the flow before anything is sent (sans-I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, unquote_plus

import jwt
import pytest

import freshtoken as ft
from freshtoken._oauth.client_auth import ClientSecretJWT, basic_authorization
from freshtoken._oauth.grants import (
    ClientCredentials,
    JWTBearerGrant,
    PasswordGrant,
    RefreshTokenGrant,
    TokenExchange,
)
from freshtoken._oauth.http import HttpRequest
from freshtoken.testing import FakeClock

from .conftest import context

URL = "https://auth.example.com/oauth/token"


def first_request(source: ft.TokenSource, current: ft.Token | None = None) -> HttpRequest:
    flow = source._flow(context(source, current=current))  # type: ignore[attr-defined]
    request = next(flow)
    flow.close()
    assert isinstance(request, HttpRequest)
    return request


def form(request: HttpRequest) -> dict[str, list[str]]:
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.body.decode("ascii"), keep_blank_values=True)


@pytest.mark.parametrize(
    "secret",
    ["plain", "with:colon", "with+plus", "with%percent", "with space", "nön-ascii-秘密", "a/b=c&d"],
)
def test_basic_auth_form_encodes_id_and_secret_before_base64(secret: str) -> None:
    header = basic_authorization("my:client id", secret)
    scheme, encoded = header.split(" ")
    client_id, _, sent_secret = base64.b64decode(encoded).decode("ascii").partition(":")
    assert scheme == "Basic"
    assert unquote_plus(client_id) == "my:client id"
    assert unquote_plus(sent_secret) == secret
    assert ":" not in sent_secret  # the separator is unambiguous


def test_client_credentials_request_carries_grant_scope_audience_resource_and_params() -> None:
    grant = ClientCredentials(
        URL,
        "cid",
        "s3cret",
        scope=["read", "write"],
        audience="https://api.example.com",
        resource=["https://a.example.com/", "https://b.example.com/"],
        params={"tenant": "t1"},
    )
    request = first_request(grant)
    assert (request.method, request.url) == ("POST", URL)
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == basic_authorization("cid", "s3cret")
    assert form(request) == {
        "grant_type": ["client_credentials"],
        "scope": ["read write"],
        "audience": ["https://api.example.com"],
        "resource": ["https://a.example.com/", "https://b.example.com/"],
        "tenant": ["t1"],
    }


def test_client_secret_post_sends_the_credentials_in_the_body() -> None:
    request = first_request(ClientCredentials(URL, "cid", "s3cret", auth="client_secret_post"))
    assert "Authorization" not in request.headers
    assert form(request)["client_id"] == ["cid"]
    assert form(request)["client_secret"] == ["s3cret"]


def test_auth_none_sends_only_the_client_id() -> None:
    request = first_request(ClientCredentials(URL, "public", auth="none"))
    assert "Authorization" not in request.headers
    assert form(request) == {"grant_type": ["client_credentials"], "client_id": ["public"]}


def test_client_secret_jwt_sends_a_fresh_hs256_assertion_for_the_token_endpoint() -> None:
    grant = ClientCredentials(URL, "cid", "short", auth=ClientSecretJWT())
    first, second = form(first_request(grant)), form(first_request(grant))
    assert first["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    assertion = first["client_assertion"][0]
    signing_input, _, signature = assertion.rpartition(".")
    expected = hmac.new(b"short", signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    assert jwt.get_unverified_header(assertion)["alg"] == "HS256"
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["aud"] == URL
    assert claims["iss"] == claims["sub"] == "cid"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["iat"] == int(FakeClock().time())  # the context's wall clock
    other = jwt.decode(first["client_assertion"][0], options={"verify_signature": False})
    again = jwt.decode(second["client_assertion"][0], options={"verify_signature": False})
    assert other["jti"] != again["jti"]


def test_refresh_token_grant_prefers_the_newest_refresh_token_of_the_context() -> None:
    grant = RefreshTokenGrant(URL, "rt-initial", "cid", "s3cret", scope="read")
    assert form(first_request(grant))["refresh_token"] == ["rt-initial"]
    newest = ft.Token(access_token="at", refresh_token="rt-newest")
    sent = form(first_request(grant, current=newest))
    assert sent["grant_type"] == ["refresh_token"]
    assert sent["refresh_token"] == ["rt-newest"]
    assert sent["scope"] == ["read"]


def test_password_grant_first_sends_the_password() -> None:
    grant = PasswordGrant(URL, "alice", "pa:ss+wörd", "cid", "s3cret")
    sent = form(first_request(grant))
    assert sent["grant_type"] == ["password"]
    assert sent["username"] == ["alice"]
    assert sent["password"] == ["pa:ss+wörd"]


def test_password_grant_uses_a_known_refresh_token_instead_of_the_password() -> None:
    grant = PasswordGrant(URL, "alice", "password", "cid", "s3cret")
    sent = form(first_request(grant, current=ft.Token(access_token="at", refresh_token="rt")))
    assert sent["grant_type"] == ["refresh_token"]
    assert "password" not in sent


def test_jwt_bearer_calls_the_assertion_callable_for_each_request() -> None:
    calls: list[int] = []

    def assertion() -> str:
        calls.append(1)
        return f"assertion-{len(calls)}"

    grant = JWTBearerGrant(URL, assertion)
    assert form(first_request(grant)) == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "assertion": ["assertion-1"],
    }
    assert form(first_request(grant))["assertion"] == ["assertion-2"]


def test_jwt_bearer_with_a_client_authenticates_it() -> None:
    request = first_request(JWTBearerGrant(URL, "a.b.c", "cid", "s3cret"))
    assert request.headers["Authorization"] == basic_authorization("cid", "s3cret")


def test_token_exchange_sends_subject_actor_and_requested_types() -> None:
    grant = TokenExchange(
        URL,
        "subject",
        "access_token",
        "cid",
        "s3cret",
        actor_token=lambda: "actor",
        actor_token_type="urn:ietf:params:oauth:token-type:jwt",
        requested_token_type="jwt",
        audience=["svc-a", "svc-b"],
        resource="https://api.example.com/",
        scope="read",
    )
    assert form(first_request(grant)) == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_token": ["subject"],
        "subject_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "actor_token": ["actor"],
        "actor_token_type": ["urn:ietf:params:oauth:token-type:jwt"],
        "requested_token_type": ["urn:ietf:params:oauth:token-type:jwt"],
        "scope": ["read"],
        "audience": ["svc-a", "svc-b"],
        "resource": ["https://api.example.com/"],
    }


def test_request_timeout_is_the_grant_timeout_capped_by_the_deadline() -> None:
    grant = ClientCredentials(URL, "cid", "s3cret", timeout=2.5)
    request = first_request(grant)
    assert request.timeout == 2.5
    assert request.max_time == pytest.approx(30.0)
