"""A stand-in for the GitHub Actions runner's ID-token endpoint: a real HTTP server on 127.0.0.1.

It answers as GitHub's does: ``GET <ACTIONS_ID_TOKEN_REQUEST_URL>&audience=<aud>`` with
``Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>`` returns ``{"count": 1, "value": <JWT>}``,
an ES256 ID token from ``https://token.actions.githubusercontent.com``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from .test_tokenfile import signing_key

ISSUER = "https://token.actions.githubusercontent.com"
REQUEST_TOKEN = "ghs-runner-request-token-0123456789abcdef"
SUBJECT = "repo:freshtoken/freshtoken:ref:refs/heads/main"


@dataclass
class Runner:
    """What the stand-in was asked, and how it should answer next."""

    url: str = ""
    lifetime: float = 600.0
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # canned answers, in order
    requests: list[dict[str, Any]] = field(default_factory=list)
    public_key: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def serve_runner(monkeypatch: pytest.MonkeyPatch) -> Generator[Runner, None, None]:
    """Start the stand-in and point the job's environment variables at it."""
    private, public = signing_key()
    state = Runner()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            with state.lock:
                state.requests.append(
                    {"authorization": self.headers.get("Authorization"), "query": query}
                )
                canned = state.answers.pop(0) if state.answers else None
            if canned is not None:
                status, body = canned
            elif self.headers.get("Authorization") != f"Bearer {REQUEST_TOKEN}":
                status, body = 401, b'{"message": "Bad credentials"}'
            else:
                now = time.time()
                audience = query.get("audience", ["https://github.com/freshtoken"])[0]
                claims = {
                    "iss": ISSUER,
                    "sub": SUBJECT,
                    "aud": audience,
                    "iat": int(now),
                    "nbf": int(now) - 5,
                    "exp": int(now + state.lifetime),
                    "jti": f"gh-{len(state.requests)}",
                }
                value = jwt.encode(claims, private, algorithm="ES256")
                status, body = 200, json.dumps({"count": 1, "value": value}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/_apis/token?api-version=2.0"
    state.public_key = public
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", state.url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
