"""TokenFile and ClientAssertion against the real test server, with the file rotated by the test.

The file is rotated both ways the platforms do it: a plain rewrite of the same path, and the
kubelet's projected-volume layout (``token -> ..data/token``, ``..data -> ..<timestamp>``) whose
``..data`` symlink is swapped atomically with ``os.replace``. Time is a FakeClock shared by the
server and the manager: tokens and assertions expire when the test advances it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import freshtoken as ft
from freshtoken.testing import AuthorizationServer, FakeClock
from tests.grants.conftest import FAST

PLATFORM = "https://kubernetes.default.svc.cluster.local"
LIFETIMES = 6
TOKEN_LIFETIME = 60.0
_counter = itertools.count(1)


class Rotator:
    """Writes credential files as a plain rewrite or as the kubelet's symlink swap."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root = root
        self.mode = mode
        self.path = root / "token"
        self.writes = 0

    def write(self, text: str) -> None:
        self.writes += 1
        if self.mode == "rewrite":
            self.path.write_text(text + "\n", encoding="utf-8")
            return
        stamp = self.root / f"..2026_12_04_{self.writes:02d}"
        stamp.mkdir()
        (stamp / "token").write_text(text, encoding="utf-8")
        new_link = self.root / "..data_tmp"
        new_link.symlink_to(stamp.name)
        os.replace(new_link, self.root / "..data")  # the atomic swap the kubelet does
        if not self.path.is_symlink():
            self.path.symlink_to("..data/token")


MODES = pytest.mark.parametrize("mode", ["rewrite", "kubelet"])


def signing_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def platform_token(
    key: Any, *, iss: str, sub: str, aud: str, now: float, lifetime: float = 600.0
) -> str:
    claims = {
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "iat": int(now),
        "exp": int(now + lifetime),
        "jti": f"jti-{next(_counter)}",
    }
    return jwt.encode(claims, key, algorithm="ES256")


def sub_of(token: ft.Token) -> str:
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    sub = claims["sub"]
    assert isinstance(sub, str)
    return sub


def drive(manager: ft.TokenManager, use_async: bool) -> ft.Token:
    if not use_async:
        return manager.get()

    async def main() -> ft.Token:
        return await manager.aget()

    return asyncio.run(main())


@MODES
@pytest.mark.parametrize("use_async", [False, True], ids=["get", "aget"])
def test_jwt_bearer_assertion_file_rotated_across_lifetimes(
    tmp_path: Path, mode: str, use_async: bool
) -> None:
    clock = FakeClock()
    private, public = signing_key()
    rotator = Rotator(tmp_path, mode)
    with AuthorizationServer(token_lifetime=TOKEN_LIFETIME, clock=clock) as server:
        server.add_issuer(PLATFORM, public)
        source = ft.TokenFile(rotator.path)
        rotator.write(
            platform_token(private, iss=PLATFORM, sub="w-1", aud=server.token_url, now=clock.time())
        )
        grant = ft.JWTBearerGrant(server.token_url, source)
        failed = 0
        with ft.TokenManager(grant, policy=FAST, clock=clock) as manager:
            for n in range(1, LIFETIMES + 1):
                if n > 1:
                    rotator.write(
                        platform_token(
                            private,
                            iss=PLATFORM,
                            sub=f"w-{n}",
                            aud=server.token_url,
                            now=clock.time(),
                        )
                    )
                # two token lifetimes per file: the second request reuses the unchanged file
                for _ in range(2):
                    try:
                        token = drive(manager, use_async)
                        for _ in range(3):  # cached: no request, no stat, no read
                            assert drive(manager, use_async) is token
                    except ft.FreshTokenError:  # pragma: no cover - the failure being counted
                        failed += 1
                        continue
                    assert sub_of(token) == f"w-{n}"  # the server got the current assertion
                    clock.advance(TOKEN_LIFETIME + 1)
        assert failed == 0
        assert source.reads == rotator.writes == LIFETIMES  # one read per change
        assert server.token_requests == 2 * LIFETIMES


