"""The public surface: a sorted __all__ of names that exist, and nothing private leaking."""

from __future__ import annotations

import freshtoken as ft

# The names API.md promises; more may be exported, none may go missing.
PROMISED = {
    "Token",
    "FunctionSource",
    "TokenManager",
    "RefreshPolicy",
    "authenticated",
    "FreshTokenError",
    "ConfigurationError",
    "TokenRequestError",
    "OAuthError",
    "TokenEndpointUnavailable",
    "TokenResponseError",
    "Unauthorized",
    "ClientCredentials",
    "RefreshTokenGrant",
    "PasswordGrant",
    "JWTBearerGrant",
    "TokenExchange",
    "ClientSecretJWT",
    "PrivateKeyJWT",
    "MemoryStore",
    "FileStore",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(ft.__all__) == sorted(set(ft.__all__))


def test_every_exported_name_exists_and_is_public() -> None:
    for name in ft.__all__:
        assert hasattr(ft, name), name
        assert not name.startswith("_")


def test_every_promised_name_is_exported() -> None:
    assert set(ft.__all__) >= PROMISED


def test_error_tree() -> None:
    assert issubclass(ft.ConfigurationError, ft.FreshTokenError)
    assert issubclass(ft.TokenRequestError, ft.FreshTokenError)
    assert issubclass(ft.Unauthorized, ft.FreshTokenError)
    for error in (ft.OAuthError, ft.TokenEndpointUnavailable, ft.TokenResponseError):
        assert issubclass(error, ft.TokenRequestError)
