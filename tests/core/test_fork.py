"""A forked child never inherits a held lock or the parent's fetch in flight."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable

import pytest

import freshtoken as ft

from .conftest import CountingSource

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork_and_wait(child: Callable[[], bool], timeout: float = 20.0) -> int:
    """Run ``child`` in a forked process; its exit code is 0 when it returned True."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
        code = 1
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9  # the child hung


def test_child_fetches_for_itself_while_the_parent_fetch_is_still_in_flight(
    make_manager: Callable[..., ft.TokenManager], source: CountingSource
) -> None:
    source.gate = threading.Event()
    tokens = make_manager(source)
    parent = threading.Thread(target=tokens.get)
    parent.start()
    while source.calls == 0:
        time.sleep(0.001)

    def child() -> bool:
        source.gate = None  # the child's own fetch is not blocked
        return tokens.get().access_token.startswith("token-")

    try:
        assert fork_and_wait(child) == 0
    finally:
        source.gate.set()
        parent.join()


def test_child_does_not_inherit_a_held_lock(
    make_manager: Callable[..., ft.TokenManager], source: CountingSource
) -> None:
    tokens = make_manager(source)
    with tokens._lock:  # held by this thread at the moment of fork
        code = fork_and_wait(lambda: tokens.get().access_token == "token-1")
    assert code == 0


@pytest.mark.skipif(sys.platform != "linux", reason="fork semantics checked on Linux")
def test_child_keeps_a_fresh_token_without_fetching(
    make_manager: Callable[..., ft.TokenManager], source: CountingSource
) -> None:
    tokens = make_manager(source)
    token = tokens.get()
    assert fork_and_wait(lambda: tokens.get() == token and source.calls == 1) == 0


def held_by_another_thread(lock: threading.Lock) -> Callable[[], None]:
    """Hold ``lock`` in a parent thread (as if inside a guarded section at fork time); the
    returned function lets it go."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)

    def let_go() -> None:
        release.set()
        thread.join(10)

    return let_go


def test_a_child_can_use_every_object_whose_lock_a_parent_thread_held_at_fork() -> None:
    """Grants, stores, store health, origin sets and the discovery cache all lock briefly; a
    child forked inside such a moment would block for good on its first use of the object."""
    from freshtoken._http_auth.authflow import OriginScope
    from freshtoken._oauth import discovery as _discovery
    from freshtoken._oauth import sender as _sender

    grant = ft.RefreshTokenGrant("https://idp.example/token", "refresh-1", "client", "secret")
    store = ft.MemoryStore()
    origins = OriginScope(["https://api.example"])
    locks = [
        grant._lock,
        store._backend._lock,
        store._health._lock,
        origins._lock,
        _discovery._CACHE_LOCK,
        _sender._SSL_LOCK,
    ]
    releases = [held_by_another_thread(lock) for lock in locks]

    def child() -> bool:
        # Every lock is free in the child, so each object works (a held one would block here,
        # and the bounded wait in fork_and_wait turns the hang into a failure).
        for lock in locks:
            if not lock.acquire(timeout=5):
                return False
            lock.release()
        return store._backend.load("k") is None

    try:
        assert fork_and_wait(child) == 0
    finally:
        for release in releases:
            release()
    grant.close()