@MODES
def test_client_assertion_file_rotated_across_lifetimes(tmp_path: Path, mode: str) -> None:
    """The server refuses a client assertion's jti the second time: a file not re-read after
    its rotation would fail the next token request."""
    clock = FakeClock()
    rotator = Rotator(tmp_path, mode)
    with AuthorizationServer(token_lifetime=TOKEN_LIFETIME, clock=clock) as server:
        client = server.add_client(auth_methods="private_key_jwt")
        assert client.private_key is not None
        key = serialization.load_pem_private_key(client.private_key.encode(), password=None)
        source = ft.TokenFile(rotator.path)

        def rotate() -> None:
            rotator.write(
                platform_token(
                    key,
                    iss=client.client_id,
                    sub=client.client_id,
                    aud=server.token_url,
                    now=clock.time(),
                )
            )

        rotate()
        grant = ft.ClientCredentials(
            server.token_url, client.client_id, auth=ft.ClientAssertion(source)
        )
        with ft.TokenManager(grant, policy=FAST, clock=clock) as manager:
            for _ in range(LIFETIMES):
                token = manager.get()
                assert sub_of(token) == client.client_id
                clock.advance(TOKEN_LIFETIME + 1)
                rotate()
        assert source.reads == LIFETIMES
        assert server.token_requests == LIFETIMES
        assert server.counters.unauthorized == {}
        # the same file content twice: the server refuses the replayed jti
        with ft.TokenManager(grant, policy=FAST, clock=clock) as manager:
            manager.get()
        with (
            ft.TokenManager(grant, policy=FAST, clock=clock) as manager,
            pytest.raises(ft.OAuthError) as refused,
        ):
            manager.get()
        assert refused.value.error == "invalid_client"


@MODES
def test_token_file_as_source_and_as_subject_token(tmp_path: Path, mode: str) -> None:
    clock = FakeClock()
    rotator = Rotator(tmp_path, mode)
    with AuthorizationServer(token_lifetime=TOKEN_LIFETIME, clock=clock) as server:
        client = server.add_client()
        source = ft.TokenFile(rotator.path)
        exchange = ft.TokenExchange(
            server.token_url, source, "access_token", client.client_id, client.client_secret
        )
        with (
            ft.TokenManager(source, policy=FAST, clock=clock) as direct,
            ft.TokenManager(exchange, policy=FAST, clock=clock) as exchanged,
        ):
            for n in range(1, LIFETIMES + 1):
                rotator.write(server.issue_token(sub=f"user-{n}", lifetime=TOKEN_LIFETIME))
                token = direct.get()
                assert sub_of(token) == f"user-{n}"
                assert token.expires_at is not None
                assert token.expires_at.timestamp() == pytest.approx(
                    clock.time() + TOKEN_LIFETIME, abs=1
                )
                assert sub_of(exchanged.get()) == f"user-{n}"
                clock.advance(TOKEN_LIFETIME + 1)
        assert source.reads == LIFETIMES


def test_identity_is_the_path_so_no_key_is_needed(tmp_path: Path) -> None:
    first, second = ft.TokenFile(tmp_path / "a"), ft.TokenFile(tmp_path / "b")
    url = "https://as.example/token"
    grants = [ft.JWTBearerGrant(url, first), ft.JWTBearerGrant(url, second)]
    assert all(grant.unidentified is None for grant in grants)
    assert grants[0].key != grants[1].key
    assert ft.JWTBearerGrant(url, ft.TokenFile(tmp_path / "a")).key == grants[0].key
    assert first.key == f"file:{tmp_path / 'a'}"
    assert ft.TokenExchange(url, first, "jwt", "c").unidentified is None
    by_file = [ft.ClientCredentials(url, "c", auth=ft.ClientAssertion(f)) for f in (first, second)]
    assert by_file[0].unidentified is None
    assert by_file[0].key != by_file[1].key
    assert ft.ClientCredentials(url, "c", auth=ft.ClientAssertion("a.b.c")).unidentified is None
    closure = ft.ClientCredentials(url, "c", auth=ft.ClientAssertion(lambda: "a.b.c"))
    assert closure.unidentified is not None
    assert "client assertion callable" in closure.unidentified
    with pytest.raises(ft.ConfigurationError, match="key="):
        ft.TokenManager(closure, store=ft.FileStore(tmp_path / "store"))
    ft.TokenManager(by_file[0], store=ft.FileStore(tmp_path / "store")).close()


