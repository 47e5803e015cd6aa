"""Helpers for the CLI tests: run the real command in a subprocess, and a closed port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshtoken.testing import AuthorizationServer

#: The console script installed next to the interpreter (``pip install -e .``).
SCRIPT = Path(sys.executable).parent / "freshtoken"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    script: bool = False,
    timeout: float = 60,
) -> Result:
    """Run ``python -m freshtoken ARGS`` (or the ``freshtoken`` script) to completion."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "freshtoken"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    environment.update(env or {})
    completed = subprocess.run(
        [*command, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FRESHTOKEN_* variable of the developer's shell leaks into in-process runs."""
    for name in list(os.environ):
        if name.startswith("FRESHTOKEN_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    """One server for a module's read-only tests (no faults, no counting)."""
    with AuthorizationServer(token_lifetime=120.0) as running:
        running.add_client()
        yield running
