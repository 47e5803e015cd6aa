"""The ``freshtoken`` command: ``token``, ``inspect``, ``serve`` and ``demo``.

This module only parses the command line and turns outcomes into exit codes; each sub-command
lives in its own module, imported when it runs, so ``freshtoken inspect`` never pays for the test
server and ``freshtoken --help`` for nothing at all.

Exit codes (see :mod:`freshtoken._cli.common`): 0 ok, 1 unexpected (the only case with a
traceback, scrubbed of every secret the command handled), 2 usage, 3 configuration, 4 the server
refused, 5 the token endpoint is unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from freshtoken._core.errors import (
    ConfigurationError,
    FreshTokenError,
    OAuthError,
    TokenEndpointUnavailable,
    TokenResponseError,
)

from .common import (
    EXIT_CONFIGURATION,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    EXIT_UNEXPECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    SECRETS,
    UsageError,
)

__all__ = ["build_parser", "main"]

_PROG = "freshtoken"

#: What to check when the server refuses, by RFC 6749 §5.2 error code.
_OAUTH_HINTS = {
    "invalid_client": "check --client-id and the client secret, and --auth (the method the "
    "client is registered with)",
    "unauthorized_client": "the client may not use this grant: check its registration",
    "invalid_scope": "check --scope against the scopes the client may request",
    "invalid_target": "check --resource / --audience against what the server accepts",
    "invalid_request": "check the flags against what the server expects",
    "access_denied": "the server denied the request: check the client's permissions",
}


class _RefuseSecretFlag(argparse.Action):
    """``--client-secret VALUE`` exists only to say why it does not: the value would stay in
    shell history and in ``ps`` output. The value is never echoed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "there is no --client-secret flag: a secret on the command line stays in shell "
            "history. Set FRESHTOKEN_CLIENT_SECRET, or use --client-secret-file PATH or "
            "--client-secret-stdin"
        )


def _env(name: str, note: str = "") -> str:
    return f"(env FRESHTOKEN_{name}{note})"


def _add_token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        allow_abbrev=False,
        help="get an access token (client credentials) and print it",
        description=(
            "Get an access token with the client credentials grant and print it alone on the "
            "last line (or --json). Every flag can also be set as FRESHTOKEN_<FLAG>. The client "
            "secret is never a flag (it would stay in your shell history): set "
            "FRESHTOKEN_CLIENT_SECRET, or use --client-secret-file PATH or --client-secret-stdin."
        ),
    )
    where = parser.add_argument_group("where to get the token (one of)")
    where.add_argument("--token-url", help=f"the token endpoint {_env('TOKEN_URL')}")
    where.add_argument(
        "--issuer", help=f"the issuer; its token endpoint is discovered {_env('ISSUER')}"
    )
    parser.add_argument("--client-id", help=f"the client id {_env('CLIENT_ID')}")
    parser.add_argument("--scope", help=f"space-separated scopes {_env('SCOPE')}")
    parser.add_argument(
        "--audience",
        action="append",
        help=f"an audience; repeatable {_env('AUDIENCE', ', space-separated')}",
    )
    parser.add_argument(
        "--resource",
        action="append",
        help=f"an RFC 8707 resource URI; repeatable {_env('RESOURCE', ', space-separated')}",
    )
    parser.add_argument(
        "--auth",
        choices=("client_secret_basic", "client_secret_post", "client_secret_jwt", "none"),
        help=f"client authentication (default client_secret_basic) {_env('AUTH')}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per connect/read of each request {_env('TIMEOUT')}",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=None,
        help="allow http:// endpoints on hosts other than loopback "
        f"{_env('ALLOW_INSECURE_HTTP', '=1')}",
    )
    parser.add_argument("--client-secret", action=_RefuseSecretFlag, help=argparse.SUPPRESS)
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help=f"read the client secret from this file {_env('CLIENT_SECRET_FILE')}",
    )
    secret.add_argument(
        "--client-secret-stdin",
        action="store_true",
        help="read the client secret from standard input (one line)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the whole token response as JSON (refresh and id tokens redacted)",
    )
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="with --json: show the refresh token and id token too",
    )
    parser.set_defaults(handler="freshtoken._cli.token")


def _add_inspect_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "inspect",
        allow_abbrev=False,
        help="decode a JWT and show its timing",
        description=(
            "Decode a JWT (without verifying it, unless --jwks is given) and show its header, "
            "claims, when it was issued and expires, and where freshtoken's default refresh "
            "policy would refresh it. A token given as an argument stays in your shell history: "
            "prefer `-` and a pipe, e.g. `pbpaste | freshtoken inspect -`."
        ),
    )
    parser.add_argument(
        "token",
        nargs="?",
        default="-",
        help="the JWT, or - (the default) to read it from standard input",
    )
    parser.add_argument(
        "--jwks",
        metavar="URL",
        help="verify the signature with the keys at this JWKS URL (expiry is shown, not enforced)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow an http:// JWKS URL on a host other than loopback",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler="freshtoken._cli.inspect")