SECRET = "eyJhbGciOiJub25lIn0.c2VjcmV0LWNvbnRlbnQ.sig"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"  \n\t ", "is empty"),
        (b"\xff\xfe" + SECRET.encode(), "is not UTF-8"),
        (b"x" * (64 * 1024 + 1), "larger than"),
        ("dir", "not a regular file"),
    ],
    ids=["missing", "empty", "whitespace", "not-utf8", "too-large", "directory"],
)
def test_bad_files_are_typed_errors_naming_the_path_not_the_content(
    tmp_path: Path, content: bytes | str | None, problem: str
) -> None:
    path = tmp_path / "token"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    source = ft.TokenFile(path)
    with pytest.raises(ft.ConfigurationError) as caught:
        source()
    message = str(caught.value)
    assert problem in message
    assert str(path) in message
    assert "c2VjcmV0" not in message and "xxxx" not in message
    assert source.reads == (1 if isinstance(content, bytes) and problem != "larger than" else 0)


def test_dangling_kubelet_link_and_unreadable_file(tmp_path: Path) -> None:
    link = tmp_path / "token"
    link.symlink_to("..data/token")
    with pytest.raises(ft.ConfigurationError, match="does not exist"):
        ft.TokenFile(link)()
    private = tmp_path / "private"
    private.write_text(SECRET)
    private.chmod(0)
    try:
        if os.access(private, os.R_OK):  # pragma: no cover - running as root
            pytest.skip("root reads any file")
        with pytest.raises(ft.ConfigurationError, match="cannot be read") as caught:
            ft.TokenFile(private)()
        assert SECRET not in str(caught.value)
    finally:
        private.chmod(0o600)


def test_stripped_cached_and_repr_names_the_path_only(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"\n  {SECRET}  \n")
    source = ft.TokenFile(str(path))
    assert source() == SECRET
    assert source() == SECRET
    assert source.reads == 1
    assert source.path == path
    assert repr(source) == f"TokenFile({str(path)!r})"
    assert SECRET not in repr(ft.ClientAssertion(source))
    assert repr(ft.ClientAssertion(SECRET)) == "ClientAssertion(...)"


@pytest.mark.parametrize("bad", ["", None, 42])
def test_constructor_checks(bad: object) -> None:
    with pytest.raises(ft.ConfigurationError):
        ft.TokenFile(bad)  # type: ignore[arg-type]
    with pytest.raises(ft.ConfigurationError):
        ft.ClientAssertion(bad)  # type: ignore[arg-type]


def test_client_assertion_with_a_secret_or_a_failing_callable() -> None:
    url = "https://as.example/token"
    with pytest.raises(ft.ConfigurationError, match="drop client_secret"):
        ft.ClientCredentials(url, "c", "s", auth=ft.ClientAssertion("a.b.c"))

    def broken() -> str:
        raise RuntimeError("no token")

    def empty() -> str:
        return ""

    with pytest.raises(ft.TokenRequestError, match="raised RuntimeError"):
        ft.ClientAssertion(broken).value()
    with pytest.raises(ft.TokenRequestError, match="returned str"):
        ft.ClientAssertion(empty).value()
    assert ft.ClientAssertion(empty).identity.startswith("callable:")
    assert ft.ClientAssertion("a.b.c").identity.startswith("sha256:")


def test_client_assertion_without_client_id_sends_none(
    oauth_server: AuthorizationServer,
) -> None:
    """RFC 7523 §2.2 makes client_id optional: the server learns the client from ``sub``."""
    server = oauth_server
    client = server.add_client(auth_methods="private_key_jwt")
    assert client.private_key is not None
    key = serialization.load_pem_private_key(client.private_key.encode(), password=None)

    def assertion() -> str:
        return platform_token(
            key,
            iss=client.client_id,
            sub=client.client_id,
            aud=server.token_url,
            now=time.time(),
        )

    grant = ft.JWTBearerGrant(
        server.token_url,
        platform_token(key, iss=client.client_id, sub="u", aud=server.token_url, now=time.time()),
        auth=ft.ClientAssertion(assertion),
        key="fixed",
    )
    with ft.TokenManager(grant, policy=FAST) as manager:
        assert sub_of(manager.get()) == "u"
