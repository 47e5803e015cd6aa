"""Test tooling: a real local OAuth 2.0 authorization server with fault injection.

``AuthorizationServer`` is a real HTTP server on 127.0.0.1 (token endpoint, JWKS, discovery, a
strictly validating protected resource) whose failures can be scripted: latency, 5xx, 429 with
``Retry-After``, dropped connections, broken bodies, revocation, clock skew. The pytest plugin
(installed with the package) provides the ``oauth_server`` and ``fake_clock`` fixtures.

The server imports nothing of freshtoken but its clock, so that a bug in the library cannot hide
a bug in the server it is tested against (and vice versa).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from freshtoken._runtime.clock import FakeClock

if TYPE_CHECKING:
    from freshtoken.testing._counters import CounterSnapshot
    from freshtoken.testing._faults import Fault, FaultHandle, FaultState
    from freshtoken.testing._registry import AuthMethod, Client, GrantType
    from freshtoken.testing._server import AuthorizationServer, FaultInjector

__all__ = [
    "AuthMethod",
    "AuthorizationServer",
    "Client",
    "CounterSnapshot",
    "FakeClock",
    "Fault",
    "FaultHandle",
    "FaultInjector",
    "FaultState",
    "GrantType",
]

# Loaded on first use (PEP 562): pytest imports this package in every session through the plugin
# entry point, and a session that never starts a server should not pay for cryptography and PyJWT.
_LAZY = {
    "AuthMethod": "freshtoken.testing._registry",
    "AuthorizationServer": "freshtoken.testing._server",
    "Client": "freshtoken.testing._registry",
    "CounterSnapshot": "freshtoken.testing._counters",
    "Fault": "freshtoken.testing._faults",
    "FaultHandle": "freshtoken.testing._faults",
    "FaultInjector": "freshtoken.testing._server",
    "FaultState": "freshtoken.testing._faults",
    "GrantType": "freshtoken.testing._registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