def _add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        allow_abbrev=False,
        help="run a local authorization server for development",
        description=(
            "Run freshtoken's test authorization server on 127.0.0.1 (token endpoint, discovery, "
            "JWKS and a protected resource that checks tokens strictly) and print its URLs and "
            "the client credentials it generated. It is a development server: the credentials "
            "are throwaway test values and are printed on purpose. Ctrl-C or SIGTERM stops it."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--lifetime", type=float, default=300.0, help="token lifetime in seconds (default 300)"
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="how many clients to register (default 1)"
    )
    parser.add_argument("--client-id", help="register one client with this id")
    parser.add_argument(
        "--client-secret", help="its secret (a test credential; default: generated)"
    )
    parser.add_argument(
        "--refresh-tokens",
        action="store_true",
        help="also issue refresh tokens for client_credentials",
    )
    parser.add_argument(
        "--signing-algorithm",
        choices=("ES256", "RS256", "PS256", "EdDSA"),
        default="ES256",
        help="how tokens are signed (default ES256)",
    )
    parser.add_argument("--json", action="store_true", help="print the endpoints as one JSON line")
    faults = parser.add_argument_group(
        "fault injection",
        "--latency delays every request of the target; --status, --drop and --clock-offset "
        "form one fault, scheduled with --times, --start and --duration.",
    )
    faults.add_argument(
        "--fault-target",
        choices=("token", "resource", "both", "all"),
        default="token",
        help="which endpoints the faults hit (default token)",
    )
    faults.add_argument("--latency", type=float, default=0.0, help="seconds of added latency")
    faults.add_argument("--status", type=int, help="answer with this HTTP status (503, 429...)")
    faults.add_argument(
        "--retry-after", type=float, help="with --status: a Retry-After header, in seconds"
    )
    faults.add_argument("--drop", action="store_true", help="close connections without answering")
    faults.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        help="seconds added to the server's clock for iat/exp and Date",
    )
    faults.add_argument("--times", type=int, help="apply the fault to this many requests only")
    faults.add_argument("--start", type=float, default=0.0, help="from this many seconds on")
    faults.add_argument("--duration", type=float, help="for this many seconds")
    parser.set_defaults(handler="freshtoken._cli.serve")


def _add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        allow_abbrev=False,
        help="run a long workload through freshtoken against a local server",
        description=(
            "Start the local authorization server with short-lived tokens and call its "
            "protected resource for several token lifetimes from threads and asyncio tasks at "
            "once (the @ft.authenticated decorator, httpx sync and async, requests), all sharing "
            "one TokenManager. Exit 0 only when no call failed and the token requests match the "
            "lifetimes."
        ),
    )
    parser.add_argument(
        "--duration", type=float, default=12.0, help="seconds of calls (default 12)"
    )
    parser.add_argument(
        "--lifetime", type=float, default=2.0, help="token lifetime in seconds (default 2)"
    )
    parser.add_argument(
        "--compare-seed",
        action="store_true",
        help="also run the blog post's naive pattern on the same server, side by side",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.02,
        help="seconds each worker waits between calls (default 0.02)",
    )
    parser.set_defaults(handler="freshtoken._cli.demo")


def build_parser() -> argparse.ArgumentParser:
    from freshtoken import __version__

    parser = argparse.ArgumentParser(
        prog=_PROG,
        allow_abbrev=False,
        description="Keep OAuth2 and JWT access tokens fresh: tools around the freshtoken library.",
        epilog=(
            "exit codes: 0 ok, 1 unexpected error, 2 usage, 3 configuration, "
            "4 the server refused, 5 the token endpoint is unreachable, 130 interrupted"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log freshtoken's lifecycle events (fingerprints only, never tokens) to stderr",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_token_parser(commands)
    _add_inspect_parser(commands)
    _add_serve_parser(commands)
    _add_demo_parser(commands)
    return parser


def _fail(command: str, message: str, hint: str | None = None) -> None:
    text = f"{_PROG} {command}: error: {message}"
    if hint:
        text += f"\n  to fix: {hint}"
    print(SECRETS.scrub(text), file=sys.stderr)


def _explain(command: str, error: FreshTokenError) -> int | None:
    """Print an expected error with what to fix and return its exit code; ``None`` for an error
    nobody anticipated (a token source that raised something foreign, wrapped by the manager)."""
    if isinstance(error, ConfigurationError):
        _fail(command, error.message)
        return EXIT_CONFIGURATION
    if isinstance(error, OAuthError):
        hint = _OAUTH_HINTS.get(error.error, f"the server's error code is {error.error!r}")
        _fail(command, error.message, hint)
        return EXIT_REFUSED
    if isinstance(error, TokenEndpointUnavailable):
        hint = "check --token-url / --issuer and that the server is up and reachable"
        if error.retry_after is not None:
            hint += f"; try again in {error.retry_after:.0f} s or later"
        _fail(command, error.message, hint)
        return EXIT_UNREACHABLE
    if isinstance(error, TokenResponseError):
        _fail(command, error.message, "the endpoint did not answer like an OAuth token endpoint")
        return EXIT_REFUSED
    return None


def _unexpected(command: str, error: BaseException) -> int:
    details = "".join(traceback.format_exception(error))
    print(SECRETS.scrub(details), file=sys.stderr, end="")
    _fail(command, f"unexpected {type(error).__name__}; this is a bug, please report it")
    return EXIT_UNEXPECTED


def _quiet_library_logs(verbose: bool) -> logging.Handler:
    """Route freshtoken's log records: to stderr with ``-v``, else nowhere (the command reports
    failures itself; without a handler Python would print WARNING records as well)."""
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("freshtoken").setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    logging.getLogger("freshtoken").addHandler(handler)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error argparse printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    command: str = args.command
    library_logger = logging.getLogger("freshtoken")
    level = library_logger.level
    handler = _quiet_library_logs(args.verbose)
    try:
        module = importlib.import_module(args.handler)
        code: int = module.run(args)
        return code
    except UsageError as error:
        _fail(command, str(error))
        return EXIT_USAGE
    except FreshTokenError as error:
        explained = _explain(command, error)
        return _unexpected(command, error) if explained is None else explained
    except KeyboardInterrupt:
        print(f"{_PROG} {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        return _unexpected(command, error)
    finally:
        library_logger.removeHandler(handler)
        library_logger.setLevel(level)
        SECRETS.clear()
