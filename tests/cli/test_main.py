"""The ``freshtoken`` entry point: help, version, usage errors and interruption."""

from __future__ import annotations

import io
import logging

import pytest

from freshtoken import __version__
from freshtoken._cli import main

from .conftest import run_cli


def test_without_a_command_it_shows_help_and_exits_2() -> None:
    result = run_cli(script=True)
    assert result.code == 2
    for command in ("token", "inspect", "serve", "demo"):
        assert command in result.stderr
    assert "exit codes: 0 ok, 1 unexpected error, 2 usage, 3 configuration" in result.stderr


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: freshtoken" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"freshtoken {__version__}"
    assert main(["token", "--help"]) == 0
    assert "FRESHTOKEN_CLIENT_SECRET" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["frobnicate"], ["token", "--nope"], ["serve", "--port", "eighty"], ["demo", "--dur", "3"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_ctrl_c_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class InterruptedInput(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            raise KeyboardInterrupt

    monkeypatch.setattr("sys.stdin", InterruptedInput())
    assert main(["inspect", "-"]) == 130
    err = capsys.readouterr().err
    assert err == "freshtoken inspect: interrupted\n"


def test_the_library_logger_is_left_as_it_was(capsys: pytest.CaptureFixture[str]) -> None:
    library = logging.getLogger("freshtoken")
    handlers, level = list(library.handlers), library.level
    main(["-v", "inspect", "not-a-jwt"])
    main(["inspect", "not-a-jwt"])
    assert library.handlers == handlers
    assert library.level == level
    capsys.readouterr()


def test_python_dash_m_runs_the_same_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    import freshtoken.__main__ as entry

    # Run the module's code as `python -m` does (runpy cannot: pytest rewrites this package).
    path = Path(entry.__file__)
    code = compile(path.read_text(), str(path), "exec")
    monkeypatch.setattr("sys.argv", ["freshtoken", "--version"])
    with pytest.raises(SystemExit) as exit_:
        exec(code, {"__name__": "__main__"})
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("freshtoken ")


def test_no_command_in_process_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: freshtoken" in capsys.readouterr().err


def test_a_foreign_error_exits_1_with_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import jwt

    def broken(self: object, token: str) -> object:
        raise RuntimeError("the key client broke")

    monkeypatch.setattr(jwt.PyJWKClient, "get_signing_key_from_jwt", broken)
    token = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"  # {"alg": "ES256"}.{}.sig
    assert main(["inspect", "--jwks", "https://keys.example/jwks", token]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "RuntimeError: the key client broke" in err
    assert "freshtoken inspect: error: unexpected RuntimeError; this is a bug" in err


def test_repeated_flags_win_over_the_space_separated_variable() -> None:
    from freshtoken._cli.common import split_list

    assert split_list(["a", "", "b"], "x y") == ["a", "b"]
    assert split_list(None, " x  y ") == ["x", "y"]
    assert split_list([], None) == []


def test_a_client_secret_flag_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--client-secret", "hunter2-secret"]) == 2
    err = capsys.readouterr().err
    assert "there is no --client-secret flag" in err
    assert "hunter2-secret" not in err
