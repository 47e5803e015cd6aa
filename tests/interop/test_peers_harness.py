"""The harness itself: skip-or-fail on a missing peer, clean stops, no secrets in reprs."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import httpx
import pytest

from .peers import (
    DjangoOAuthToolkitPeer,
    OidcProviderPeer,
    PeerPool,
    PeerStartupError,
    PeerUnavailable,
    _subprocess,
    ensure_django_oauth_toolkit_importable,
    ensure_oidc_provider_installed,
    peer_unavailable,
    running_oidc_provider,
)

pytestmark = pytest.mark.interop


def test_a_missing_peer_is_skipped_with_its_reason_outside_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="no node here"):
        peer_unavailable("no node here")


def test_a_missing_peer_fails_the_run_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="no node here"):
        peer_unavailable("no node here")


def test_no_node_on_the_path_makes_oidc_provider_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(PeerUnavailable, match="node is not installed"):
        ensure_oidc_provider_installed()


def test_a_django_that_cannot_be_imported_makes_dot_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "django"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('this Django is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    with pytest.raises(PeerUnavailable, match="this Django is broken"):
        ensure_django_oauth_toolkit_importable()


def test_the_pool_tries_an_unavailable_peer_once_per_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    attempts: list[Path] = []

    def unavailable(workdir: Path, ttl: int) -> contextlib.AbstractContextManager[str]:
        attempts.append(workdir)
        raise PeerUnavailable("nothing to run")

    pool = PeerPool(tmp_path)
    try:
        for _ in range(3):
            with pytest.raises(pytest.skip.Exception, match="nothing to run"):
                pool.get("absent", 3, unavailable)
    finally:
        pool.close()

    assert len(attempts) == 1


def test_a_peer_that_dies_at_startup_reports_its_exit_status_and_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom: bad config'); sys.exit(3)"]

    with (
        pytest.raises(PeerStartupError, match=r"exited with 3[\s\S]*boom: bad config"),
        _subprocess(argv, cwd=tmp_path, env={}, workdir=tmp_path, name="doomed"),
    ):
        pytest.fail("a dead peer must not be yielded")


def test_a_stopped_peer_no_longer_answers(tmp_path: Path) -> None:
    with running_oidc_provider(tmp_path) as peer:
        assert httpx.get(peer.jwks_uri).status_code == 200

    with pytest.raises(httpx.ConnectError):
        httpx.get(peer.jwks_uri)


def test_peer_reprs_hold_no_secrets(
    oidc_provider_peer: OidcProviderPeer, dot_peer: DjangoOAuthToolkitPeer
) -> None:
    text = repr(oidc_provider_peer) + repr(dot_peer)
    secrets = [
        oidc_provider_peer.user.password,
        dot_peer.user.password,
        *(
            client.client_secret
            for client in (
                oidc_provider_peer.basic_client,
                oidc_provider_peer.post_client,
                oidc_provider_peer.code_client,
                dot_peer.client_credentials_client,
                dot_peer.password_client,
                dot_peer.code_only_client,
            )
        ),
        *(
            key.private_key_pem.splitlines()[1]
            for key in (
                oidc_provider_peer.rs256_client.signing_key,
                oidc_provider_peer.es256_client.signing_key,
            )
            if key is not None
        ),
    ]

    assert all(secrets)
    for secret in secrets:
        assert secret is not None
        assert secret not in text
