"""Session fixtures: real third-party authorization servers on 127.0.0.1.

``oidc_provider_peer``  -> :class:`peers.OidcProviderPeer` (node oidc-provider 8.x)
``dot_peer``            -> :class:`peers.DjangoOAuthToolkitPeer` (django-oauth-toolkit)
``start_oidc_provider`` / ``start_django_oauth_toolkit`` -> factories for a peer with another
                           access-token lifetime (``factory(access_token_ttl=10)``), started once
                           per lifetime and stopped at the end of the session.

Each peer starts on first use, lives for the session and is stopped at its end. The types and
helpers (``basic_authorization``, ``client_assertion``, ``unverified_claims``) are importable
in test modules with ``from .peers import ...``.

A peer that cannot run here (no node, no npm to install oidc-provider, Django not importable) is
skipped with the reason, or fails the test under ``CI=true``: CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .peers import (
    DEFAULT_ACCESS_TOKEN_TTL,
    DjangoOAuthToolkitPeer,
    OidcProviderPeer,
    PeerPool,
    running_django_oauth_toolkit,
    running_oidc_provider,
)


def _start_oidc(workdir: Path, ttl: int) -> contextlib.AbstractContextManager[OidcProviderPeer]:
    return running_oidc_provider(workdir, access_token_ttl=ttl)


def _start_dot(
    workdir: Path, ttl: int
) -> contextlib.AbstractContextManager[DjangoOAuthToolkitPeer]:
    return running_django_oauth_toolkit(workdir, access_token_ttl=ttl)


@pytest.fixture(scope="session")
def _interop_peer_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerPool]:
    pool = PeerPool(tmp_path_factory.mktemp("interop-peers"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def start_oidc_provider(_interop_peer_pool: PeerPool) -> Callable[..., OidcProviderPeer]:
    """``start_oidc_provider(access_token_ttl=N)`` -> a running oidc-provider whose access
    tokens live N seconds (one process per N for the session)."""

    def start(*, access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL) -> OidcProviderPeer:
        return _interop_peer_pool.get("oidc-provider", access_token_ttl, _start_oidc)

    return start


@pytest.fixture(scope="session")
def start_django_oauth_toolkit(
    _interop_peer_pool: PeerPool,
) -> Callable[..., DjangoOAuthToolkitPeer]:
    """``start_django_oauth_toolkit(access_token_ttl=N)`` -> a running django-oauth-toolkit
    whose access tokens live N seconds (one process per N for the session)."""

    def start(*, access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL) -> DjangoOAuthToolkitPeer:
        return _interop_peer_pool.get("django-oauth-toolkit", access_token_ttl, _start_dot)

    return start


@pytest.fixture(scope="session")
def oidc_provider_peer(start_oidc_provider: Callable[..., OidcProviderPeer]) -> OidcProviderPeer:
    """node oidc-provider 8.x on 127.0.0.1, access tokens of ``DEFAULT_ACCESS_TOKEN_TTL``
    (3) seconds. See :class:`peers.OidcProviderPeer` for its clients and behaviour."""
    return start_oidc_provider()


@pytest.fixture(scope="session")
def dot_peer(
    start_django_oauth_toolkit: Callable[..., DjangoOAuthToolkitPeer],
) -> DjangoOAuthToolkitPeer:
    """django-oauth-toolkit on 127.0.0.1, access tokens of ``DEFAULT_ACCESS_TOKEN_TTL``
    (3) seconds. See :class:`peers.DjangoOAuthToolkitPeer` for its clients and errors."""
    return start_django_oauth_toolkit()
