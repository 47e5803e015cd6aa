"""What a challenge asks for (``challenges.decide``) and the typed errors it becomes: the values
the server named, checked and scrubbed, and nothing of the token in any message."""

from __future__ import annotations

import copy
import pickle

import pytest

import freshtoken as ft
from freshtoken._http_auth.challenges import decide

SCOPE_403 = 'Bearer realm="api", error="insufficient_scope", scope="admin users:write"'
STEP_UP = 'Bearer error="insufficient_user_authentication", acr_values="phr phrh", max_age="300"'


@pytest.mark.parametrize(
    ("status", "header", "action"),
    [
        (401, None, "refresh"),
        (401, "", "refresh"),
        (401, 'Bearer realm="api"', "refresh"),
        (401, 'Bearer error="invalid_token"', "refresh"),
        (401, 'Basic realm="x"', "refresh"),
        (401, 'DPoP error="use_dpop_nonce"', "refresh"),  # the DPoP flow's to read
        (401, 'Bearer error="invalid_request"', "pass"),
        (401, 'Bearer error="insufficient_scope"', "insufficient_scope"),
        (401, STEP_UP, "step_up"),
        (401, 'Basic realm="x", ' + STEP_UP, "step_up"),
        (401, 'DPoP error="insufficient_scope", scope="a"', "insufficient_scope"),
        (401, 'Bearer error="made_up"', "refresh"),
        (401, 'Basic error="insufficient_scope"', "refresh"),  # not a bearer challenge
        (403, SCOPE_403, "insufficient_scope"),
        (403, STEP_UP, "step_up"),
        (403, None, "pass"),
        (403, 'Bearer error="invalid_token"', "pass"),
        (400, SCOPE_403, "pass"),
        (404, None, "pass"),
        (500, 'Bearer error="invalid_token"', "pass"),
        (200, STEP_UP, "pass"),
    ],
)
def test_the_decision_table(status: int, header: str | None, action: str) -> None:
    assert decide(status, header).action == action


def test_the_first_coded_bearer_challenge_decides() -> None:
    header = 'Bearer realm="a", Bearer error="insufficient_scope", Bearer error="invalid_token"'

    assert decide(401, header).action == "insufficient_scope"


def test_insufficient_scope_carries_the_scope_and_the_metadata() -> None:
    header = SCOPE_403 + ', resource_metadata="https://api.example.com/.well-known/x"'

    error = decide(403, header).error()

    assert isinstance(error, ft.InsufficientScope)
    assert isinstance(error, ft.Unauthorized)
    assert error.scope == "admin users:write"
    assert error.status == 403
    assert error.resource_metadata == "https://api.example.com/.well-known/x"
    assert not error.retryable
    assert "admin users:write" in str(error)


def test_step_up_carries_acr_values_and_max_age() -> None:
    error = decide(401, STEP_UP + ', error_description="log in again"').error()

    assert isinstance(error, ft.StepUpRequired)
    assert isinstance(error, ft.Unauthorized)
    assert (error.acr_values, error.max_age, error.status) == ("phr phrh", 300, 401)
    assert error.resource_metadata is None
    assert not error.retryable
    assert "log in again" in str(error)
    assert "phr phrh" in str(error) and "300" in str(error)


def test_the_other_decisions_make_no_error() -> None:
    assert decide(401, 'Bearer error="invalid_token"').error() is None
    assert decide(404, None).error() is None


@pytest.mark.parametrize(
    ("params", "scope"),
    [
        ('scope="a  b a"', "a b"),  # normalised: single spaces, no repeats
        ('scope=""', None),
        ('scope="has\\"quote"', None),  # outside RFC 6749 §3.3's scope-token syntax
        ('scope="tab\tinside"', None),
        ('scope="' + "x" * 3000 + '"', None),  # too long to be a scope
        ("", None),
    ],
)
def test_a_scope_outside_its_syntax_is_not_kept(params: str, scope: str | None) -> None:
    header = 'Bearer error="insufficient_scope"' + (", " + params if params else "")
    error = decide(403, header).error()

    assert isinstance(error, ft.InsufficientScope)
    assert error.scope == scope


@pytest.mark.parametrize("max_age", ['"-1"', '"1.5"', '"soon"', '"12345678901"', '""'])
def test_a_max_age_that_is_not_a_small_integer_is_not_kept(max_age: str) -> None:
    error = decide(401, f'Bearer error="insufficient_user_authentication", max_age={max_age}')

    typed = error.error()
    assert isinstance(typed, ft.StepUpRequired)
    assert typed.max_age is None


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com/.well-known/oauth-protected-resource",  # plain http, not loopback
        "https://user:pw@api.example.com/m",
        "https://api.example.com/m#frag",
        "ftp://api.example.com/m",
        "https://api.example.com:99999/m",
        "https://api.example.com/m x",
        "/relative",
    ],
)
def test_a_resource_metadata_url_that_could_not_be_fetched_safely_is_dropped(url: str) -> None:
    error = decide(403, f'{SCOPE_403}, resource_metadata="{url}"').error()

    assert error is not None
    assert error.resource_metadata is None


def test_a_loopback_http_resource_metadata_url_is_kept() -> None:
    url = "http://127.0.0.1:8080/.well-known/oauth-protected-resource"

    error = decide(403, f'{SCOPE_403}, resource_metadata="{url}"').error()

    assert error is not None
    assert error.resource_metadata == url


def test_server_text_echoing_the_token_is_scrubbed_from_values_and_messages() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"
    header = (
        f'Bearer error="insufficient_scope", scope="read {token}", '
        f'error_description="your token {token} lacks\\u0000 it\x07"'
    )

    error = decide(403, header).error(sent=[token])

    assert isinstance(error, ft.InsufficientScope)
    assert error.scope == "read <redacted>"
    for text in (str(error), repr(error), error.message):
        assert token not in text
        assert "\x07" not in text


def test_token_like_runs_are_redacted_in_the_message_even_when_not_sent() -> None:
    opaque = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
    error = decide(403, f'Bearer error="insufficient_scope", scope="{opaque}"').error()

    assert error is not None
    assert opaque not in str(error)


def test_the_typed_errors_copy_and_pickle_with_their_values() -> None:
    error = decide(401, STEP_UP).error()
    assert isinstance(error, ft.StepUpRequired)

    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert isinstance(clone, ft.StepUpRequired)
        assert (clone.acr_values, clone.max_age, clone.status) == ("phr phrh", 300, 401)
        assert str(clone) == str(error)


def test_the_typed_errors_can_be_raised_by_hand() -> None:
    scope = ft.InsufficientScope(scope="admin")
    step_up = ft.StepUpRequired(max_age=60)

    assert scope.scope == "admin" and "scope" in str(scope)
    assert step_up.max_age == 60 and step_up.acr_values is None
    assert repr(scope).startswith("InsufficientScope(")
    assert repr(step_up).startswith("StepUpRequired(")
