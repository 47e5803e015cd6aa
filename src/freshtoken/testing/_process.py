"""Process mode: the server in a child Python process, controlled over ``/_admin/`` endpoints.

Why: a benchmark whose load generator and server share one interpreter measures the GIL, not the
client. The child reads its settings as one JSON line on stdin, answers with its port as one JSON
line on stdout, and serves until its stdin closes, so it also goes away if the parent dies.

Run by hand: ``python -m freshtoken.testing._process`` then type
``{"host": "127.0.0.1", "port": 8080, "admin_key": "secret", "config": {}}``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import IO, Any

import httpx

from freshtoken.testing._counters import CounterSnapshot
from freshtoken.testing._faults import Fault, FaultState
from freshtoken.testing._registry import Client

__all__ = ["AdminClient", "ServerProcess", "serve"]

_ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
}


class AdminClient:
    """Implements the control operations over a server's ``/_admin/`` endpoints."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.port = port
        self._http = httpx.Client(
            base_url=f"http://{host}:{port}/_admin/",
            headers={"X-Freshtoken-Admin": key},
            timeout=30.0,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, operation: str, **arguments: Any) -> Any:
        response = self._http.post(operation, json=arguments)
        data = response.json()
        if response.status_code != 200:
            raise _ERRORS.get(data.get("error"), RuntimeError)(data.get("message", data))
        return data["result"]

    # -- control operations, mirroring ServerCore ---------------------------------------

    def add_client(self, client: Client) -> Client:
        return Client.from_dict(self._call("add_client", client=client.to_dict()))

    def add_user(self, username: str, password: str) -> None:
        self._call("add_user", username=username, password=password)

    def add_issuer(self, issuer: str, public_key: str) -> None:
        self._call("add_issuer", issuer=issuer, public_key=public_key)

    def add_fault(
        self, fault: Fault, times: int | None, start: float, duration: float | None
    ) -> int:
        result: int = self._call(
            "add_fault", fault=fault.to_dict(), times=times, start=start, duration=duration
        )
        return result

    def fault_state(self, fault_id: int) -> FaultState:
        return FaultState(**self._call("fault_state", id=fault_id))

    def cancel_fault(self, fault_id: int) -> bool:
        return bool(self._call("cancel_fault", fault_id=fault_id))

    def clear_faults(self) -> None:
        self._call("clear_faults")

    def issue_token(
        self,
        *,
        client_id: str | None = None,
        sub: str | None = None,
        lifetime: float | None = None,
        scope: str | None = None,
        audience: str | list[str] | None = None,
        clock_offset: float = 0.0,
        claims: dict[str, Any] | None = None,
    ) -> str:
        return str(
            self._call(
                "issue_token",
                client_id=client_id,
                sub=sub,
                lifetime=lifetime,
                scope=scope,
                audience=audience,
                clock_offset=clock_offset,
                claims=claims,
            )
        )

    def demand(
        self, scope: str | None = None, acr_values: str | None = None, max_age: int | None = None
    ) -> None:
        self._call("demand", scope=scope, acr_values=acr_values, max_age=max_age)

    def revoke(self, token: str) -> bool:
        return bool(self._call("revoke", token=token))

    def revoke_client(self, client_id: str) -> None:
        self._call("revoke_client", client_id=client_id)

    def revoke_all(self) -> None:
        self._call("revoke_all")

    def counter_snapshot(self) -> CounterSnapshot:
        return CounterSnapshot(**self._call("counters"))

    def reset_counters(self) -> None:
        self._call("reset_counters")

    def dpop_nonce(self) -> str | None:
        nonce: str | None = self._call("dpop_nonce")
        return nonce

    def rotate_dpop_nonce(self) -> str:
        return str(self._call("rotate_dpop_nonce"))


class ServerProcess(AdminClient):
    """The parent's handle on a server subprocess."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, key: str) -> None:
        super().__init__(host, port, key)
        self.process = process

    @classmethod
    def spawn(cls, *, host: str, port: int, config: dict[str, Any]) -> ServerProcess:
        key = secrets.token_urlsafe(24)
        process = subprocess.Popen(
            [sys.executable, "-m", "freshtoken.testing._process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        settings = {"host": host, "port": port, "admin_key": key, "config": config}
        process.stdin.write(json.dumps(settings).encode() + b"\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            process.stdin.close()
            process.stdout.close()
            code = process.wait()
            raise RuntimeError(f"the server process exited with code {code} before serving")
        return cls(process, host, int(json.loads(line)["port"]), key)

    def close(self) -> None:
        """Close our stdin end (the child stops serving and exits) and reap the child."""
        super().close()
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if the child hangs
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    """The child's main: read settings, serve, report the port, run until stdin closes."""
    from freshtoken.testing._server import AuthorizationServer

    settings = json.loads(stdin.readline())
    server = AuthorizationServer(
        host=settings["host"],
        port=settings["port"],
        admin_key=settings["admin_key"],
        **settings["config"],
    )
    with server:
        stdout.write(json.dumps({"port": server.port}) + "\n")
        stdout.flush()
        stdin.read()  # until EOF: the parent closed our stdin, or died
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    raise SystemExit(serve(sys.stdin, sys.stdout))
