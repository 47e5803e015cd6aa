"""GitHubActionsOIDC against a stand-in of the runner's ID-token endpoint (a real HTTP server).

The stand-in answers as GitHub's does: ``GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=<aud>`` with
``Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>`` returns ``{"count": 1, "value": <JWT>}``,
an ES256 ID token from ``https://token.actions.githubusercontent.com`` that the test authorization
server is told to trust (the federation the cloud providers do).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt
import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer

from .github_runner import ISSUER, REQUEST_TOKEN, SUBJECT, Runner
from .test_tokenfile import sub_of


def claims_of(value: str) -> dict[str, Any]:
    claims = jwt.decode(value, options={"verify_signature": False})
    assert isinstance(claims, dict)
    return claims


# -- the credential on its own -------------------------------------------------------------------


def test_asks_the_runner_with_its_bearer_token_and_audience_then_keeps_the_id_token(
    runner: Runner,
) -> None:
    source = ft.GitHubActionsOIDC(audience="api://freshtoken")
    first = source()
    assert claims_of(first)["aud"] == "api://freshtoken"
    assert claims_of(first)["iss"] == ISSUER
    assert source() == first and source() == first  # kept for its own lifetime
    assert source.fetches == 1
    (asked,) = runner.requests
    assert asked["authorization"] == f"Bearer {REQUEST_TOKEN}"
    assert asked["query"] == {"api-version": ["2.0"], "audience": ["api://freshtoken"]}


def test_without_an_audience_the_runner_chooses_it(runner: Runner) -> None:
    source = ft.GitHubActionsOIDC()
    assert claims_of(source())["aud"] == "https://github.com/freshtoken"
    assert "audience" not in runner.requests[0]["query"]


def test_an_id_token_close_to_its_exp_is_not_handed_out_again(runner: Runner) -> None:
    runner.lifetime = 0  # exp is now: inside the reuse margin from the start
    source = ft.GitHubActionsOIDC(audience="a")
    source()
    source()
    assert source.fetches == 2


@pytest.mark.parametrize(
    ("lifetime", "margin"), [(600.0, 60.0), (300.0, 60.0), (60.0, 30.0), (4.0, 2.0), (-1.0, 0.0)]
)
def test_reuse_margin(lifetime: float, margin: float) -> None:
    from freshtoken._oauth.github_oidc import reuse_margin

    assert reuse_margin(lifetime) == margin


# -- inside grants and as a source ---------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["get", "aget"])
def test_as_a_jwt_bearer_assertion_one_id_token_serves_several_token_requests(
    runner: Runner, use_async: bool
) -> None:
    with AuthorizationServer(token_lifetime=60) as server:
        server.add_issuer(ISSUER, runner.public_key)
        source = ft.GitHubActionsOIDC(audience=server.token_url)
        grant = ft.JWTBearerGrant(server.token_url, source)
        with ft.TokenManager(grant) as manager:

            async def three() -> list[ft.Token]:
                tokens = []
                for _ in range(3):
                    tokens.append(await manager.aget())
                    manager.invalidate(tokens[-1])
                return tokens

            if use_async:
                tokens = asyncio.run(three())
            else:
                tokens = []
                for _ in range(3):
                    tokens.append(manager.get())
                    manager.invalidate(tokens[-1])
        assert [sub_of(token) for token in tokens] == [SUBJECT] * 3
        assert server.token_requests == 3
        assert source.fetches == 1 and len(runner.requests) == 1


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_as_a_token_exchange_subject_token(runner: Runner, trusted: bool) -> None:
    """The GitHub Actions to cloud shape (GCP workload identity federation): the ID token is the
    subject token of an RFC 8693 exchange at a server that trusts the runner's issuer."""
    with AuthorizationServer(token_lifetime=60) as server:
        if trusted:
            server.add_issuer(ISSUER, runner.public_key)
        client = server.add_client()
        exchange = ft.TokenExchange(
            server.token_url,
            ft.GitHubActionsOIDC(audience=server.token_url),
            "id_token",
            client.client_id,
            client.client_secret,
        )
        with ft.TokenManager(exchange) as manager:
            if trusted:
                assert sub_of(manager.get()) == SUBJECT
            else:
                with pytest.raises(ft.OAuthError, match="subject_token issuer is not trusted"):
                    manager.get()
        assert len(runner.requests) == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["get", "aget"])
def test_as_a_token_source_each_new_token_is_a_new_id_token(
    runner: Runner, use_async: bool
) -> None:
    """The manager is the cache: a source that handed back a kept ID token would be asked
    again at once (its stale point is already behind it)."""
    source = ft.GitHubActionsOIDC(audience="api://x")
    with ft.TokenManager(source) as manager:

        async def twice() -> tuple[ft.Token, ft.Token]:
            first = await manager.aget()
            manager.invalidate(first)
            return first, await manager.aget()

        if use_async:
            first, second = asyncio.run(twice())
        else:
            first = manager.get()
            manager.invalidate(first)
            second = manager.get()
    assert first.access_token != second.access_token
    assert claims_of(second.access_token)["aud"] == "api://x"
    assert first.expires_at is not None
    assert source.fetches == 2


