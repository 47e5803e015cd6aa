"""The workload-identity recipes of docs/recipes.md, run as written against the test server.

Each recipe's block is taken from the page, its provider URLs and paths replaced by the local
ones, and executed. The test authorization server trusts a local signing key standing in for the
platform's issuer (the kubelet, the GitHub runner, a SPIFFE trust domain); the platform's token
file is rewritten between token requests (the kubelet's symlink swap), and each new access token
must come from the file's current content.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshtoken as ft
from freshtoken.testing import AuthorizationServer

from .github_runner import ISSUER as GITHUB_ISSUER
from .github_runner import SUBJECT as GITHUB_SUBJECT
from .github_runner import Runner
from .test_tokenfile import Rotator, platform_token, signing_key, sub_of

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes.md"
K8S_ISSUER = "https://oidc.prod-cluster.example"
SPIFFE_ISSUER = "https://oidc.spiffe.example"
SERVICE_ACCOUNT = "system:serviceaccount:prod:api"
ROTATIONS = 4


def recipe(title: str) -> str:
    """The code block under the ``### title...`` heading of docs/recipes.md."""
    text = RECIPES.read_text(encoding="utf-8")
    start = text.index(f"\n### {title}")
    block = re.compile(r"^```\{code-block\} python\n(.*?)^```", re.DOTALL | re.MULTILINE)
    match = block.search(text, start)
    assert match is not None, f"no code block under {title!r}"
    return match.group(1)


def run(code: str, replacements: dict[str, str]) -> ft.TokenManager:
    for old, new in replacements.items():
        assert old in code, f"the recipe no longer mentions {old!r}"
        code = code.replace(old, new)
    namespace: dict[str, Any] = {"ft": ft, "os": __import__("os")}
    exec(compile(code, str(RECIPES), "exec"), namespace)
    tokens = namespace["tokens"]
    assert isinstance(tokens, ft.TokenManager)
    return tokens


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=300) as server:
        yield server


def rotate_and_fetch(tokens: ft.TokenManager, write: Any) -> list[ft.Token]:
    """Rewrite the platform's file, then take a new token, ``ROTATIONS`` times."""
    seen = []
    for n in range(1, ROTATIONS + 1):
        write(n)
        token = tokens.get()
        seen.append(token)
        tokens.invalidate(token)
    return seen


def test_kubernetes_to_entra_client_assertion(
    server: AuthorizationServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = signing_key()
    server.add_issuer(K8S_ISSUER, public)
    client = server.add_client(
        auth_methods="private_key_jwt", federated_credentials=[(K8S_ISSUER, SERVICE_ACCOUNT)]
    )
    rotator = Rotator(tmp_path, "kubelet")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_CLIENT_ID", client.client_id)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(rotator.path))
    url = "https://login.microsoftonline.com/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token"
    tokens = run(recipe("Kubernetes to Microsoft Entra ID"), {url: server.token_url})

    def write(n: int, sub: str = SERVICE_ACCOUNT) -> None:
        now = __import__("time").time()
        rotator.write(
            platform_token(private, iss=K8S_ISSUER, sub=sub, aud=server.token_url, now=now)
        )

    seen = rotate_and_fetch(tokens, write)
    assert [sub_of(token) for token in seen] == [client.client_id] * ROTATIONS
    assert server.token_requests == ROTATIONS
    # the file is what authenticates: a token for another service account is refused
    write(0, sub="system:serviceaccount:prod:other")
    with tokens, pytest.raises(ft.OAuthError) as refused:
        tokens.get()
    assert refused.value.error == "invalid_client"


@pytest.mark.parametrize(
    ("title", "path", "issuer", "replacements"),
    [
        (
            "Kubernetes to a token exchange",
            "/var/run/secrets/tokens/sts-token",
            K8S_ISSUER,
            {"https://sts.example.com/v1/token": "TOKEN_URL"},
        ),
        (
            "SPIFFE JWT-SVID to a JWT-bearer grant",
            "/run/spiffe/jwt_svid.token",
            SPIFFE_ISSUER,
            {"https://auth.example.com/oauth2/token": "TOKEN_URL"},
        ),
    ],
    ids=["kubernetes-exchange", "spiffe"],
)
def test_platform_token_file_recipes(
    server: AuthorizationServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    title: str,
    path: str,
    issuer: str,
    replacements: dict[str, str],
) -> None:
    private, public = signing_key()
    server.add_issuer(issuer, public)
    client = server.add_client()
    monkeypatch.setenv("STS_CLIENT_SECRET", client.client_secret or "")
    rotator = Rotator(tmp_path, "kubelet")
    code = recipe(title).replace('client_id="my-service"', f'client_id="{client.client_id}"')
    replacements = {
        **{old: server.token_url for old in replacements},
        path: str(rotator.path),
    }
    tokens = run(code, replacements)

    def write(n: int) -> None:
        now = __import__("time").time()
        rotator.write(
            platform_token(private, iss=issuer, sub=f"workload-{n}", aud=server.token_url, now=now)
        )

    with tokens:
        seen = rotate_and_fetch(tokens, write)
    # every token was obtained with the file's content at that moment
    assert [sub_of(token) for token in seen] == [f"workload-{n}" for n in range(1, ROTATIONS + 1)]
    assert server.token_requests == ROTATIONS


def test_github_actions_to_a_token_exchange(
    server: AuthorizationServer,
    runner: Runner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.add_issuer(GITHUB_ISSUER, runner.public_key)
    client = server.add_client()
    monkeypatch.setenv("STS_CLIENT_SECRET", client.client_secret or "")
    code = recipe("GitHub Actions OIDC to a token exchange").replace(
        'client_id="ci-deployer"', f'client_id="{client.client_id}"'
    )
    tokens = run(code, {"https://sts.example.com/v1/token": server.token_url})
    with tokens:
        seen = rotate_and_fetch(tokens, lambda n: None)
    assert [sub_of(token) for token in seen] == [GITHUB_SUBJECT] * ROTATIONS
    assert server.token_requests == ROTATIONS
    assert len(runner.requests) == 1  # one ID token, kept for its lifetime, served every request
