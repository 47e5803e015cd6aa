"""Fixtures of the workload-identity tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .github_runner import Runner, serve_runner


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    """The GitHub Actions runner's ID-token endpoint, with the job's variables pointing at it."""
    yield from serve_runner(monkeypatch)
