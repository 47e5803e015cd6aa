"""Failures of the token endpoint, injected into the real local server: what is retried, how
often (asserted on the server's counters), and what reaches the caller."""

from __future__ import annotations

import json

import pytest

import freshtoken as ft
from freshtoken._oauth.grants import ClientCredentials, RefreshTokenGrant
from freshtoken.testing import AuthorizationServer, Client, FakeClock

from .conftest import FAST, GETTERS, Getter, get_sync


@pytest.fixture
def client(server: AuthorizationServer) -> Client:
    return server.add_client()


def grant_for(server: AuthorizationServer, client: Client, **options: object) -> ClientCredentials:
    return ClientCredentials(
        server.token_url,
        client.client_id,
        client.client_secret,
        **options,  # type: ignore[arg-type]
    )


# -- transient failures are retried, up to the limit and no more --------------------------------


@GETTERS
def test_a_5xx_burst_shorter_than_the_attempt_limit_is_ridden_out(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(status=503, times=2)
    assert get(grant_for(server, client))
    assert server.token_requests == 3
    assert server.tokens_issued == 1


@GETTERS
def test_a_5xx_burst_longer_than_the_attempt_limit_ends_in_endpoint_unavailable(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(status=500, times=10)
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get(grant_for(server, client))
    assert server.token_requests == 3
    error = caught.value
    assert error.status == 500
    assert error.retry_after is not None
    assert "server_error" in str(error)
    assert "gave up after 3 attempts" in str(error)


def test_the_attempt_limit_is_a_grant_parameter(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(status=502, times=10)
    with pytest.raises(ft.TokenEndpointUnavailable):
        get_sync(grant_for(server, client, max_attempts=5))
    assert server.token_requests == 5


@GETTERS
def test_429_with_retry_after_is_waited_out(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(status=429, retry_after=0.05, times=1)
    assert get(grant_for(server, client))
    assert server.token_requests == 2


def test_429_with_an_http_date_retry_after_is_waited_out(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(status=429, retry_after=1, retry_after_format="http-date", times=1)
    policy = ft.RefreshPolicy(backoff_initial=0.001, backoff_max=0.005, max_retry_after=2.0)
    with ft.TokenManager(grant_for(server, client), policy=policy) as tokens:
        assert tokens.get()
    assert server.token_requests == 2


def test_retry_after_over_the_cap_ends_the_fetch_at_once(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(status=429, retry_after=120, times=1)
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(grant_for(server, client))
    assert server.token_requests == 1
    assert caught.value.retry_after == 120
    assert caught.value.status == 429


def test_retrying_stops_at_the_deadline(server: AuthorizationServer, client: Client) -> None:
    """With no usable token, callers wait at most policy.max_wait: a Retry-After beyond it ends
    the fetch now instead of sleeping past it."""
    server.inject(status=503, retry_after=0.3, times=1)
    policy = ft.RefreshPolicy(
        backoff_initial=0.001, backoff_max=0.005, max_retry_after=1.0, max_wait=0.2
    )
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(grant_for(server, client), policy=policy)
    assert server.token_requests == 1
    assert "deadline" in str(caught.value)
    assert caught.value.retry_after == pytest.approx(0.3)


@GETTERS
def test_temporarily_unavailable_in_a_400_is_retried(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(
        status=400,
        body='{"error": "temporarily_unavailable"}',
        content_type="application/json",
        times=1,
    )
    assert get(grant_for(server, client))
    assert server.token_requests == 2


@GETTERS
def test_dropped_connections_are_retried(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(drop=True, times=2)
    assert get(grant_for(server, client))
    assert server.token_requests == 3


def test_dropped_connections_beyond_the_limit_name_the_failure(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(drop=True, times=5)
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(grant_for(server, client))
    assert server.token_requests == 3
    assert "connection broke" in str(caught.value)
    assert caught.value.status is None


@GETTERS
def test_a_slow_response_times_out_and_the_retry_succeeds(
    server: AuthorizationServer, client: Client, get: Getter
) -> None:
    server.inject(latency=1.0, times=1)
    assert get(grant_for(server, client, timeout=0.2))
    assert server.token_requests == 2


def test_timeouts_beyond_the_limit_end_in_endpoint_unavailable(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(latency=0.5, times=2)
    with (
        pytest.raises(ft.TokenEndpointUnavailable) as caught,
        ft.TokenManager(
            grant_for(server, client, timeout=0.1, max_attempts=2), policy=FAST
        ) as tokens,
    ):
        tokens.get()
    assert server.token_requests == 2
    assert "timed out" in str(caught.value)


def test_a_slow_response_within_the_timeout_is_just_slow(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(latency=0.2, times=1)
    with ft.TokenManager(grant_for(server, client, timeout=5.0), policy=FAST) as tokens:
        assert tokens.get()
    assert server.token_requests == 1


def test_an_unreachable_endpoint_is_endpoint_unavailable() -> None:
    with AuthorizationServer() as stopped:
        url = stopped.token_url
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(ClientCredentials(url, "cid", "secret"))
    assert "could not connect" in str(caught.value)


# -- bodies that are not token responses ---------------------------------------------------------


def test_an_html_error_page_from_a_proxy_is_retried_then_reported_with_an_excerpt(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(
        status=502,
        body="<html><title>Bad Gateway</title></html>",
        content_type="text/html",
        times=5,
    )
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(grant_for(server, client))
    assert server.token_requests == 3
    assert caught.value.status == 502
    assert "text/html" in str(caught.value)
    assert "Bad Gateway" in str(caught.value)


@pytest.mark.parametrize("status", [200, 400, 401])
def test_an_html_body_is_a_token_response_error_with_status_and_excerpt(
    server: AuthorizationServer, client: Client, status: int
) -> None:
    server.inject(
        status=status,
        body="<html><body>Sign in first</body></html>",
        content_type="text/html; charset=utf-8",
    )
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(grant_for(server, client))
    assert server.token_requests == 1
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    assert "Sign in first" in str(caught.value)


def test_malformed_json_is_a_token_response_error_and_not_retried(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(body='{"access_token": "abc", "token_type": ', content_type="application/json")
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(grant_for(server, client))
    assert server.token_requests == 1
    assert "not valid JSON" in str(caught.value)
    assert caught.value.status == 200


def test_a_real_token_response_with_a_wrong_content_type_is_refused_without_quoting_it(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(content_type="text/plain")
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(grant_for(server, client))
    message = str(caught.value)
    assert "text/plain" in message
    assert "eyJ" not in message
    assert "access_token" not in message


def test_a_json_charset_parameter_is_accepted(server: AuthorizationServer, client: Client) -> None:
    server.inject(content_type="application/json; charset=utf-8")
    with ft.TokenManager(grant_for(server, client), policy=FAST) as tokens:
        assert tokens.get()


def test_a_response_over_one_mebibyte_is_refused(
    server: AuthorizationServer, client: Client
) -> None:
    padding = "x" * (1024 * 1024 + 10)
    server.inject(
        body=json.dumps({"access_token": "abc", "padding": padding}),
        content_type="application/json",
    )
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(grant_for(server, client))
    assert "size limit" in str(caught.value)
    assert server.token_requests == 1


def test_an_error_status_with_json_but_no_error_code_is_a_token_response_error(
    server: AuthorizationServer, client: Client
) -> None:
    server.inject(status=403, body='{"message": "forbidden"}', content_type="application/json")
    with pytest.raises(ft.TokenResponseError) as caught:
        get_sync(grant_for(server, client))
    assert caught.value.status == 403


# -- non-retryable errors: once per cool-down, not once per call ---------------------------


def _unauthorized_client(server: AuthorizationServer) -> ft.TokenSource:
    client = server.add_client(grant_types=["password"])
    return grant_for(server, client)


def _invalid_scope(server: AuthorizationServer) -> ft.TokenSource:
    client = server.add_client(scopes=["read"])
    return grant_for(server, client, scope="admin")


def _invalid_client(server: AuthorizationServer) -> ft.TokenSource:
    client = server.add_client()
    return ClientCredentials(server.token_url, client.client_id, "wrong-secret")


def _invalid_grant(server: AuthorizationServer) -> ft.TokenSource:
    client = server.add_client()
    return RefreshTokenGrant(server.token_url, "unknown", client.client_id, client.client_secret)


def _injected(code: str, status: int = 400):  # type: ignore[no-untyped-def]
    def make(server: AuthorizationServer) -> ft.TokenSource:
        server.inject(
            status=status, body=json.dumps({"error": code}), content_type="application/json"
        )
        return grant_for(server, server.add_client())

    return make


@pytest.mark.parametrize(
    ("code", "make"),
    [
        ("invalid_client", _invalid_client),
        ("invalid_grant", _invalid_grant),
        ("unauthorized_client", _unauthorized_client),
        ("invalid_scope", _invalid_scope),
        ("unsupported_grant_type", _injected("unsupported_grant_type")),
        ("invalid_request", _injected("invalid_request")),
        ("invalid_client", _injected("invalid_client", 200)),
    ],
)
def test_a_non_retryable_error_is_sent_once_per_cooldown_not_once_per_call(
    server: AuthorizationServer, code: str, make: object
) -> None:
    clock = FakeClock()
    source = make(server)  # type: ignore[operator]
    with ft.TokenManager(source, policy=FAST, clock=clock) as tokens:
        for _ in range(5):
            with pytest.raises(ft.OAuthError) as caught:
                tokens.get()
            assert caught.value.error == code
        assert server.token_requests == 1
        clock.advance(FAST.error_cooldown - 0.001)
        with pytest.raises(ft.OAuthError):
            tokens.get()
        assert server.token_requests == 1
        clock.advance(0.001)
        with pytest.raises(ft.OAuthError):
            tokens.get()
        assert server.token_requests == 2


def test_an_oauth_error_carries_description_uri_and_status(server: AuthorizationServer) -> None:
    server.inject(
        status=401,
        body=json.dumps(
            {
                "error": "invalid_client",
                "error_description": "unknown client",
                "error_uri": "https://docs.example.com/errors",
            }
        ),
        content_type="application/json",
    )
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(ClientCredentials(server.token_url, "c", "s"))
    error = caught.value
    assert (error.error, error.description, error.uri, error.status) == (
        "invalid_client",
        "unknown client",
        "https://docs.example.com/errors",
        401,
    )
    assert server.token_requests == 1