def test_a_shared_store_needs_no_key(runner: Runner) -> None:
    grant = ft.JWTBearerGrant("https://as.example/token", ft.GitHubActionsOIDC(audience="x"))
    assert grant.unidentified is None
    other = ft.JWTBearerGrant("https://as.example/token", ft.GitHubActionsOIDC(audience="y"))
    assert grant.key != other.key
    assert ft.GitHubActionsOIDC(audience="x").key == ft.GitHubActionsOIDC(audience="x").key
    assert REQUEST_TOKEN not in ft.GitHubActionsOIDC(audience="x").key
    assert (
        ft.ClientCredentials(
            "https://as.example/token", "c", auth=ft.ClientAssertion(ft.GitHubActionsOIDC("x"))
        ).unidentified
        is None
    )


def test_as_client_assertion_the_request_carries_the_id_token(runner: Runner) -> None:
    """The server does not trust the runner for client authentication; what matters here is
    what was sent: the current ID token as ``client_assertion``."""
    with AuthorizationServer() as server:
        grant = ft.ClientCredentials(
            server.token_url, "app", auth=ft.ClientAssertion(ft.GitHubActionsOIDC("aud-1"))
        )
        with ft.TokenManager(grant) as manager, pytest.raises(ft.OAuthError) as refused:
            manager.get()
        assert refused.value.error == "invalid_client"
        assert len(runner.requests) == 1


# -- what goes wrong -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
)
def test_outside_a_job_with_id_token_permission_the_error_says_so(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(missing)
    with pytest.raises(ft.ConfigurationError, match=f"{missing} is not set.*id-token: write"):
        ft.GitHubActionsOIDC("a")()
    assert runner.requests == []


def test_a_plain_http_runner_url_off_loopback_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "http://runner.example/_apis/token")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
    with pytest.raises(ft.ConfigurationError, match="plain http://"):
        ft.GitHubActionsOIDC("a")()


def test_a_request_token_that_cannot_go_in_a_header_is_refused(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "two words\r\nX-Injected: 1")
    with pytest.raises(ft.ConfigurationError, match="header-safe") as refused:
        ft.GitHubActionsOIDC("a")()
    assert "two words" not in str(refused.value)
    assert runner.requests == []


@pytest.mark.parametrize(
    "audience",
    ["", "   ", "caf\u00e9", "a\nb", 7],
    ids=["empty", "blank", "non-ascii", "nl", "int"],
)
def test_a_bad_audience_is_refused_at_construction(audience: Any) -> None:
    with pytest.raises(ft.ConfigurationError, match="audience"):
        ft.GitHubActionsOIDC(audience)


@pytest.mark.parametrize("timeout", [0, -1, "5"])
def test_a_bad_timeout_is_refused(timeout: Any) -> None:
    with pytest.raises(ft.ConfigurationError, match="timeout"):
        ft.GitHubActionsOIDC("a", timeout=timeout)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_request_token_is_a_configuration_error(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    runner.answers.append((status, b'{"message": "Bad credentials"}'))
    with pytest.raises(ft.ConfigurationError, match=f"HTTP {status}"):
        ft.GitHubActionsOIDC("a")()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ((200, b"<html>hi</html>"), "not valid JSON"),
        ((404, b'{"message": "Not Found"}'), "HTTP 404"),
        ((200, b'{"count": 0}'), "no string `value`"),
        ((200, b'{"value": 12}'), "no string `value`"),
        ((200, b'{"value": "   "}'), "no string `value`"),
        ((200, b"[1, 2]"), "no string `value`"),
    ],
    ids=["html", "404", "no-value", "int-value", "blank-value", "array"],
)
def test_a_bad_answer_is_a_typed_error(
    runner: Runner, answer: tuple[int, bytes], match: str
) -> None:
    runner.answers.append(answer)
    with pytest.raises(ft.TokenResponseError, match=match):
        ft.GitHubActionsOIDC("a")()


def test_a_transient_failure_is_retried(runner: Runner) -> None:
    runner.answers.append((503, b'{"message": "busy"}'))
    source = ft.GitHubActionsOIDC("a")
    assert claims_of(source())["aud"] == "a"
    assert len(runner.requests) == 2


def test_the_request_token_is_never_logged_shown_or_in_an_error(
    runner: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="freshtoken")
    source = ft.GitHubActionsOIDC("aud")
    texts = [repr(source), str(source), source.key]
    value = source()
    runner.answers.append((500, b'{"message": "down"}'))
    runner.answers.extend([(500, b"{}")] * 5)
    fresh = ft.GitHubActionsOIDC("aud")
    with pytest.raises(ft.FreshTokenError) as failed:
        fresh()
    texts += [str(failed.value), repr(failed.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.__dict__) for record in caplog.records]
    joined = "\n".join(texts)
    assert REQUEST_TOKEN not in joined
    assert value not in joined
