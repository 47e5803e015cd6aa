"""The integration tests' fixtures (a real server, real clients of each library), reused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freshtoken._oauth.discovery import clear_cache as clear_discovery
from freshtoken._oauth.resource import clear_cache as clear_resources
from tests.integrations.conftest import (
    RecordingSource,
    api,
    kind,
    loop_thread,
    make,
    manager,
    server,
    source,
)

__all__ = [
    "RecordingSource",
    "api",
    "fresh_caches",
    "kind",
    "loop_thread",
    "make",
    "manager",
    "server",
    "source",
]


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Discovery results are cached per process: each test starts and ends without them."""
    clear_discovery()
    clear_resources()
    yield
    clear_discovery()
    clear_resources()
