"""``freshtoken token``: get an access token with the client credentials grant and print it.

Settings come from flags, else from ``FRESHTOKEN_<FLAG>`` environment variables. The client secret
is never a flag, so it never lands in shell history or ``ps`` output; it comes, in this order, from
``--client-secret-file PATH`` (or ``FRESHTOKEN_CLIENT_SECRET_FILE``), ``--client-secret-stdin``,
or ``FRESHTOKEN_CLIENT_SECRET``. Standard input is read only when asked: reading it whenever it is
not a terminal would hang a script or CI job whose stdin is an open pipe.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from freshtoken._core.errors import ConfigurationError
from freshtoken._core.token import Token

from .common import EXIT_OK, REDACTED, SECRETS, split_list

__all__ = ["TokenSettings", "read_secret", "render_json", "resolve_settings", "run"]

_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "none")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_SECRET_HELP = (
    "give the client secret in one of three ways: set FRESHTOKEN_CLIENT_SECRET, "
    "pass --client-secret-file PATH, or pipe it with --client-secret-stdin "
    "(or use --auth none for a public client)"
)
#: Response fields that are secrets besides the access token (redacted unless --show-secrets).
_SECRET_FIELDS = ("refresh_token", "id_token")


@dataclass(frozen=True)
class TokenSettings:
    """The resolved configuration of one ``freshtoken token`` run (no secret in it)."""

    token_url: str | None
    issuer: str | None
    client_id: str
    scope: str | None
    audience: tuple[str, ...]
    resource: tuple[str, ...]
    auth: str
    timeout: float | None
    allow_insecure_http: bool
    secret_file: str | None
    secret_stdin: bool


def _flag_or_env(value: str | None, environ: Mapping[str, str], name: str) -> str | None:
    if value:
        return value
    return environ.get(f"FRESHTOKEN_{name}") or None


def _env_bool(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(f"FRESHTOKEN_{name}", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"FRESHTOKEN_{name} must be 1/true/yes or 0/false/no")


def resolve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> TokenSettings:
    """Flags over environment variables; ConfigurationError naming the flag for what is missing
    or malformed."""
    token_url = _flag_or_env(args.token_url, environ, "TOKEN_URL")
    issuer = _flag_or_env(args.issuer, environ, "ISSUER")
    if token_url and issuer:
        raise ConfigurationError(
            "both a token URL and an issuer are set; give one of --token-url "
            "(FRESHTOKEN_TOKEN_URL) and --issuer (FRESHTOKEN_ISSUER)"
        )
    if not token_url and not issuer:
        raise ConfigurationError(
            "no token endpoint: give --token-url URL or --issuer URL "
            "(or set FRESHTOKEN_TOKEN_URL / FRESHTOKEN_ISSUER)"
        )
    client_id = _flag_or_env(args.client_id, environ, "CLIENT_ID")
    if not client_id:
        raise ConfigurationError("no client id: give --client-id or set FRESHTOKEN_CLIENT_ID")
    auth = _flag_or_env(args.auth, environ, "AUTH") or "client_secret_basic"
    if auth not in _AUTH_METHODS:
        raise ConfigurationError(f"FRESHTOKEN_AUTH must be one of {', '.join(_AUTH_METHODS)}")
    timeout: float | None = args.timeout
    raw_timeout = environ.get("FRESHTOKEN_TIMEOUT")
    if timeout is None and raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigurationError("FRESHTOKEN_TIMEOUT must be a number of seconds") from None
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError("--timeout must be a positive number of seconds")
    insecure = bool(args.allow_insecure_http) or _env_bool(environ, "ALLOW_INSECURE_HTTP")
    return TokenSettings(
        token_url=token_url,
        issuer=issuer,
        client_id=client_id,
        scope=_flag_or_env(args.scope, environ, "SCOPE"),
        audience=tuple(split_list(args.audience, environ.get("FRESHTOKEN_AUDIENCE"))),
        resource=tuple(split_list(args.resource, environ.get("FRESHTOKEN_RESOURCE"))),
        auth=auth,
        timeout=timeout,
        allow_insecure_http=insecure,
        secret_file=_flag_or_env(args.client_secret_file, environ, "CLIENT_SECRET_FILE"),
        secret_stdin=bool(args.client_secret_stdin),
    )


def _one_line(text: str, where: str) -> str:
    secret = text.rstrip("\r\n")
    if not secret:
        raise ConfigurationError(f"the client secret from {where} is empty; {_SECRET_HELP}")
    if "\n" in secret or "\r" in secret:
        raise ConfigurationError(
            f"the client secret from {where} spans several lines; put the secret alone on one line"
        )
    return secret


def read_secret(settings: TokenSettings, environ: Mapping[str, str], stdin: IO[str]) -> str | None:
    """The client secret from the first source given (file, stdin, environment), or ``None``
    for ``--auth none``. ConfigurationError naming the three ways when there is none."""
    if settings.auth == "none":
        if settings.secret_file or settings.secret_stdin:
            raise ConfigurationError(
                "--auth none sends no client secret; drop --client-secret-file / "
                "--client-secret-stdin"
            )
        return None
    if settings.secret_file:
        try:
            with open(settings.secret_file, encoding="utf-8") as file:
                text = file.read(64 * 1024 + 1)
        except OSError as error:
            raise ConfigurationError(
                f"cannot read --client-secret-file {settings.secret_file!r}: "
                f"{error.strerror or type(error).__name__}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"--client-secret-file {settings.secret_file!r} is not UTF-8 text"
            ) from None
        return _one_line(text, "--client-secret-file")
    if settings.secret_stdin:
        return _one_line(stdin.readline(64 * 1024), "standard input")
    from_env = environ.get("FRESHTOKEN_CLIENT_SECRET")
    if from_env:
        return from_env
    raise ConfigurationError(f"no client secret; {_SECRET_HELP}")


def render_json(token: Token, *, show_secrets: bool) -> str:
    """The token response as JSON: standard fields, ``expires_in`` as received (from
    ``expires_at - issued_at``), other fields as the server sent them; refresh and id tokens (and
    extra fields whose names say they are tokens or secrets) redacted unless ``show_secrets``."""
    data: dict[str, Any] = {
        "access_token": token.access_token,
        "token_type": token.token_type,
    }
    lifetime = token.lifetime
    if lifetime is not None:
        data["expires_in"] = int(lifetime) if float(lifetime).is_integer() else lifetime
        assert token.expires_at is not None
        data["expires_at"] = token.expires_at.isoformat()
    if token.scope is not None:
        data["scope"] = token.scope
    for name in _SECRET_FIELDS:
        value = getattr(token, name)
        if value is not None:
            data[name] = value if show_secrets else REDACTED
    for name, value in token.extra.items():
        lowered = name.lower()
        secretive = lowered.endswith("token") or "secret" in lowered or "password" in lowered
        data[name] = REDACTED if secretive and not show_secrets else value
    data["fingerprint"] = token.fingerprint
    return json.dumps(data, indent=2, default=str)


def run(args: argparse.Namespace) -> int:
    import freshtoken as ft
    from freshtoken._oauth.client_auth import AuthMethod, ClientSecretJWT
    from freshtoken._oauth.grants import ClientCredentials

    environ = os.environ
    settings = resolve_settings(args, environ)
    secret = read_secret(settings, environ, sys.stdin)
    SECRETS.add(secret)
    methods: dict[str, AuthMethod] = {
        "client_secret_basic": "client_secret_basic",
        "client_secret_post": "client_secret_post",
        "none": "none",
    }
    auth = methods.get(settings.auth) or ClientSecretJWT()
    source = ClientCredentials(
        settings.token_url,
        settings.client_id,
        secret,
        issuer=settings.issuer,
        scope=settings.scope,
        audience=settings.audience or None,
        resource=settings.resource or None,
        auth=auth,
        timeout=settings.timeout,
        allow_insecure_http=settings.allow_insecure_http,
    )
    with ft.TokenManager(source) as tokens:
        token = tokens.get()
    SECRETS.add(token.access_token, token.refresh_token, token.id_token)
    if args.json:
        print(render_json(token, show_secrets=args.show_secrets))
    else:
        print(token.access_token)
    return EXIT_OK
