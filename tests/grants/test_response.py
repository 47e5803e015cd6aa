"""Strict reading of token responses: JSON only, and excerpts that hold no secret."""

from __future__ import annotations

import pytest

import freshtoken as ft
from freshtoken._oauth.http import HttpResponse
from freshtoken._oauth.response import excerpt, is_json, peek_error_code, read_json, server_date

JSON = {"content-type": "application/json"}


def response(
    body: bytes, content_type: str = "application/json", status: int = 200
) -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"access_token": "a", "access_token": "b"}', "repeats the key 'access_token'"),
        (b'{"expires_in": NaN}', "not valid JSON"),
        (b'{"expires_in": Infinity}', "not valid JSON"),
        (b'{"expires_in": -Infinity}', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        (b'{"access_token": "\xff"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_json_that_is_not_strict_json_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(ft.TokenResponseError, match=problem) as caught:
        read_json(response(body, status=201))
    assert caught.value.status == 201


def test_strict_json_is_read() -> None:
    assert read_json(response(b'{"a": [1, 2.5, "x", null, true]}')) == {
        "a": [1, 2.5, "x", None, True]
    }


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ("application/problem+json", True),
        ("text/plain", False),
        ("text/json", False),
        ("", False),
    ],
)
def test_json_content_types(content_type: str, expected: bool) -> None:
    assert is_json(response(b"{}", content_type)) is expected


def test_excerpts_cut_token_like_runs_and_json_bodies() -> None:
    assert excerpt(b"<html><b>Bad Gateway</b></html>") == "<html><b>Bad Gateway</b></html>"
    assert excerpt(b'{"access_token": "abc"}') == ""
    assert excerpt(b"  [1]") == ""
    shown = excerpt(b"upstream answered eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl ok")
    assert "eyJ" not in shown
    assert "<redacted>" in shown
    assert excerpt(b"error: the client_secret hunter2 is wrong") == "error: the client_…"
    assert len(excerpt(b"a " * 500)) <= 81
    assert excerpt(b"tab\there\x00nul") == "tab here nul"


def test_error_codes_are_peeked_leniently() -> None:
    assert (
        peek_error_code(response(b'{"error": "temporarily_unavailable"}'))
        == "temporarily_unavailable"
    )
    assert peek_error_code(response(b'{"error": 3}')) is None
    assert peek_error_code(response(b"{")) is None
    assert peek_error_code(response(b'{"error": "x"}', "text/plain")) is None
    assert peek_error_code(response(b'["error"]')) is None


def test_the_date_header_is_read_as_epoch_seconds() -> None:
    assert server_date(HttpResponse(200, {"date": "Sun, 06 Nov 1994 08:49:37 GMT"})) == 784111777.0
    assert server_date(HttpResponse(200, {})) is None
    assert server_date(HttpResponse(200, {"date": "yesterday"})) is None
    assert server_date(HttpResponse(200, {"date": "Sun, 06 Nov 1994 08:49:37 -0000"})) is None
