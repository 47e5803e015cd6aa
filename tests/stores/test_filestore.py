"""FileStore: one file per token, atomic 0600 writes, a flock lease, and no trust in bad files."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from tests.stores.stores_helpers import MintingSource, put, stored_token, token_at

import freshtoken as ft
from freshtoken._runtime.clock import FakeClock
from freshtoken._stores.filestore import FileStore
from freshtoken._stores.store import StoreUnavailable, UnreadableRecord, storage_key


def record_path(store: FileStore, source: MintingSource) -> Path:
    return store.directory / (storage_key(source.key).replace(":", "-") + ".json")


def manager_for(
    store: FileStore, source: MintingSource, clock: FakeClock, events: list[ft.Event]
) -> ft.TokenManager:
    return ft.TokenManager(source, store=store, clock=clock, on_event=events.append)


def test_processes_share_the_token_file_and_its_permissions_are_private(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "tokens")
    source = MintingSource(fake_clock)
    events: list[ft.Event] = []
    token = manager_for(store, source, fake_clock, events).get()
    # Another store object on the same directory stands for another process.
    other = FileStore(tmp_path / "tokens")
    assert manager_for(other, source, fake_clock, events).get() == token
    assert source.calls == 1
    assert stat.S_IMODE(os.stat(tmp_path / "tokens").st_mode) == 0o700
    path = record_path(store, source)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in (tmp_path / "tokens").iterdir() if p.name.startswith(".tmp")] == []
    assert "secretpart" not in repr(store)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "not valid JSON"),
        ("garbage", "not valid JSON"),
        ("world-writable", "writable by other users"),
        ("foreign", "belongs to another user"),
        ("symlink", "symbolic link"),
    ],
)
def test_a_bad_token_file_is_reported_ignored_and_replaced(
    fake_clock: FakeClock, tmp_path: Path, damage: str, reason: str
) -> None:
    store = FileStore(tmp_path / "tokens")
    source = MintingSource(fake_clock)
    events: list[ft.Event] = []
    planted = manager_for(store, source, fake_clock, events).get()
    path = record_path(store, source)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "garbage":
        path.write_bytes(os.urandom(64))
    elif damage == "world-writable":
        path.chmod(0o666)
    elif damage == "foreign":
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        os.chown(path, 12345, 12345)
    else:
        target = tmp_path / "elsewhere.json"
        path.rename(target)
        path.symlink_to(target)
    events.clear()
    fresh = manager_for(store, source, fake_clock, events).get()
    assert fresh != planted  # the untrusted file's token was not used
    assert source.calls == 2
    reports = [event for event in events if event.kind == "store_unavailable"]
    assert reports
    assert reason in str(reports[0].error)
    assert "secretpart" not in str(reports[0].error)
    # ...and replaced by a trusted file holding the new token
    assert not path.is_symlink()
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert stored_token(store._backend, storage_key(source.key)) == fresh


def test_a_record_of_an_unknown_format_or_shape_is_not_trusted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    backend = store._backend
    path = tmp_path / "v1-k.json"
    for content in (b'{"format": 99}', b"[]", b'{"format": 1, "access_token": 5}'):
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(UnreadableRecord):
            stored_token(backend, "v1:k")
    path.unlink()
    path.mkdir()
    with pytest.raises(UnreadableRecord, match="not a regular file"):
        stored_token(backend, "v1:k")


def test_a_directory_others_can_write_into_is_not_used(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    store = FileStore(shared)
    events: list[ft.Event] = []
    source = MintingSource(fake_clock)
    manager_for(store, source, fake_clock, events).get()  # fetched locally, never fails
    assert [event.kind for event in events][:1] == ["store_unavailable"]
    assert "writable by other users" in str(events[0].error)
    assert list(shared.iterdir()) == []


def test_a_directory_that_cannot_be_created_makes_the_manager_fetch_locally(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = FileStore(blocker / "tokens")
    events: list[ft.Event] = []
    source = MintingSource(fake_clock)
    token = manager_for(store, source, fake_clock, events).get()
    assert token.access_token.startswith("access-")
    assert events[0].kind == "store_unavailable"
    assert "ENOTDIR" in str(events[0].error)


def test_a_directory_creation_failure_is_reported(fake_clock: FakeClock) -> None:
    store = FileStore("/proc/freshtoken-cannot-exist/tokens")
    events: list[ft.Event] = []
    manager_for(store, MintingSource(fake_clock), fake_clock, events).get()
    assert "mkdir failed" in str(events[0].error)


def test_the_lease_is_exclusive_across_store_objects_and_owned(tmp_path: Path) -> None:
    first, second = FileStore(tmp_path)._backend, FileStore(tmp_path)._backend
    owner = first.acquire("v1:k", 10)
    assert owner is not None
    assert second.acquire("v1:k", 10) is None
    assert not second.release("v1:k", "f" * 32)  # only the owner token releases
    assert not second.extend("v1:k", "f" * 32, 10)
    assert first.extend("v1:k", owner, 10)
    assert first.release("v1:k", owner)
    assert not first.extend("v1:k", owner, 10)
    again = second.acquire("v1:k", 10)
    assert again is not None
    assert second.release("v1:k", again)


def test_a_save_is_fenced_by_the_lease_and_the_generation_and_delete_compares(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    backend = FileStore(tmp_path)._backend
    newer, older = token_at(fake_clock, "newer", lifetime=200), token_at(fake_clock, "older")
    assert put(backend, "v1:k", older) == 1
    late = backend.acquire("v1:k", 10)
    assert late is not None
    backend.release("v1:k", late)  # its lease is gone: the late holder's save is refused
    assert backend.save("v1:k", newer, ttl=1, owner=late, generation=1) is None
    assert put(backend, "v1:k", newer) == 2
    holder = backend.acquire("v1:k", 10)
    assert holder is not None
    assert backend.save("v1:k", older, ttl=1, owner=holder, generation=1) is None  # stale
    backend.release("v1:k", holder)
    assert stored_token(backend, "v1:k") == newer
    assert not backend.delete("v1:k", older.fingerprint)
    assert backend.delete("v1:k", newer.fingerprint)
    assert not backend.delete("v1:k", newer.fingerprint)
    (tmp_path / "v1-k.json").write_bytes(b"garbage")
    assert not backend.delete("v1:k", newer.fingerprint)


def test_an_unwritable_directory_is_reported_not_raised(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o500)
    with pytest.raises(StoreUnavailable):
        FileStore(directory)._backend.acquire("v1:k", 1)


def test_aget_shares_the_file_token(fake_clock: FakeClock, tmp_path: Path) -> None:
    source = MintingSource(fake_clock)
    events: list[ft.Event] = []
    first = manager_for(FileStore(tmp_path), source, fake_clock, events)
    second = manager_for(FileStore(tmp_path), source, fake_clock, events)
    token = asyncio.run(first.aget())
    assert asyncio.run(second.aget()) == token
    assert source.calls == 1


def test_a_directory_that_is_not_a_path_is_a_configuration_error() -> None:
    with pytest.raises(ft.ConfigurationError, match="directory"):
        FileStore(42)  # type: ignore[arg-type]


def test_a_directory_of_another_user_is_not_used(fake_clock: FakeClock, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 12345, 12345)
    events: list[ft.Event] = []
    manager_for(FileStore(foreign), MintingSource(fake_clock), fake_clock, events).get()
    assert "belongs to another user" in str(events[0].error)


def test_an_oversized_token_file_is_not_read(tmp_path: Path) -> None:
    backend = FileStore(tmp_path)._backend
    path = tmp_path / "v1-k.json"
    with open(path, "wb") as file:
        file.truncate(10 * 1024 * 1024)
    path.chmod(0o600)
    with pytest.raises(UnreadableRecord, match="too large"):
        stored_token(backend, "v1:k")


def test_write_and_lock_failures_are_store_unavailable(
    fake_clock: FakeClock, tmp_path: Path
) -> None:
    directory = tmp_path / "tokens"
    backend = FileStore(directory)._backend
    token = token_at(fake_clock, "t")
    (directory).mkdir(mode=0o700)
    (directory / "v1-k.json").mkdir()
    (directory / "v1-k.json" / "occupied").write_text("")
    owner = backend.acquire("v1:k", 10)
    assert owner is not None
    with pytest.raises(StoreUnavailable, match="write failed"):  # cannot replace a directory
        backend.save("v1:k", token, ttl=60, owner=owner, generation=0)
    assert [p.name for p in directory.iterdir() if p.name.startswith(".tmp")] == []
    (directory / "v1-k.json" / "occupied").unlink()
    (directory / "v1-k.json").rmdir()
    for name in os.listdir(directory):
        os.unlink(directory / name)
    directory.rmdir()  # gone after it was checked
    with pytest.raises(StoreUnavailable, match="lock failed"):
        backend.save("v1:k", token, ttl=60, owner=owner, generation=0)
    with pytest.raises(StoreUnavailable, match="lock failed"):
        backend.acquire("v1:k", 10)
