"""``freshtoken serve``: a development server that prints its endpoints and test credentials,
injects the faults its flags ask for, and stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from freshtoken._cli.parser import build_parser, main
from freshtoken._cli.serve import serve
from freshtoken.testing import AuthorizationServer


@contextmanager
def _serving(*args: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    """``python -m freshtoken serve ARGS`` with its stdout lines arriving on a queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHTOKEN_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "freshtoken", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        reader.join(timeout=10)
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def _read_until(lines: queue.Queue[str], end: str) -> list[str]:
    seen: list[str] = []
    while True:
        line = lines.get(timeout=30)
        seen.append(line)
        if line.startswith(end):
            return seen


def _field(lines: list[str], label: str) -> str:
    line = next(line for line in lines if line.startswith(label))
    return line[len(label) :].split()[0]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_urls_and_credentials_serves_tokens_and_stops_cleanly(
    stop_signal: signal.Signals,
) -> None:
    with _serving("--lifetime", "30") as (process, lines):
        banner = _read_until(lines, "Stop with Ctrl-C")
        assert "generated test values, printed on purpose" in "\n".join(banner)
        token_url = _field(banner, "token URL")
        resource_url = _field(banner, "resource URL")
        assert _field(banner, "issuer").startswith("http://127.0.0.1:")
        client = next(line for line in banner if line.startswith("client "))
        client_id = client.split("id=")[1].split()[0]
        secret = client.split("secret=")[1]
        with httpx.Client() as http:
            response = http.post(
                token_url, data={"grant_type": "client_credentials"}, auth=(client_id, secret)
            )
            assert response.status_code == 200
            body = response.json()
            assert body["expires_in"] == 30
            api = http.get(
                resource_url, headers={"Authorization": f"Bearer {body['access_token']}"}
            )
            assert api.status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        err = process.stderr.read()
        assert "stopped after 1 token request(s), 1 resource request(s)" in err
        assert "Traceback" not in err


def test_serve_json_announces_named_clients() -> None:
    with _serving("--json", "--client-id", "my-app", "--client-secret", "dev-secret") as (
        process,
        lines,
    ):
        data = json.loads(lines.get(timeout=30))
        assert data["clients"] == [{"client_id": "my-app", "client_secret": "dev-secret"}]
        assert data["token_url"] == data["issuer"] + "/token"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


# -- in process -------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_faults_from_flags_reach_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    statuses: list[int] = []

    def exercise(server: AuthorizationServer) -> None:
        client = server.clients[1]
        with httpx.Client() as http:
            for _ in range(3):
                response = http.post(
                    server.token_url,
                    data={"grant_type": "client_credentials"},
                    auth=(client.client_id, client.client_secret or ""),
                )
                statuses.append(response.status_code)
        stop.set()

    args = _args(
        "--clients", "2", "--latency", "0.01", "--status", "429", "--retry-after", "3",
        "--times", "2", "--refresh-tokens", "--signing-algorithm", "RS256",
    )  # fmt: skip
    assert serve(args, stop, on_ready=exercise) == 0
    assert statuses == [429, 429, 200]
    out = capsys.readouterr().out
    assert out.count("\nclient ") == 2
    assert "faults        +0.01 s latency; HTTP 429, Retry-After 3 s, for 2 request(s)" in out


def test_a_scheduled_drop_and_clock_offset_are_described(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = threading.Event()
    stop.set()
    args = _args(
        "--drop", "--clock-offset", "-5", "--start", "1", "--duration", "2",
        "--fault-target", "both",
    )  # fmt: skip
    assert serve(args, stop) == 0
    out = capsys.readouterr().out
    assert "dropped connections, clock -5 s, from 1 s, for 2 s (on the both endpoint(s))" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clients", "0"], "--clients must be at least 1"),
        (["--lifetime", "0"], "--lifetime must be a positive number"),
        (["--latency", "-1"], "--latency must be a non-negative number"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--client-secret", "x"], "--client-secret goes with --client-id"),
        (["--retry-after", "5"], "--retry-after goes with --status"),
        (["--times", "3"], "schedule a fault: add --status"),
        (["--status", "503", "--times", "0"], "--times must be at least 1"),
        (["--status", "999"], "bad fault: status 999 is not an HTTP status code"),
    ],
)
def test_bad_flags_exit_2_saying_what_to_fix(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_port_in_use_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 3
    assert "choose another --port, or 0 for a free one" in capsys.readouterr().err


def test_serve_json_in_process_runs_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        assert serve(_args("--json"), stop) == 0
    finally:
        timer.cancel()
    data = json.loads(capsys.readouterr().out)
    assert data["token_lifetime"] == 300


def test_sigterm_stops_the_command_in_process_and_restores_handlers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert main(["serve"]) == 0
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) == before
    assert "stopped after 0 token request(s)" in capsys.readouterr().err
