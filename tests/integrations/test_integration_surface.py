"""The integrations' constructors, properties and import errors."""

from __future__ import annotations

import importlib
import sys

import pytest

import freshtoken as ft
from freshtoken.aiohttp import TokenMiddleware, token_middleware
from freshtoken.httpx import TokenAuth as HttpxTokenAuth
from freshtoken.requests import TokenAuth as RequestsTokenAuth

CONSTRUCTORS = [HttpxTokenAuth, RequestsTokenAuth, token_middleware]


@pytest.fixture
def manager() -> ft.TokenManager:
    return ft.TokenManager(lambda: "opaque-secret-token")


@pytest.mark.parametrize("build", CONSTRUCTORS)
def test_it_needs_a_token_manager(build: type) -> None:
    with pytest.raises(ft.ConfigurationError, match="TokenManager"):
        build(lambda: "token")


@pytest.mark.parametrize("build", CONSTRUCTORS)
def test_it_shows_its_manager_and_origins_but_never_a_token(
    build: type, manager: ft.TokenManager
) -> None:
    manager.prefetch()
    auth = build(manager, origins="https://api.example.com")

    assert auth.manager is manager
    assert auth.origins == frozenset({"https://api.example.com:443"})
    assert "https://api.example.com:443" in repr(auth)
    assert "opaque-secret-token" not in repr(auth)


@pytest.mark.parametrize("build", CONSTRUCTORS)
def test_without_origins_it_knows_none_until_the_first_request(
    build: type, manager: ft.TokenManager
) -> None:
    assert build(manager).origins is None


def test_token_middleware_makes_a_token_middleware(manager: ft.TokenManager) -> None:
    assert isinstance(token_middleware(manager), TokenMiddleware)


@pytest.mark.parametrize(
    ("module", "library", "hint"),
    [
        ("freshtoken.requests", "requests", "pip install 'freshtoken[requests]'"),
        ("freshtoken.aiohttp", "aiohttp", "pip install 'freshtoken[aiohttp]'"),
    ],
)
def test_a_missing_library_is_named_with_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, module: str, library: str, hint: str
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # makes "import library" fail
    monkeypatch.delitem(sys.modules, module)

    with pytest.raises(ImportError, match=hint.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)
