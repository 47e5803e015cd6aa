"""Small units the HTTP-level tests do not reach naturally."""

from __future__ import annotations

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import freshtoken.testing
from freshtoken.testing import AuthorizationServer, Fault
from freshtoken.testing._clientauth import decode_basic
from freshtoken.testing._keys import unverified_claims
from tests.testing._helpers import bearer, token_request


def test_lazy_package_attributes() -> None:
    assert "AuthorizationServer" in dir(freshtoken.testing)
    assert freshtoken.testing.FakeClock is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = freshtoken.testing.Nope


def test_decode_basic_rejects_other_schemes() -> None:
    assert decode_basic("Bearer abc") is None
    assert decode_basic("basic YTpi") == ("a", "b")


def test_claims_must_be_a_json_object() -> None:
    not_json = jwt.PyJWS().encode(b"not json", "k" * 32, algorithm="HS256")
    with pytest.raises(jwt.DecodeError, match="not JSON"):
        unverified_claims(not_json)
    a_list = jwt.PyJWS().encode(b"[1, 2]", "k" * 32, algorithm="HS256")
    with pytest.raises(jwt.DecodeError, match="not a JSON object"):
        unverified_claims(a_list)


def test_private_key_object_registers_its_public_half(server: AuthorizationServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    client = server.add_client(auth_methods="private_key_jwt", public_key=key)  # type: ignore[arg-type]
    assert client.public_key is not None
    assert client.public_key.startswith("-----BEGIN PUBLIC KEY-----")


def test_unknown_status_phrase_and_fault_object(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client()
    server.inject(Fault(status=599), times=1)
    response = token_request(
        http, server, {"grant_type": "client_credentials"}, client=server.client
    )
    assert response.status_code == 599
    assert response.reason_phrase == "Unknown"


def test_issue_token_defaults_to_the_client_scopes(
    server: AuthorizationServer, http: httpx.Client
) -> None:
    server.add_client(scopes=["a", "b"])
    token = server.issue_token()
    assert http.get(server.resource_url, headers=bearer(token)).json()["scope"] == "a b"
    assert server.issue_token(client_id="unregistered")
    with AuthorizationServer() as other:
        assert server.revoke(other.issue_token()) is False


def test_revocation_needs_a_token(server: AuthorizationServer, http: httpx.Client) -> None:
    client = server.add_client()
    assert client.client_secret is not None
    response = http.post(
        server.revocation_url, data={"token": ""}, auth=(client.client_id, client.client_secret)
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
