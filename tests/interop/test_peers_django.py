"""The django-oauth-toolkit peer behaves as the freshtoken interop tests assume (plain httpx).

These tests pin the peer, not freshtoken: when one fails, the harness is wrong, and the
freshtoken interop tests built on it would prove nothing.
"""

from __future__ import annotations

import httpx
import pytest

from .peers import DjangoOAuthToolkitPeer, PeerClient, basic_authorization

pytestmark = pytest.mark.interop


def _basic(client: PeerClient) -> dict[str, str]:
    assert client.client_secret is not None
    return {"Authorization": basic_authorization(client.client_id, client.client_secret)}


def _post(
    peer: DjangoOAuthToolkitPeer, form: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(peer.token_endpoint, data=form, headers=headers, timeout=10)


def test_client_credentials_with_form_encoded_basic_auth_and_a_non_ascii_secret(
    dot_peer: DjangoOAuthToolkitPeer,
) -> None:
    client = dot_peer.client_credentials_client

    response = _post(dot_peer, {"grant_type": "client_credentials"}, headers=_basic(client))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == dot_peer.access_token_ttl
    assert body["scope"] == " ".join(dot_peer.scopes)
    assert "refresh_token" not in body


def test_client_credentials_with_client_secret_post(dot_peer: DjangoOAuthToolkitPeer) -> None:
    client = dot_peer.client_credentials_client
    assert client.client_secret is not None

    response = _post(
        dot_peer,
        {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "scope": "read",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read"


def test_a_wrong_secret_is_invalid_client_401(dot_peer: DjangoOAuthToolkitPeer) -> None:
    client = dot_peer.client_credentials_client

    response = _post(
        dot_peer,
        {"grant_type": "client_credentials"},
        headers={"Authorization": basic_authorization(client.client_id, "wrong")},
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_an_unknown_scope_is_invalid_scope_400(dot_peer: DjangoOAuthToolkitPeer) -> None:
    client = dot_peer.client_credentials_client

    response = _post(
        dot_peer,
        {"grant_type": "client_credentials", "scope": dot_peer.unknown_scope},
        headers=_basic(client),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_a_grant_the_application_does_not_allow_is_unauthorized_client_400(
    dot_peer: DjangoOAuthToolkitPeer,
) -> None:
    client = dot_peer.code_only_client

    response = _post(dot_peer, {"grant_type": "client_credentials"}, headers=_basic(client))

    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


def test_a_wrong_password_is_invalid_grant(dot_peer: DjangoOAuthToolkitPeer) -> None:
    response = _post(
        dot_peer,
        {"grant_type": "password", "username": dot_peer.user.username, "password": "wrong"},
        headers=_basic(dot_peer.password_client),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_the_password_grant_gives_a_refresh_token_that_rotates_and_dies_when_reused(
    dot_peer: DjangoOAuthToolkitPeer,
) -> None:
    client = dot_peer.password_client
    first = _post(
        dot_peer,
        {
            "grant_type": "password",
            "username": dot_peer.user.username,
            "password": dot_peer.user.password,
        },
        headers=_basic(client),
    )
    assert first.status_code == 200, first.text
    assert first.json()["expires_in"] == dot_peer.access_token_ttl
    first_refresh = first.json()["refresh_token"]

    second = _post(
        dot_peer,
        {"grant_type": "refresh_token", "refresh_token": first_refresh},
        headers=_basic(client),
    )
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first_refresh
    assert second.json()["access_token"] != first.json()["access_token"]

    reused = _post(
        dot_peer,
        {"grant_type": "refresh_token", "refresh_token": first_refresh},
        headers=_basic(client),
    )
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"

    third = _post(
        dot_peer,
        {"grant_type": "refresh_token", "refresh_token": second.json()["refresh_token"]},
        headers=_basic(client),
    )
    assert third.status_code == 200, third.text
