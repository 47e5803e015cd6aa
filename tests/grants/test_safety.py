"""Construction-time checks, plain-http refusal, and secrets kept out of reprs, logs, messages
and store keys."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import freshtoken as ft
from freshtoken._oauth.client_auth import ClientSecretJWT, PrivateKeyJWT
from freshtoken._oauth.grants import (
    ClientCredentials,
    JWTBearerGrant,
    PasswordGrant,
    RefreshTokenGrant,
    TokenExchange,
)
from freshtoken.testing import AuthorizationServer

from .conftest import FAST, get_sync

SECRET = "S3cr3t-client-value"
PASSWORD = "P4ssw0rd-user-value"
REFRESH = "R3fresh-token-value"
ASSERTION = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.Assertion-value"
SUBJECT = "Subject-token-value"
ALL_SECRETS = (SECRET, PASSWORD, REFRESH, ASSERTION, SUBJECT)


def every_grant(url: str | None = None, **options: Any) -> list[ft.TokenSource]:
    return [
        ClientCredentials(url, "cid", SECRET, **options),
        RefreshTokenGrant(url, REFRESH, "cid", SECRET, **options),
        PasswordGrant(url, "alice", PASSWORD, "cid", SECRET, **options),
        JWTBearerGrant(url, ASSERTION, "cid", SECRET, **options),
        TokenExchange(url, SUBJECT, "access_token", "cid", SECRET, **options),
    ]


GRANT_CLASSES = pytest.mark.parametrize(
    "make",
    [
        lambda url, **o: ClientCredentials(url, "cid", SECRET, **o),
        lambda url, **o: RefreshTokenGrant(url, REFRESH, "cid", SECRET, **o),
        lambda url, **o: PasswordGrant(url, "alice", PASSWORD, "cid", SECRET, **o),
        lambda url, **o: JWTBearerGrant(url, ASSERTION, **o),
        lambda url, **o: TokenExchange(url, SUBJECT, "jwt", "cid", SECRET, **o),
    ],
    ids=["client_credentials", "refresh_token", "password", "jwt_bearer", "token_exchange"],
)


# -- plain http ------------------------------------------------------------------------------


@GRANT_CLASSES
@pytest.mark.parametrize("url", ["http://auth.example.com/token", "http://10.0.0.1/token"])
def test_plain_http_to_a_remote_host_is_refused_at_construction(make: Any, url: str) -> None:
    with pytest.raises(ft.ConfigurationError, match="plain http"):
        make(url)
    with pytest.raises(ft.ConfigurationError, match="plain http"):
        make(None, issuer=url.removesuffix("/token"))


@GRANT_CLASSES
def test_allow_insecure_http_opts_in(make: Any) -> None:
    assert make("http://auth.example.com/token", allow_insecure_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/token",
        "http://127.9.9.9/token",
        "http://[::1]:8080/token",
        "http://localhost/token",
        "http://LOCALHOST:1/token",
        "https://auth.example.com/token",
    ],
)
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    assert ClientCredentials(url, "cid", SECRET)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://auth.example.com/token", "absolute http"),
        ("/token", "absolute http"),
        ("https://user:pw@auth.example.com/token", "credentials"),
        ("https://auth.example.com/token#x", "fragment"),
        ("https://auth.example.com/to ken", "spaces"),
        ("https://auth.example.com:99999/token", "not a valid URL"),
        ("", "non-empty"),
        (42, "non-empty"),
    ],
)
def test_bad_token_urls_are_configuration_errors(url: Any, problem: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=problem):
        ClientCredentials(url, "cid", SECRET)


def test_credentials_in_a_url_do_not_reach_the_message() -> None:
    with pytest.raises(ft.ConfigurationError) as caught:
        ClientCredentials("https://user:hunter2@auth.example.com/token", "cid", SECRET)
    assert "hunter2" not in str(caught.value)


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"client_secret": None}, "needs a client_secret"),
        ({"client_secret": None, "auth": "client_secret_post"}, "needs a client_secret"),
        ({"client_secret": None, "auth": ClientSecretJWT()}, "needs a client_secret"),
        ({"auth": "none"}, "drop client_secret"),
        ({"auth": "client_secret_jwt"}, "not a client authentication method"),
        ({"auth": 3}, "not a client authentication method"),
        ({"client_id": None}, "client_id is required"),
        ({"client_id": ""}, "client_id must be"),
        ({"client_secret": ""}, "client_secret must be"),
        ({"scope": 3}, "scope must be"),
        ({"scope": [b"read"]}, "scope must be"),
        ({"scope": 'read "quoted"'}, "RFC 6749"),
        ({"scope": {"read": 1}}, "scope must be"),
        ({"audience": [""]}, "audience must be"),
        ({"resource": "not-absolute"}, "RFC 8707"),
        ({"resource": "https://api.example.com/#frag"}, "RFC 8707"),
        ({"params": {"grant_type": "x"}}, "may not set 'grant_type'"),
        ({"params": {"x": 1}}, "must be a string"),
        ({"params": {"": "x"}}, "non-empty"),
        ({"params": ["x"]}, "mapping"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"key": ""}, "key"),
        ({"allow_insecure_http": "yes"}, "allow_insecure_http"),
        ({"issuer": "https://as.example.com"}, "exactly one"),
        ({"token_url": None}, "exactly one"),
    ],
)
def test_misconfiguration_is_refused_at_construction(kwargs: dict[str, Any], problem: str) -> None:
    arguments: dict[str, Any] = {
        "token_url": "https://as.example.com/token",
        "client_id": "cid",
        "client_secret": SECRET,
    }
    arguments.update(kwargs)
    with pytest.raises(ft.ConfigurationError, match=problem):
        ClientCredentials(**arguments)


def test_an_issuer_with_a_query_is_refused() -> None:
    with pytest.raises(ft.ConfigurationError, match="query"):
        ClientCredentials(
            issuer="https://as.example.com/?x=1", client_id="cid", client_secret=SECRET
        )


def test_a_secret_passed_as_auth_by_mistake_is_not_quoted() -> None:
    with pytest.raises(ft.ConfigurationError) as caught:
        ClientCredentials("https://as.example.com/t", "cid", SECRET, auth=SECRET)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda: RefreshTokenGrant("https://a.example.com/t", None, "cid", SECRET),
            "refresh_token",
        ),
        (lambda: PasswordGrant("https://a.example.com/t", "alice", "", "cid", SECRET), "password"),
        (
            lambda: PasswordGrant("https://a.example.com/t", None, PASSWORD, "cid", SECRET),
            "username",
        ),
        (lambda: JWTBearerGrant("https://a.example.com/t", 3), "assertion"),  # type: ignore[arg-type]
        (
            lambda: JWTBearerGrant("https://a.example.com/t", "a", client_secret=SECRET),
            "needs a client_id",
        ),
        (lambda: TokenExchange("https://a.example.com/t", SUBJECT, None), "subject_token_type"),
        (lambda: TokenExchange("https://a.example.com/t", SUBJECT, "bogus"), "URN"),
        (
            lambda: TokenExchange(
                "https://a.example.com/t", SUBJECT, "jwt", actor_token_type="jwt"
            ),
            "without actor_token",
        ),
        (
            lambda: TokenExchange("https://a.example.com/t", SUBJECT, "jwt", actor_token="a"),
            "actor_token_type",
        ),
    ],
)
def test_grant_specific_arguments_are_checked(make: Any, problem: str) -> None:
    with pytest.raises(ft.ConfigurationError, match=problem):
        make()


# -- reprs and keys ----------------------------------------------------------------------------


def test_reprs_show_where_and_who_never_secrets() -> None:
    grants = every_grant("https://as.example.com/token?tenant=secret-query")
    assert repr(grants[0]) == (
        "ClientCredentials(token_url='https://as.example.com/token', client_id='cid', "
        "auth='client_secret_basic')"
    )
    for grant in grants:
        for secret in (*ALL_SECRETS, "secret-query"):
            assert secret not in repr(grant)
            assert secret not in str(grant)
            assert secret not in grant.key
    by_issuer = ClientCredentials(
        issuer="https://as.example.com", client_id="c", client_secret=SECRET, scope="a b"
    )
    assert repr(by_issuer) == (
        "ClientCredentials(issuer='https://as.example.com', client_id='c', scope='a b', "
        "auth='client_secret_basic')"
    )


def test_auth_method_reprs_hold_no_key_material() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert (
        repr(PrivateKeyJWT(key, "ES256", key_id="k1"))
        == "PrivateKeyJWT(algorithm='ES256', key_id='k1')"
    )
    assert repr(ClientSecretJWT(SECRET)) == "ClientSecretJWT(audience=None)"


def test_keys_are_versioned_stable_and_tell_tokens_apart() -> None:
    url = "https://as.example.com/token"
    key = ClientCredentials(url, "cid", SECRET).key
    assert key.startswith("v1:client_credentials:")
    assert key == ClientCredentials(url, "cid", "another-secret").key
    others = {
        ClientCredentials(url, "other", SECRET).key,
        ClientCredentials(url, "cid", SECRET, scope="read").key,
        ClientCredentials(url, "cid", SECRET, audience="a").key,
        ClientCredentials(url, "cid", SECRET, resource="https://r.example.com").key,
        ClientCredentials("https://as2.example.com/token", "cid", SECRET).key,
        PasswordGrant(url, "alice", PASSWORD, "cid", SECRET).key,
        PasswordGrant(url, "bob", PASSWORD, "cid", SECRET).key,
    }
    assert key not in others
    assert len(others) == 7
    assert ClientCredentials(url, "cid", SECRET, key="mine").key == "mine"


# -- logs and messages ---------------------------------------------------------------------------


def test_no_secret_reaches_debug_logs_or_error_messages(
    server: AuthorizationServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = server.add_client(
        client_secret=SECRET,
        auth_methods=["client_secret_basic", "client_secret_post", "client_secret_jwt"],
        refresh_tokens=True,
    )
    server.add_user("alice", PASSWORD)
    messages: list[str] = []
    tokens_seen: list[str] = []

    def run(source: ft.TokenSource) -> None:
        with ft.TokenManager(source, policy=FAST) as tokens:
            try:
                token = tokens.get()
            except ft.FreshTokenError as error:
                messages.extend([str(error), repr(error)])
            else:
                tokens_seen.extend(filter(None, [token.access_token, token.refresh_token]))
                messages.extend([str(token), repr(token)])

    url = server.token_url
    run(ClientCredentials(url, client.client_id, SECRET))
    run(ClientCredentials(url, client.client_id, SECRET, auth="client_secret_post"))
    run(ClientCredentials(url, client.client_id, SECRET, auth=ClientSecretJWT()))
    password = PasswordGrant(url, "alice", PASSWORD, client.client_id, SECRET)
    run(password)
    run(password)  # now from the refresh token
    run(PasswordGrant(url, "alice", PASSWORD + "x", client.client_id, SECRET))
    run(RefreshTokenGrant(url, REFRESH, client.client_id, SECRET))
    run(JWTBearerGrant(url, ASSERTION, client.client_id, SECRET))
    run(TokenExchange(url, SUBJECT, "access_token", client.client_id, SECRET))
    run(ClientCredentials(url, client.client_id, SECRET + "x"))
    server.inject(status=503, times=3)
    run(ClientCredentials(url, client.client_id, SECRET))
    server.faults.clear()
    server.inject(content_type="text/plain", times=1)
    run(ClientCredentials(url, client.client_id, SECRET))

    assert tokens_seen
    logged = [record.getMessage() for record in caplog.records]
    assert any("POST" in line and "HTTP 200" in line for line in logged)
    for text in logged + messages:
        for secret in (*ALL_SECRETS, *tokens_seen):
            assert secret not in text


def test_a_failing_assertion_callable_is_reported_without_its_message(
    server: AuthorizationServer,
) -> None:
    def assertion() -> str:
        raise RuntimeError(f"could not sign with {SECRET}")

    with pytest.raises(ft.TokenRequestError) as caught:
        get_sync(JWTBearerGrant(server.token_url, assertion))
    assert "RuntimeError" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_an_assertion_callable_must_return_a_string(server: AuthorizationServer) -> None:
    with pytest.raises(ft.TokenRequestError, match="returned NoneType"):
        get_sync(JWTBearerGrant(server.token_url, lambda: None))  # type: ignore[arg-type]


def test_an_assertion_callable_may_raise_freshtoken_errors_as_they_are(
    server: AuthorizationServer,
) -> None:
    def assertion() -> str:
        raise ft.ConfigurationError("no signing key configured")

    with pytest.raises(ft.ConfigurationError, match="no signing key"):
        get_sync(JWTBearerGrant(server.token_url, assertion))
    assert server.token_requests == 0


def test_tls_verification_is_on_for_own_clients() -> None:
    grant = ClientCredentials("https://as.example.com/token", "cid", SECRET)
    try:
        client = grant._clients.sync_client()
        assert isinstance(client, httpx.Client)
        transport: Any = client._transport
        assert transport._pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
        assert client.follow_redirects is False
    finally:
        grant.close()


# -- a server that echoes what it was sent ----------------------------------------------------


@GRANT_CLASSES
def test_an_error_description_echoing_a_secret_shows_it_redacted(
    make: Any, server: AuthorizationServer
) -> None:
    """Some servers repeat the rejected value in ``error_description``: the message, the
    ``description`` attribute and the log never do."""
    echoed = " and ".join(f"'{secret}'" for secret in ALL_SECRETS)
    server.inject(
        status=400,
        body=json.dumps({"error": "invalid_grant", "error_description": f"rejected {echoed}"}),
        content_type="application/json",
    )
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(make(server.token_url))
    error = caught.value
    assert error.error == "invalid_grant"
    assert error.description is not None
    assert error.description.startswith("rejected '<redacted>'")
    for secret in ALL_SECRETS:
        assert secret not in str(error)
        assert secret not in repr(error)


@pytest.mark.parametrize(
    ("description", "shown"),
    [
        ("grant_type client_credentials is not allowed", None),
        ("INVALID_CLIENT_CREDENTIALS_GIVEN", None),
        ("token 3f9a8c7d6e5b4a3928170f1e2d3c4b5a expired", "token <redacted> expired"),
        ("bad assertion eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "bad assertion <redacted>"),
        ("Mixed_Case_Opaque_Value_X is unknown", "<redacted> is unknown"),
        ("line one\nline\ttwo\x00", "line one line two"),
        ("x" * 400, "x" * 300 + "…"),
    ],
)
def test_error_descriptions_keep_words_and_cut_token_like_runs(
    description: str, shown: str | None, server: AuthorizationServer
) -> None:
    server.inject(
        status=400,
        body=json.dumps({"error": "invalid_request", "error_description": description}),
        content_type="application/json",
    )
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(ClientCredentials(server.token_url, "cid", SECRET))
    assert caught.value.description == (description if shown is None else shown)


def test_a_secret_that_reads_like_a_word_is_still_cut_because_it_was_sent(
    server: AuthorizationServer,
) -> None:
    """The token-like heuristic keeps one-case words; the values the request sent are cut by
    value, so an echoed lower-case password is caught too (the client secret as well, although
    ``client_secret_basic`` sent it only inside the Authorization header)."""
    password, secret = "correcthorsebatterystaple", "lowercaseclientsecret"
    server.inject(
        status=400,
        body=json.dumps(
            {"error": "invalid_grant", "error_description": f"{password} / {secret} rejected"}
        ),
        content_type="application/json",
    )
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(PasswordGrant(server.token_url, "alice", password, "cid", secret))
    assert caught.value.description == "<redacted> / <redacted> rejected"


@GRANT_CLASSES
def test_an_unknown_keyword_is_a_type_error_naming_the_grant(make: Any) -> None:
    with pytest.raises(TypeError) as caught:
        make("https://as.example.com/token", scopes="read")  # "scope" misspelt
    name = type(make("https://as.example.com/token")).__name__
    assert str(caught.value) == f"{name}() got an unexpected keyword argument 'scopes'"


def test_an_error_uri_echoing_what_was_sent_shows_it_redacted_and_keeps_its_shape(
    server: AuthorizationServer,
) -> None:
    server.inject(
        status=400,
        body=json.dumps(
            {
                "error": "invalid_grant",
                "error_uri": f"https://as.example.com/errors/invalid_grant?rt={REFRESH}&cs={SECRET}",
            }
        ),
        content_type="application/json",
    )
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(RefreshTokenGrant(server.token_url, REFRESH, "cid", SECRET))
    assert caught.value.uri == (
        "https://as.example.com/errors/invalid_grant?rt=<redacted>&cs=<redacted>"
    )


# -- server-supplied strings: the error code, error_uri, and control characters --------------


def _refused_with(server: AuthorizationServer, body: dict[str, Any]) -> ft.OAuthError:
    server.inject(status=400, body=json.dumps(body), content_type="application/json", times=1)
    with pytest.raises(ft.OAuthError) as caught:
        get_sync(RefreshTokenGrant(server.token_url, REFRESH, "cid", SECRET))
    return caught.value


def test_an_error_code_echoing_a_secret_shows_it_redacted_in_message_and_log(
    server: AuthorizationServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    error = _refused_with(server, {"error": f"bad refresh_token {REFRESH} for secret {SECRET}"})
    assert error.error == "bad refresh_token <redacted> for secret <redacted>"
    for secret in (REFRESH, SECRET):
        assert secret not in str(error) + repr(error)
        assert secret not in caplog.text


@pytest.mark.parametrize(
    "code",
    [
        "invalid_grant\nFAKE LOG LINE: all good",
        "invalid\rgrant",
        "invalid\x1b[31mgrant",
        'say "quoted"',
        "back\\slash",
        "caf\u00e9",
    ],
    ids=["newline", "cr", "escape", "dquote", "backslash", "non-ascii"],
)
def test_an_error_code_outside_the_rfc_character_set_is_shown_as_invalid_not_quoted(
    server: AuthorizationServer, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    error = _refused_with(server, {"error": code})
    assert error.error == "<invalid error code>"
    assert code not in str(error)
    assert "FAKE LOG LINE" not in caplog.text
    for record in caplog.records:
        assert not any(ch in record.getMessage() for ch in "\r\n\x1b")


def test_an_error_uri_with_control_characters_is_dropped(server: AuthorizationServer) -> None:
    error = _refused_with(
        server, {"error": "invalid_grant", "error_uri": "https://as.example/e\nFAKE LOG LINE"}
    )
    assert error.error == "invalid_grant"
    assert error.uri is None


@pytest.mark.parametrize(
    "code", [f"down for {SECRET}", "temporarily_unavailable\nFAKE LOG LINE", "Mixed_Case1"]
)
def test_an_unavailable_endpoint_shows_only_word_like_error_codes(
    server: AuthorizationServer, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    server.inject(status=503, body=json.dumps({"error": code}), content_type="application/json")
    with pytest.raises(ft.TokenEndpointUnavailable) as caught:
        get_sync(RefreshTokenGrant(server.token_url, REFRESH, "cid", SECRET))
    message = str(caught.value)
    assert "<invalid error code>" in message
    for text in (message, caplog.text):
        assert SECRET not in text
        assert "FAKE LOG LINE" not in text
        assert code not in text
