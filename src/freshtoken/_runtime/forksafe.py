"""Locks that stay usable in a forked child.

``fork()`` copies a process with only the calling thread. A lock another thread held at that
instant stays held in the child, where no thread will ever release it: the child's first token
request, store access or origin check would block for good. Every lock of freshtoken's long-lived
objects (grants, stores, origin sets, caches) therefore comes from :func:`fork_safe_lock`, and a
child re-initialises all of them (CPython's own ``logging`` and ``threading`` do the same for
their locks) before it runs any code of its own. Nothing the lock guarded is lost: the guarded
sections only read or swap one value, which the child has inherited whole.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["fork_safe_lock"]

_LOCKS: weakref.WeakSet[threading.Lock] = weakref.WeakSet()


def fork_safe_lock() -> threading.Lock:
    """A new lock that a forked child finds released."""
    lock = threading.Lock()
    _LOCKS.add(lock)
    return lock


def _release_all_in_child() -> None:
    for lock in list(_LOCKS):
        lock._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_release_all_in_child)
