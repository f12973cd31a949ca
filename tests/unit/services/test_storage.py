"""FileStorage on a temporary directory: staged writes, limits, cleanup, keys, reads, scans."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import anyio
import pytest

from common.exceptions import PayloadTooLargeError, UnsupportedMediaTypeError
from common.storage import CHUNK_SIZE, KEY_PATTERN, FileStorage

HEX = "0123456789abcdef" * 2


class Source:
    """A reader serving fixed chunks, counting how often it was asked."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.pending = list(chunks)
        self.calls = 0

    async def read(self, size: int = -1) -> bytes:
        self.calls += 1
        assert size == CHUNK_SIZE
        return self.pending.pop(0) if self.pending else b""


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "storage")


async def test_store_writes_hashes_and_counts(storage: FileStorage) -> None:
    chunks = [b"a" * 1000, b"b" * 3, b"c" * 70_000]
    stored = await storage.store(7, Source(chunks).read, max_bytes=100_000)
    content = b"".join(chunks)
    assert KEY_PATTERN.fullmatch(stored.key)
    assert stored.key.startswith("7/")
    assert stored.size == len(content)
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert storage.path(stored.key).read_bytes() == content
    assert files_under(storage.root) == [stored.key]  # no staged `.part` left behind


async def test_every_upload_gets_its_own_key(storage: FileStorage) -> None:
    first = await storage.store(1, Source([b"same"]).read, max_bytes=10)
    second = await storage.store(1, Source([b"same"]).read, max_bytes=10)
    assert first.key != second.key
    assert first.sha256 == second.sha256


async def test_exceeding_the_limit_stops_reading_and_leaves_nothing(storage: FileStorage) -> None:
    source = Source([b"x" * 600, b"x" * 600, b"x" * 600, b"x" * 600])
    with pytest.raises(PayloadTooLargeError, match="1000 bytes"):
        await storage.store(1, source.read, max_bytes=1000)
    assert source.calls == 2  # stopped at the chunk that crossed the limit
    assert files_under(storage.root) == []


async def test_exactly_the_limit_is_fine(storage: FileStorage) -> None:
    stored = await storage.store(1, Source([b"x" * 500, b"x" * 500]).read, max_bytes=1000)
    assert stored.size == 1000


async def test_an_inspector_refusal_leaves_nothing(storage: FileStorage) -> None:
    seen: list[bytes] = []

    def inspect(chunk: bytes) -> None:
        seen.append(chunk)
        if b"bad" in chunk:
            raise UnsupportedMediaTypeError("bad bytes")

    with pytest.raises(UnsupportedMediaTypeError):
        await storage.store(
            1, Source([b"good", b"bad", b"never"]).read, max_bytes=100, inspect=inspect
        )
    assert seen == [b"good", b"bad"]
    assert files_under(storage.root) == []


async def test_a_failing_reader_leaves_nothing(storage: FileStorage) -> None:
    async def broken(size: int = -1) -> bytes:
        raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        await storage.store(1, broken, max_bytes=100)
    assert files_under(storage.root) == []


async def test_cancellation_mid_upload_leaves_nothing(storage: FileStorage) -> None:
    started = anyio.Event()

    async def stalls(size: int = -1) -> bytes:
        if not started.is_set():
            started.set()
            return b"first chunk"
        await anyio.sleep_forever()
        return b""

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: storage.store(1, stalls, max_bytes=100))
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        assert len(files_under(storage.root)) == 1  # the staged write exists ...
        group.cancel_scope.cancel()
    assert files_under(storage.root) == []  # ... and is gone after the cancellation


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../etc/passwd",
        f"1/../../{HEX}",
        f"/1/{HEX}",
        f"0/{HEX}",
        f"01/{HEX}",
        f"1/{HEX.upper()}",
        f"1/{HEX}.part",
        f"1/{HEX}/x",
        f"1/{HEX[:-1]}",
        f"12345678901/{HEX}",
        f"1\\{HEX}",
        f"1/{HEX}\n",
    ],
)
def test_path_refuses_anything_but_a_key(storage: FileStorage, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        storage.path(key)


def test_path_of_a_key_stays_inside_the_root(storage: FileStorage) -> None:
    path = storage.path(f"42/{HEX}")
    assert path == storage.root / "42" / HEX
    assert path.resolve().is_relative_to(storage.root.resolve())


async def test_open_streams_the_bytes(storage: FileStorage) -> None:
    content = os.urandom(3 * CHUNK_SIZE + 5)
    stored = await storage.store(1, Source([content]).read, max_bytes=len(content))
    opened = await storage.open(stored.key)
    assert opened.size == len(content)
    chunks = [chunk async for chunk in opened.chunks]
    assert len(chunks) == 4
    assert b"".join(chunks) == content


async def test_an_open_file_survives_its_removal(storage: FileStorage) -> None:
    stored = await storage.store(1, Source([b"still here"]).read, max_bytes=100)
    opened = await storage.open(stored.key)
    assert await storage.remove(stored.key) is True
    assert b"".join([chunk async for chunk in opened.chunks]) == b"still here"


async def test_open_missing_raises_file_not_found(storage: FileStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.open(f"1/{HEX}")


async def test_remove_is_idempotent(storage: FileStorage) -> None:
    stored = await storage.store(1, Source([b"x"]).read, max_bytes=10)
    assert await storage.remove(stored.key) is True
    assert await storage.remove(stored.key) is False
    assert not storage.path(stored.key).exists()


async def test_scan_reports_keys_and_staged_writes_only(storage: FileStorage) -> None:
    assert await storage.scan() == []  # no root yet
    stored = await storage.store(3, Source([b"x"]).read, max_bytes=10)
    staged = storage.path(f"3/{HEX}").with_name(f"{HEX}.part")
    staged.write_bytes(b"half")
    (storage.root / "3" / "notes.txt").write_text("not ours")
    (storage.root / "stray.txt").write_text("not ours")
    (storage.root / "tmp").mkdir()
    (storage.root / "tmp" / HEX).write_text("not a tenant directory")
    (storage.root / "3" / ("f" * 32)).symlink_to(storage.path(stored.key))

    entries = sorted(await storage.scan(), key=lambda e: (e.key, e.partial))
    assert [(e.key, e.partial) for e in entries] == sorted(
        [(stored.key, False), (f"3/{HEX}", True)]
    )
    assert all(e.modified.tzinfo is not None for e in entries)
    assert await storage.remove(f"3/{HEX}", partial=True) is True
    assert not staged.exists()
