"""OpenTelemetry metrics for freshtoken (``pip install 'freshtoken[otel]'``).

:class:`OTelMetrics` is an ``on_event`` sink: give it to one or many managers and it records

==================================== ========= =============================================
``freshtoken.token.fetches``         counter   tokens obtained (``freshtoken.event``: fetched
                                               or refreshed)
``freshtoken.token.fetch_failures``  counter   failed fetches
``freshtoken.token.fetch.duration``  histogram seconds per fetch (``freshtoken.outcome``:
                                               success or failure)
``freshtoken.token.events``          counter   the other events (served_stale, invalidated,
                                               skew_detected, store_unavailable), by kind
``freshtoken.token.remaining``       gauge     seconds of life the current token has left
==================================== ========= =============================================

Every measurement carries ``freshtoken.key``, the source's key (never a secret; one time series
per token, so cardinality stays as low as the number of tokens a process keeps). The gauge is
observable: it is computed when the reader collects, from the last event that told the
remaining life, so it needs no timer and costs nothing between collections.

    import freshtoken as ft
    from freshtoken.otel import OTelMetrics

    metrics = OTelMetrics()          # the global MeterProvider's meter "freshtoken"
    tokens = ft.TokenManager(source, on_event=metrics)

To send events to more than one sink, call them in turn:
``on_event=lambda event: (metrics(event), logging_events(event))``.

This is the only freshtoken module that imports OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Iterable

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
except ImportError as error:  # pragma: no branch - which branch runs depends on the install
    raise ImportError(
        "freshtoken.otel needs the OpenTelemetry API: pip install 'freshtoken[otel]'"
    ) from error

from freshtoken._runtime.forksafe import fork_safe_lock

from ._core.events import Event
from ._runtime.clock import SYSTEM_CLOCK, Clock

__all__ = ["OTelMetrics"]

KEY = "freshtoken.key"
KIND = "freshtoken.event"
OUTCOME = "freshtoken.outcome"

_OBTAINED = frozenset({"fetched", "refreshed"})


class OTelMetrics:
    """An ``on_event`` sink recording freshtoken's events as OpenTelemetry metrics.

    ``meter``  the meter to create the instruments on (default: ``metrics.get_meter("freshtoken")``
               from the global MeterProvider)
    ``clock``  where "now" comes from for the remaining-lifetime gauge (a FakeClock in tests);
               give the same clock as the managers'.
    """

    def __init__(self, meter: Meter | None = None, *, clock: Clock | None = None) -> None:
        if meter is None:
            from . import __version__

            meter = otel_metrics.get_meter("freshtoken", __version__)
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = fork_safe_lock()
        # key -> (remaining seconds, monotonic time the event was recorded)
        self._remaining: dict[str, tuple[float, float]] = {}
        self._fetches = meter.create_counter(
            "freshtoken.token.fetches", unit="{token}", description="Tokens obtained"
        )
        self._failures = meter.create_counter(
            "freshtoken.token.fetch_failures", unit="{fetch}", description="Failed token fetches"
        )
        self._duration = meter.create_histogram(
            "freshtoken.token.fetch.duration", unit="s", description="Duration of token fetches"
        )
        self._events = meter.create_counter(
            "freshtoken.token.events", unit="{event}", description="Other lifecycle events"
        )
        meter.create_observable_gauge(
            "freshtoken.token.remaining",
            callbacks=[self._observe_remaining],
            unit="s",
            description="Seconds of life the current token has left",
        )

    def __call__(self, event: Event) -> None:
        key = {KEY: event.key}
        if event.kind in _OBTAINED:
            self._fetches.add(1, {**key, KIND: event.kind})
            if event.duration is not None:
                self._duration.record(event.duration, {**key, OUTCOME: "success"})
        elif event.kind == "failed":
            self._failures.add(1, key)
            if event.duration is not None:
                self._duration.record(event.duration, {**key, OUTCOME: "failure"})
        else:
            self._events.add(1, {**key, KIND: event.kind})
        if event.kind == "invalidated":
            with self._lock:
                self._remaining.pop(event.key, None)
        elif event.remaining is not None:  # fetched, refreshed, served_stale: the current token
            with self._lock:
                self._remaining[event.key] = (event.remaining, self._clock.monotonic())

    def _observe_remaining(self, options: CallbackOptions) -> Iterable[Observation]:
        now = self._clock.monotonic()
        with self._lock:
            snapshot = list(self._remaining.items())
        return [
            Observation(max(0.0, remaining - (now - recorded)), {KEY: key})
            for key, (remaining, recorded) in snapshot
        ]
