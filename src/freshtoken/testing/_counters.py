"""Request counters: the numbers tests assert on ("exactly one token request per lifetime").

Requests are counted when they have been read, before any fault is applied, so a request that was
answered with an injected 503 or dropped still counts: it reached the server. Updates and snapshots
take a lock, so a snapshot is consistent and counts are exact under any concurrency.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counters", "CounterSnapshot"]


@dataclass(frozen=True)
class CounterSnapshot:
    """The counters at one instant."""

    token_requests: int = 0
    token_requests_by_client: dict[str, int] = field(default_factory=dict)
    token_requests_by_grant: dict[str, int] = field(default_factory=dict)
    tokens_issued: int = 0
    resource_requests: int = 0
    unauthorized: dict[str, int] = field(default_factory=dict)
    refresh_tokens_reused: int = 0
    families_revoked: int = 0
    dpop_nonce_challenges: int = 0
    dpop_proofs_rejected: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "token_requests_by_client": dict(self.token_requests_by_client),
            "token_requests_by_grant": dict(self.token_requests_by_grant),
            "tokens_issued": self.tokens_issued,
            "resource_requests": self.resource_requests,
            "unauthorized": dict(self.unauthorized),
            "refresh_tokens_reused": self.refresh_tokens_reused,
            "families_revoked": self.families_revoked,
            "dpop_nonce_challenges": self.dpop_nonce_challenges,
            "dpop_proofs_rejected": self.dpop_proofs_rejected,
        }


class Counters:
    """Thread-safe counters of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._token_requests = 0
        self._by_client: Counter[str] = Counter()
        self._by_grant: Counter[str] = Counter()
        self._tokens_issued = 0
        self._resource_requests = 0
        self._unauthorized: Counter[str] = Counter()
        self._refresh_tokens_reused = 0
        self._families_revoked = 0
        self._dpop_nonce_challenges = 0
        self._dpop_proofs_rejected = 0

    def token_request(self, client_id: str | None, grant_type: str | None) -> None:
        """A request reached the token endpoint (``client_id`` as claimed, not yet verified)."""
        with self._lock:
            self._token_requests += 1
            if client_id is not None:
                self._by_client[client_id] += 1
            if grant_type is not None:
                self._by_grant[grant_type] += 1

    def token_issued(self) -> None:
        with self._lock:
            self._tokens_issued += 1

    def resource_request(self) -> None:
        with self._lock:
            self._resource_requests += 1

    def unauthorized(self, reason: str) -> None:
        with self._lock:
            self._unauthorized[reason] += 1

    def refresh_token_reused(self, *, family_revoked: bool) -> None:
        """A rotated refresh token came back outside grace (``family_revoked``: its family
        was revoked just now, not by an earlier reuse)."""
        with self._lock:
            self._refresh_tokens_reused += 1
            self._families_revoked += family_revoked

    def dpop_nonce_challenge(self) -> None:
        """A DPoP proof came without a current nonce and was answered ``use_dpop_nonce``."""
        with self._lock:
            self._dpop_nonce_challenges += 1

    def dpop_proof_rejected(self) -> None:
        """A DPoP proof (or its absence where one was needed) was refused as invalid."""
        with self._lock:
            self._dpop_proofs_rejected += 1

    def reset(self) -> None:
        with self._lock:
            self._reset()

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            return CounterSnapshot(
                token_requests=self._token_requests,
                token_requests_by_client=dict(self._by_client),
                token_requests_by_grant=dict(self._by_grant),
                tokens_issued=self._tokens_issued,
                resource_requests=self._resource_requests,
                unauthorized=dict(self._unauthorized),
                refresh_tokens_reused=self._refresh_tokens_reused,
                families_revoked=self._families_revoked,
                dpop_nonce_challenges=self._dpop_nonce_challenges,
                dpop_proofs_rejected=self._dpop_proofs_rejected,
            )
