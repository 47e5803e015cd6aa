"""Fixtures of the freshtoken.testing suite."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from freshtoken.testing import AuthorizationServer


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
