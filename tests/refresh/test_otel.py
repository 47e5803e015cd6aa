"""freshtoken.otel: the OpenTelemetry metrics sink, read back with the SDK's in-memory reader."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import freshtoken as ft
from freshtoken.otel import OTelMetrics
from freshtoken.testing import FakeClock

from .conftest import FlakySource, settle

Points = dict[str, list[tuple[dict[str, Any], Any]]]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def metrics(provider: MeterProvider, clock: FakeClock) -> OTelMetrics:
    return OTelMetrics(provider.get_meter("test"), clock=clock)


def collect(reader: InMemoryMetricReader) -> Points:
    """{metric name: [(attributes, value or histogram point)]} from one collection."""
    data = reader.get_metrics_data()
    out: Points = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", point)
                    out.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return out


def test_fetches_failures_latency_and_remaining_life_are_recorded(
    clock: FakeClock,
    reader: InMemoryMetricReader,
    metrics: OTelMetrics,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    source = FlakySource(lifetime=60)
    tokens = make_manager(source, on_event=metrics, policy=ft.RefreshPolicy(jitter=0))
    key = tokens.source.key
    tokens.get()
    clock.advance(10)
    got = collect(reader)
    assert got["freshtoken.token.fetches"] == [
        ({"freshtoken.key": key, "freshtoken.event": "fetched"}, 1)
    ]
    assert got["freshtoken.token.remaining"] == [({"freshtoken.key": key}, 50.0)]
    durations = got["freshtoken.token.fetch.duration"]
    assert [(attrs, point.count) for attrs, point in durations] == [
        ({"freshtoken.key": key, "freshtoken.outcome": "success"}, 1)
    ]
    assert "freshtoken.token.fetch_failures" not in got

    # a failed refresh in the stale window: a failure, and the stale token still counted down
    clock.advance(40)
    source.failing = RuntimeError("down")
    tokens.get()
    settle()
    got = collect(reader)
    assert got["freshtoken.token.fetch_failures"] == [({"freshtoken.key": key}, 1)]
    assert got["freshtoken.token.events"] == [
        ({"freshtoken.key": key, "freshtoken.event": "served_stale"}, 1)
    ]
    outcomes = {attrs["freshtoken.outcome"] for attrs, _ in got["freshtoken.token.fetch.duration"]}
    assert outcomes == {"success", "failure"}
    assert got["freshtoken.token.remaining"] == [({"freshtoken.key": key}, 10.0)]

    clock.advance(3600)  # long expired: the gauge stops at zero
    assert collect(reader)["freshtoken.token.remaining"] == [({"freshtoken.key": key}, 0.0)]


def test_an_invalidated_token_leaves_the_gauge_and_counts_as_an_event(
    reader: InMemoryMetricReader,
    metrics: OTelMetrics,
    make_manager: Callable[..., ft.TokenManager],
) -> None:
    tokens = make_manager(FlakySource(), on_event=metrics)
    tokens.invalidate(tokens.get())
    got = collect(reader)
    assert "freshtoken.token.remaining" not in got
    assert got["freshtoken.token.events"] == [
        ({"freshtoken.key": tokens.source.key, "freshtoken.event": "invalidated"}, 1)
    ]


def test_events_without_durations_are_counted_without_a_latency_point(
    reader: InMemoryMetricReader, metrics: OTelMetrics
) -> None:
    metrics(ft.Event("fetched", "k", fingerprint="abcd1234"))
    metrics(ft.Event("failed", "k", error="TokenRequestError: x"))
    got = collect(reader)
    assert got["freshtoken.token.fetches"] == [
        ({"freshtoken.key": "k", "freshtoken.event": "fetched"}, 1)
    ]
    assert got["freshtoken.token.fetch_failures"] == [({"freshtoken.key": "k"}, 1)]
    assert "freshtoken.token.fetch.duration" not in got


def test_one_sink_serves_many_managers_one_series_per_key(
    reader: InMemoryMetricReader, metrics: OTelMetrics, clock: FakeClock
) -> None:
    names = ["api-0", "api-1", "api-2"]
    managers = [
        ft.TokenManager(ft.FunctionSource(FlakySource(), key=name), clock=clock, on_event=metrics)
        for name in names
    ]
    for manager in managers:
        manager.get()
    got = collect(reader)
    keys = sorted(attrs["freshtoken.key"] for attrs, _ in got["freshtoken.token.remaining"])
    assert keys == names
    for manager in managers:
        manager.close()


def test_without_a_meter_the_global_meter_provider_is_used() -> None:
    sink = OTelMetrics()  # the API's no-op provider unless the application set one
    sink(ft.Event("fetched", "k", duration=0.1, remaining=60))


def test_importing_without_opentelemetry_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "freshtoken.otel")
    with pytest.raises(ImportError, match=r"pip install 'freshtoken\[otel\]'"):
        importlib.import_module("freshtoken.otel")
    monkeypatch.undo()
    importlib.import_module("freshtoken.otel")
