"""The ``WWW-Authenticate`` parser (RFC 9110 §11.6.1): a corpus of real-world headers, then
hostile input, which must never raise and never take long."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshtoken._http_auth.challenges import (
    MAX_CHALLENGES,
    MAX_HEADER_LENGTH,
    MAX_PARAMS,
    Challenge,
    decide,
    parse_challenges,
)

CORPUS = [
    # RFC 6750 §3 examples
    ('Bearer realm="example"', [Challenge("bearer", {"realm": "example"})]),
    (
        'Bearer realm="example", error="invalid_token", '
        'error_description="The access token expired"',
        [
            Challenge(
                "bearer",
                {
                    "realm": "example",
                    "error": "invalid_token",
                    "error_description": "The access token expired",
                },
            )
        ],
    ),
    # RFC 9110 §11.6.1's example: two challenges, a quoted string with escaped quotes
    (
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
        [
            Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
            Challenge("basic", {"realm": "simple"}),
        ],
    ),
    # RFC 9470 §3 step-up
    (
        'Bearer error="insufficient_user_authentication", '
        'error_description="A different authentication level is required", '
        'acr_values="myACR"',
        [
            Challenge(
                "bearer",
                {
                    "error": "insufficient_user_authentication",
                    "error_description": "A different authentication level is required",
                    "acr_values": "myACR",
                },
            )
        ],
    ),
    # RFC 9728 §5.1
    (
        'Bearer resource_metadata="https://resource.example.com/.well-known/'
        'oauth-protected-resource"',
        [
            Challenge(
                "bearer",
                {
                    "resource_metadata": "https://resource.example.com/.well-known/"
                    "oauth-protected-resource"
                },
            )
        ],
    ),
    # RFC 9449 §7.1: a DPoP challenge beside a Bearer one
    (
        'DPoP algs="ES256 PS256", error="use_dpop_nonce", Bearer realm="x"',
        [
            Challenge("dpop", {"algs": "ES256 PS256", "error": "use_dpop_nonce"}),
            Challenge("bearer", {"realm": "x"}),
        ],
    ),
    # Entra ID style: commas and slashes inside quotes, unquoted values
    (
        'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        'error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="',
        [
            Challenge(
                "bearer",
                {
                    "authorization_uri": "https://login.microsoftonline.com/common/oauth2/"
                    "authorize",
                    "error": "insufficient_claims",
                    "claims": "eyJhY2Nlc3NfdG9rZW4iOnt9fQ==",
                },
            )
        ],
    ),
    # scopes with a quoted comma, case of scheme and names, spaces around "="
    (
        'BEARER Error = insufficient_scope, Scope="a:read, b:write"',
        [Challenge("bearer", {"error": "insufficient_scope", "scope": "a:read, b:write"})],
    ),
    # token68 credentials and bare schemes
    ("Negotiate abc==, Bearer", [Challenge("negotiate", {"": "abc=="}), Challenge("bearer")]),
    ("Negotiate", [Challenge("negotiate")]),
    ("Basic, Bearer", [Challenge("basic"), Challenge("bearer")]),
    # empty list elements mean nothing (RFC 9110 §5.6.1)
    (' , Bearer realm="a",, ,error="x" , ', [Challenge("bearer", {"realm": "a", "error": "x"})]),
    # an empty value; a repeated parameter (the first is kept: which would a server act on?)
    (
        'Bearer realm="", error="first", error="second"',
        [Challenge("bearer", {"realm": "", "error": "first"})],
    ),
    # RFC 9110's ambiguity: a lone "name=" after the scheme reads as a token68
    ("Bearer error=", [Challenge("bearer", {"": "error="})]),
    # unknown schemes with parameters of their own, then ours
    (
        'Hoba max-age="180", challenge="16:MTEyMzEyMzU1:2:ROUND", Bearer error="invalid_token"',
        [
            Challenge("hoba", {"max-age": "180", "challenge": "16:MTEyMzEyMzU1:2:ROUND"}),
            Challenge("bearer", {"error": "invalid_token"}),
        ],
    ),
    # unicode in a quoted string (obs-text) is kept
    ('Bearer error_description="café"', [Challenge("bearer", {"error_description": "café"})]),
    # garbage between challenges is skipped to the next comma
    (
        'Bearer realm="a" junk "x,y", Basic realm="b"',
        [
            Challenge("bearer", {"realm": "a"}),
            Challenge("basic", {"realm": "b"}),
        ],
    ),
    ('"quoted", Bearer', [Challenge("bearer")]),
    ("Bearer\trealm=x", [Challenge("bearer")]),  # scheme and parameters need a space
    ('=x, Bearer realm="y"', [Challenge("bearer", {"realm": "y"})]),
    ('Bearer realm="open', [Challenge("bearer")]),  # unterminated: the parameter is dropped
    ('Bearer realm="a\\', [Challenge("bearer")]),
    ("", []),
    (",,,", []),
]


@pytest.mark.parametrize(("header", "expected"), CORPUS, ids=[h[:40] for h, _ in CORPUS])
def test_the_corpus_parses_as_rfc_9110_reads_it(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_several_header_lines_are_one_list() -> None:
    lines = ['Basic realm="x"', 'Bearer error="insufficient_scope", scope="admin"']

    assert parse_challenges(lines) == [
        Challenge("basic", {"realm": "x"}),
        Challenge("bearer", {"error": "insufficient_scope", "scope": "admin"}),
    ]
    assert parse_challenges(None) == []


def test_an_oversized_header_is_ignored_whole() -> None:
    header = 'Bearer error="insufficient_scope", scope="' + "a" * MAX_HEADER_LENGTH + '"'

    assert parse_challenges(header) == []
    assert decide(401, header).action == "refresh"  # as a 401 without a challenge


def test_challenges_and_parameters_are_bounded() -> None:
    many = ", ".join(f"S{i}" for i in range(MAX_CHALLENGES * 3))
    params = ", ".join(f"p{i}=v" for i in range(MAX_PARAMS * 3))

    assert len(parse_challenges(many)) == MAX_CHALLENGES
    assert len(parse_challenges("Bearer " + params)[0].params) == MAX_PARAMS


_PIECES = st.sampled_from(
    [
        "Bearer",
        "Basic",
        "DPoP",
        " ",
        "\t",
        ",",
        "=",
        '"',
        "\\",
        "error",
        "scope",
        "realm",
        "insufficient_scope",
        "a==",
        "x y",
        "\x00",
        "\r\n",
        "é",
        "\U0001f600",
        "'",
        ";",
    ]
)


@given(st.lists(_PIECES, max_size=60).map("".join))
def test_grammar_shaped_noise_never_raises(header: str) -> None:
    challenges = parse_challenges(header)
    assert len(challenges) <= MAX_CHALLENGES
    for challenge in challenges:
        assert challenge.scheme == challenge.scheme.lower()
        assert len(challenge.params) <= MAX_PARAMS
    decide(401, header).error(sent=["token"])
    decide(403, header).error()


@given(st.text(max_size=400))
def test_any_text_never_raises(header: str) -> None:
    parse_challenges(header)
    decide(401, header).error()


def test_pathological_input_is_linear() -> None:
    import time

    header = 'Bearer a="' + "\\a" * 4000 + ", " * 2000 + '"x' * 1000
    started = time.perf_counter()
    for _ in range(10):
        parse_challenges(header[:MAX_HEADER_LENGTH])
    assert time.perf_counter() - started < 2.0  # generous: ~ms each on a busy machine
