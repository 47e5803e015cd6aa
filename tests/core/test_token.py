"""Token values and strict RFC 6749 §5.1 parsing."""

from __future__ import annotations

import base64
import copy
import json
import math
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import freshtoken as ft
from freshtoken._core.token import MAX_ACCESS_TOKEN_LENGTH, MAX_EXPIRES_IN, parse_token_response

NOW = 1_800_000_000.0
SECRET = "s3cr3t-access-token-value"


def jwt(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    def seg(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{seg(header or {'alg': 'ES256', 'typ': 'JWT'})}.{seg(claims)}.c2ln"


def parse(data: object, **kwargs: Any) -> ft.Token:
    return parse_token_response(data, now=NOW, **kwargs).token


class TestParsingAcceptsWhatServersSend:
    def test_minimal_response_is_a_bearer_token_without_expiry(self) -> None:
        token = parse({"access_token": SECRET})
        assert token.token_type == "Bearer"
        assert token.expires_at is None
        assert token.authorization == f"Bearer {SECRET}"

    @pytest.mark.parametrize("spelling", ["bearer", "BEARER", "Bearer", "bEaReR"])
    def test_token_type_is_case_insensitive_and_normalised(self, spelling: str) -> None:
        assert parse({"access_token": SECRET, "token_type": spelling}).token_type == "Bearer"

    def test_dpop_is_presentable(self) -> None:
        assert parse({"access_token": SECRET, "token_type": "dpop"}).token_type == "DPoP"

    @pytest.mark.parametrize("value", [3600, 3600.0, "3600", " 3600 ", 3600.5])
    def test_expires_in_may_be_int_float_or_numeric_string(self, value: object) -> None:
        token = parse({"access_token": SECRET, "expires_in": value})
        assert token.expires_at is not None
        assert token.lifetime == pytest.approx(3600.5 if value == 3600.5 else 3600)

    def test_expires_in_zero_is_accepted_as_a_value(self) -> None:
        assert parse({"access_token": SECRET, "expires_in": 0}).lifetime == 0

    def test_expiry_comes_from_the_jwt_exp_when_expires_in_is_missing(self) -> None:
        token = parse({"access_token": jwt({"exp": NOW + 120, "iat": NOW})})
        assert token.expires_at == datetime.fromtimestamp(NOW + 120, UTC)

    def test_expires_in_wins_over_the_jwt_exp(self) -> None:
        token = parse({"access_token": jwt({"exp": NOW + 120}), "expires_in": 60})
        assert token.lifetime == 60

    def test_a_jwt_exp_earlier_than_expires_in_wins(self) -> None:
        # oidc-provider rounds iat down to the second and still says expires_in = ttl.
        token = parse({"access_token": jwt({"iat": NOW - 0.9, "exp": NOW + 2.1}), "expires_in": 3})
        assert token.expires_at == datetime.fromtimestamp(NOW + 2.1, UTC)

    def test_a_malformed_jwt_exp_is_ignored_when_expires_in_is_given(self) -> None:
        assert parse({"access_token": jwt({"exp": "soon"}), "expires_in": 3}).lifetime == 3

    def test_a_jwt_from_a_skewed_server_lives_its_full_lifetime(self) -> None:
        parsed = parse_token_response(
            {"access_token": jwt({"iat": NOW + 3600, "exp": NOW + 3600 + 300})}, now=NOW
        )
        assert parsed.token.lifetime == pytest.approx(300)
        assert parsed.skew == pytest.approx(3600)

    def test_the_date_header_reveals_skew_when_the_jwt_has_no_iat(self) -> None:
        parsed = parse_token_response(
            {"access_token": jwt({"exp": NOW - 3600 + 300})}, now=NOW, server_date=NOW - 3600
        )
        assert parsed.token.lifetime == pytest.approx(300)
        assert parsed.skew == pytest.approx(-3600)

    def test_small_clock_differences_are_not_skew(self) -> None:
        parsed = parse_token_response(
            {"access_token": jwt({"iat": NOW + 2, "exp": NOW + 302})}, now=NOW
        )
        assert parsed.skew is None
        assert parsed.token.expires_at == datetime.fromtimestamp(NOW + 302, UTC)

    def test_a_non_jwt_is_simply_opaque(self) -> None:
        for opaque in ["abc.def", "a.b.c", "x" * 40, "eyJ.eyJ.sig"]:
            assert parse({"access_token": opaque}).expires_at is None

    def test_scope_as_list_is_kept_as_a_string(self) -> None:
        assert parse({"access_token": SECRET, "scope": ["a", "b"]}).scope == "a b"

    def test_unknown_fields_are_kept_in_extra(self) -> None:
        token = parse({"access_token": SECRET, "refresh_in": 30, "foo": {"x": 1}})
        assert dict(token.extra) == {"refresh_in": 30, "foo": {"x": 1}}

    def test_null_optional_fields_are_absent(self) -> None:
        token = parse(
            {"access_token": SECRET, "refresh_token": None, "scope": None, "expires_in": None}
        )
        assert token.refresh_token is None
        assert token.scope is None

    def test_from_response_is_the_public_spelling(self) -> None:
        token = ft.Token.from_response({"access_token": SECRET, "expires_in": 10}, now=NOW)
        assert token.lifetime == 10


def _bad_cases() -> list[tuple[object, str | None]]:
    big = "a" * (MAX_ACCESS_TOKEN_LENGTH + 1)
    return [
        (None, None),
        ("a string", None),
        ([SECRET], None),
        ({}, "access_token"),
        ({"access_token": ""}, "access_token"),
        ({"access_token": None}, "access_token"),
        ({"access_token": 42}, "access_token"),
        ({"access_token": big}, "access_token"),
        ({"access_token": "two words"}, "access_token"),
        ({"access_token": "line\nbreak"}, "access_token"),
        ({"access_token": "caf\u00e9"}, "access_token"),
        ({"access_token": SECRET, "expires_in": "abc"}, "expires_in"),
        ({"access_token": SECRET, "expires_in": -5}, "expires_in"),
        ({"access_token": SECRET, "expires_in": 1e30}, "expires_in"),
        ({"access_token": SECRET, "expires_in": 10**400}, "expires_in"),
        ({"access_token": SECRET, "expires_in": MAX_EXPIRES_IN + 1}, "expires_in"),
        ({"access_token": SECRET, "expires_in": math.nan}, "expires_in"),
        ({"access_token": SECRET, "expires_in": math.inf}, "expires_in"),
        ({"access_token": SECRET, "expires_in": True}, "expires_in"),
        ({"access_token": SECRET, "expires_in": [1]}, "expires_in"),
        ({"access_token": SECRET, "expires_in": "9" * 100}, "expires_in"),
        ({"access_token": SECRET, "token_type": 42}, "token_type"),
        ({"access_token": SECRET, "token_type": "mac"}, "token_type"),
        ({"access_token": SECRET, "token_type": "N_A"}, "token_type"),
        ({"access_token": SECRET, "scope": 7}, "scope"),
        ({"access_token": SECRET, "scope": ["a", 1]}, "scope"),
        ({"access_token": SECRET, "refresh_token": 5}, "refresh_token"),
        ({"access_token": SECRET, "refresh_token": ""}, "refresh_token"),
        ({"access_token": SECRET, "id_token": {}}, "id_token"),
        ({"access_token": jwt({"exp": "tomorrow"})}, "exp"),
        ({"access_token": jwt({"exp": True})}, "exp"),
        ({"access_token": jwt({"exp": -1})}, "exp"),
        ({"access_token": jwt({"exp": NOW + MAX_EXPIRES_IN * 2})}, "exp"),
        ({"error": 5}, "error"),
    ]


@pytest.mark.parametrize(("data", "field"), _bad_cases())
def test_bad_responses_raise_token_response_error_naming_the_field(
    data: object, field: str | None
) -> None:
    with pytest.raises(ft.TokenResponseError) as caught:
        parse(data)
    assert caught.value.field == field
    if field is not None:
        assert field in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_a_200_with_an_error_member_is_an_oauth_error() -> None:
    with pytest.raises(ft.OAuthError) as caught:
        parse({"error": "invalid_client", "error_description": "nope", "access_token": SECRET})
    assert caught.value.error == "invalid_client"
    assert caught.value.description == "nope"
    assert not caught.value.retryable


def test_extra_token_types_admit_a_grants_own_type() -> None:
    token = parse(
        {"access_token": SECRET, "token_type": "n_a"}, extra_token_types=frozenset({"N_A"})
    )
    assert token.token_type == "N_A"


class TestTokenValue:
    def token(self) -> ft.Token:
        return ft.Token(
            access_token=SECRET,
            refresh_token="refresh-secret",
            id_token="id-secret",
            scope="read",
            expires_at=datetime.now(UTC) + timedelta(seconds=60),
            extra={"k": "extra-secret"},
        )

    def test_repr_and_str_show_no_secret(self) -> None:
        token = self.token()
        for text in (repr(token), str(token), f"{token}"):
            assert SECRET not in text
            assert "refresh-secret" not in text
            assert "id-secret" not in text
            assert "extra-secret" not in text
            assert token.fingerprint in text

    def test_fingerprint_is_the_first_8_hex_of_sha256(self) -> None:
        import hashlib

        assert self.token().fingerprint == hashlib.sha256(SECRET.encode()).hexdigest()[:8]

    def test_tokens_are_frozen_hashable_and_comparable(self) -> None:
        token = self.token()
        with pytest.raises(AttributeError):
            token.access_token = "other"  # type: ignore[misc]
        assert {token: 1}[token] == 1
        assert token == token.replace()
        assert token != token.replace(access_token="other")
        with pytest.raises(TypeError):
            token.extra["k"] = "v"  # type: ignore[index]

    def test_tokens_survive_copy_and_pickle(self) -> None:
        token = self.token()
        assert copy.copy(token) == token
        assert pickle.loads(pickle.dumps(token)) == token

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ft.TokenResponseError, match="expires_at"):
            ft.Token(access_token=SECRET, expires_at=datetime(2030, 1, 1))

    def test_lifetime_is_none_without_expiry(self) -> None:
        assert ft.Token(access_token=SECRET).lifetime is None
