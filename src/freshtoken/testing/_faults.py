"""Fault injection: what can go wrong with a request, and when it goes wrong.

A :class:`Fault` describes *what* happens to a request (latency, an error status, a dropped
connection, a broken body, a lying clock). The server's :class:`FaultSchedule` decides *when*: for
the next ``times`` matching requests, during a window of real time (``time.monotonic``, never a
fake clock, so a test that freezes its clock cannot freeze an outage), or both.

Several faults can be active at once and they combine, so a permanent ``latency`` plus a one-shot
``status=503`` gives one slow 503 and then slow successes: latencies and clock offsets add up; the
first active fault (in the order they were added) that replaces the response (``drop``,
``lose_response``, ``status`` or ``body``) decides the response. Every active fault that matches a
request uses up one of its ``times``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, get_args

__all__ = [
    "Endpoint",
    "Effect",
    "Fault",
    "FaultHandle",
    "FaultSchedule",
    "FaultState",
    "TargetSpec",
]

#: The server endpoints a fault can target.
Endpoint: TypeAlias = Literal["token", "resource", "jwks", "discovery", "revocation"]
#: ``"both"`` is token + resource; ``"all"`` is every endpoint.
TargetSpec: TypeAlias = Endpoint | Literal["both", "all"] | Iterable[Endpoint]

_ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)


def _targets(spec: TargetSpec) -> tuple[Endpoint, ...]:
    if spec == "all":
        return _ENDPOINTS
    if spec == "both":
        return ("token", "resource")
    names: Iterable[str] = (spec,) if isinstance(spec, str) else spec
    result: list[Endpoint] = []
    for name in names:
        if name not in _ENDPOINTS:
            raise ValueError(f"unknown fault target {name!r}; expected one of {_ENDPOINTS}")
        result.append(name)
    if not result:
        raise ValueError("a fault needs at least one target endpoint")
    return tuple(result)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What happens to a matching request. Every field is optional; they combine.

    ``target``
        Which endpoint(s) the fault hits: ``"token"`` (default), ``"resource"``, ``"jwks"``,
        ``"discovery"``, ``"revocation"``, ``"both"`` (token and resource), ``"all"``, or a list.
    ``latency``
        Seconds to wait before answering (real time, on the server's event loop).
    ``drip``
        Send the status line and headers at once, then the body one byte at a time, this many
        seconds apart: a slow-but-steady endpoint that no per-read timeout ever cuts off.
    ``status``
        Answer with this status instead of processing the request (e.g. 503, 429). The body is a
        JSON error object unless ``body`` is given.
    ``retry_after`` / ``retry_after_format``
        Add a ``Retry-After`` header: a number of seconds sent as-is (``"seconds"``) or converted to
        an HTTP-date that many seconds from now (``"http-date"``); a string is sent verbatim.
    ``drop``
        Read the request, then close the connection without answering.
    ``lose_response``
        Process the request (a refresh token is rotated, a token is issued), then close the
        connection without answering: the server acted but the client never hears of it.
    ``body`` / ``content_type``
        Answer with this exact body (malformed JSON, an HTML error page...), status ``status`` or
        200. ``content_type`` alone keeps the real response but lies about its type (e.g. a token
        response served as ``text/plain``).
    ``clock_offset``
        Seconds added to the server's notion of now: tokens get shifted ``iat``/``exp`` and the
        ``Date`` header lies by the same amount. Negative values issue tokens already (partly)
        expired; bearer validation still uses the true time.
    """

    target: TargetSpec = "token"
    latency: float = 0.0
    drip: float = 0.0
    status: int | None = None
    retry_after: float | str | None = None
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    drop: bool = False
    lose_response: bool = False
    body: str | None = None
    content_type: str | None = None
    clock_offset: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _targets(self.target))
        if self.latency < 0:
            raise ValueError("latency must be >= 0")
        if self.drip < 0:
            raise ValueError("drip must be >= 0")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status {self.status} is not an HTTP status code")
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format must be 'seconds' or 'http-date'")

    @property
    def replaces_response(self) -> bool:
        """Whether the fault answers instead of the server (or does not answer at all)."""
        return self.drop or self.lose_response or self.status is not None or self.body is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for sending the fault to a server subprocess."""
        return {
            "target": list(self.target),
            "latency": self.latency,
            "drip": self.drip,
            "status": self.status,
            "retry_after": self.retry_after,
            "retry_after_format": self.retry_after_format,
            "drop": self.drop,
            "lose_response": self.lose_response,
            "body": self.body,
            "content_type": self.content_type,
            "clock_offset": self.clock_offset,
        }

    # -- the usual suspects ---------------------------------------------------------------

    @classmethod
    def outage(cls, status: int = 503, *, target: TargetSpec = "token") -> Fault:
        """A server error with a JSON ``temporarily_unavailable``/``server_error`` body."""
        return cls(status=status, target=target)

    @classmethod
    def rate_limited(
        cls, retry_after: float | str = 1, *, http_date: bool = False, target: TargetSpec = "token"
    ) -> Fault:
        """429 Too Many Requests with ``Retry-After`` in seconds or as an HTTP-date."""
        return cls(
            status=429,
            retry_after=retry_after,
            retry_after_format="http-date" if http_date else "seconds",
            target=target,
        )

    @classmethod
    def slow(cls, seconds: float, *, target: TargetSpec = "token") -> Fault:
        """Answer normally, ``seconds`` late."""
        return cls(latency=seconds, target=target)

    @classmethod
    def dripping(cls, seconds: float, *, target: TargetSpec = "token") -> Fault:
        """Answer normally, one byte every ``seconds``."""
        return cls(drip=seconds, target=target)

    @classmethod
    def dropped(cls, *, target: TargetSpec = "token") -> Fault:
        """Close the connection without a response."""
        return cls(drop=True, target=target)

    @classmethod
    def lost_response(cls, *, target: TargetSpec = "token") -> Fault:
        """Process the request, then close the connection without answering it."""
        return cls(lose_response=True, target=target)

    @classmethod
    def malformed_json(cls, status: int = 200, *, target: TargetSpec = "token") -> Fault:
        """A truncated JSON body labelled ``application/json``."""
        return cls(
            status=status,
            body='{"access_token": "abc", "token_type": ',
            content_type="application/json",
            target=target,
        )

    @classmethod
    def html(cls, status: int = 502, *, target: TargetSpec = "token") -> Fault:
        """An HTML error page, as a proxy or load balancer would send."""
        return cls(
            status=status,
            body="<html><head><title>Bad Gateway</title></head><body>upstream error</body></html>",
            content_type="text/html; charset=utf-8",
            target=target,
        )

    @classmethod
    def wrong_content_type(
        cls, content_type: str = "text/plain", *, target: TargetSpec = "token"
    ) -> Fault:
        """The real response body, labelled with a non-JSON content type."""
        return cls(content_type=content_type, target=target)

    @classmethod
    def clock_skew(cls, seconds: float, *, target: TargetSpec = "token") -> Fault:
        """Tokens and ``Date`` headers ``seconds`` off the true time."""
        return cls(clock_offset=seconds, target=target)


@dataclass(slots=True)
class Effect:
    """The combination of the faults that matched one request."""

    latency: float = 0.0
    drip: float = 0.0
    clock_offset: float = 0.0
    response: Fault | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class FaultState:
    """A snapshot of a scheduled fault: how often it hit and whether it can hit again."""

    hits: int
    remaining: int | None
    active: bool
    finished: bool


@dataclass(slots=True)
class _Scheduled:
    fault: Fault
    remaining: int | None
    starts_at: float
    ends_at: float | None
    hits: int = 0
    cancelled: bool = False

    def live_at(self, now: float) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def finished_at(self, now: float) -> bool:
        return (
            self.cancelled
            or self.remaining == 0
            or (self.ends_at is not None and now >= self.ends_at)
        )


class FaultSchedule:
    """The faults of one server, with their ``times`` budgets and time windows. Thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._faults: dict[int, _Scheduled] = {}

    def add(
        self,
        fault: Fault,
        *,
        times: int | None = None,
        start: float = 0.0,
        duration: float | None = None,
    ) -> int:
        """Schedule ``fault``; return its id. ``start``/``duration`` are seconds from now."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for unlimited)")
        if start < 0 or (duration is not None and duration <= 0):
            raise ValueError("start must be >= 0 and duration > 0")
        now = self._monotonic()
        entry = _Scheduled(
            fault=fault,
            remaining=times,
            starts_at=now + start,
            ends_at=None if duration is None else now + start + duration,
        )
        with self._lock:
            fault_id = next(self._ids)
            self._faults[fault_id] = entry
        return fault_id

    def cancel(self, fault_id: int) -> bool:
        """Stop a fault; return whether it was still scheduled."""
        with self._lock:
            entry = self._faults.pop(fault_id, None)
        if entry is None:
            return False
        entry.cancelled = True
        return True

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            for entry in self._faults.values():
                entry.cancelled = True
            self._faults.clear()

    def __len__(self) -> int:
        now = self._monotonic()
        with self._lock:
            return sum(not e.finished_at(now) for e in self._faults.values())

    def state(self, fault_id: int) -> FaultState:
        """How fault ``fault_id`` is doing (a cancelled or pruned fault reads as finished)."""
        now = self._monotonic()
        with self._lock:
            entry = self._faults.get(fault_id)
            if entry is None:
                return FaultState(hits=0, remaining=0, active=False, finished=True)
            return FaultState(
                hits=entry.hits,
                remaining=entry.remaining,
                active=entry.live_at(now) and not entry.finished_at(now),
                finished=entry.finished_at(now),
            )

    def take(self, endpoint: Endpoint) -> Effect | None:
        """Consume one use of every fault live for ``endpoint`` now; combine them."""
        if not self._faults:  # fast path for benchmarks: no lock when nothing is scheduled
            return None
        now = self._monotonic()
        effect: Effect | None = None
        with self._lock:
            for entry in self._faults.values():
                if endpoint not in entry.fault.target or not entry.live_at(now):
                    continue
                if entry.finished_at(now):
                    continue
                entry.hits += 1
                if entry.remaining is not None:
                    entry.remaining -= 1
                effect = effect or Effect()
                _combine(effect, entry.fault)
        return effect


def _combine(effect: Effect, fault: Fault) -> None:
    effect.latency += fault.latency
    effect.drip = max(effect.drip, fault.drip)
    effect.clock_offset += fault.clock_offset
    if fault.replaces_response and effect.response is None:
        effect.response = fault
        if fault.content_type is not None:
            effect.content_type = fault.content_type
    elif fault.content_type is not None and effect.content_type is None:
        effect.content_type = fault.content_type


class _FaultControl(Protocol):
    def fault_state(self, fault_id: int) -> FaultState: ...

    def cancel_fault(self, fault_id: int) -> bool: ...


@dataclass(frozen=True)
class FaultHandle:
    """Returned by ``server.inject()``: watch or cancel one scheduled fault."""

    id: int
    fault: Fault
    _control: _FaultControl = field(repr=False, compare=False)

    @property
    def state(self) -> FaultState:
        return self._control.fault_state(self.id)

    @property
    def hits(self) -> int:
        """How many requests this fault has affected."""
        return self.state.hits

    @property
    def remaining(self) -> int | None:
        """Uses left (``None``: unlimited)."""
        return self.state.remaining

    @property
    def active(self) -> bool:
        """Whether the fault would hit a request arriving now."""
        return self.state.active

    def cancel(self) -> bool:
        """Stop the fault now; return whether it was still scheduled."""
        return self._control.cancel_fault(self.id)
