"""Where document bytes live: plain files under `settings.storage_dir`, addressed by keys.

A storage key is `<tenant id>/<32 hex digits>`, chosen here and never derived from anything a
client sent. `path()` accepts nothing else, so neither a hostile filename nor a corrupt row can
name a path outside the storage directory.

Writes are staged: the bytes go to `<key>.part` (created exclusively), are fsynced, and only a
complete file is renamed to `<key>` (an atomic rename within one directory). Nobody ever reads a
half-written file, and a crash mid-write leaves only a `.part` file that `scan()` reports to the
orphan sweep (`services.documents.sweep_orphans`).

Every blocking call (open, write, fsync, rename, unlink, directory scans) and the per-chunk CPU
work (hashing, content checks) runs in a worker thread; the event loop only awaits.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread

from common.exceptions import PayloadTooLargeError

CHUNK_SIZE = 64 * 1024
PART_SUFFIX = ".part"
KEY_PATTERN = re.compile(r"(?P<tenant>[1-9][0-9]{0,9})/(?P<name>[0-9a-f]{32})")

# Reads up to n bytes; b"" at the end. `UploadFile.read` is one.
Reader = Callable[[int], Awaitable[bytes]]
# Sees every chunk before it is written (in the writer's thread); raises to refuse the upload.
Inspector = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    size: int
    sha256: str


@dataclass(slots=True)
class StoredContent:
    """An open stored file: its size, and its bytes as chunks (the file closes at the end)."""

    size: int
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class StorageEntry:
    """A file found by `scan()`: the key it belongs to, and whether it is a staged write."""

    key: str
    partial: bool
    modified: datetime


class FileStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def new_key(tenant_id: int) -> str:
        return f"{tenant_id}/{uuid.uuid4().hex}"

    def path(self, key: str) -> Path:
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key

    async def store(
        self,
        tenant_id: int,
        read: Reader,
        *,
        max_bytes: int,
        inspect: Inspector | None = None,
    ) -> StoredFile:
        """Stream `read` into a new file of the tenant, hashing and counting as it goes.

        Stops with a 413 as soon as more than `max_bytes` arrived; whatever `inspect` raises
        also stops it. Either way the partial file is removed before the error propagates.
        """
        key = self.new_key(tenant_id)
        final = self.path(key)
        staged = await anyio.to_thread.run_sync(_StagedWrite, final, max_bytes, inspect)
        try:
            while chunk := await read(CHUNK_SIZE):
                await anyio.to_thread.run_sync(staged.write, chunk)
            await anyio.to_thread.run_sync(staged.commit)
        except BaseException:
            # Shielded: a cancelled request (client gone) must still clean up after itself.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(staged.abandon)
            raise
        return StoredFile(key=key, size=staged.size, sha256=staged.hasher.hexdigest())

    async def open(self, key: str) -> StoredContent:
        """Open a stored file for streaming. Raises FileNotFoundError when it is not there.

        The file is opened here, before any response starts, so a missing file can still be
        answered with a clean error; and an open file stays readable on POSIX even if it is
        deleted meanwhile.
        """
        handle = await anyio.open_file(self.path(key), "rb")
        try:
            stat = await anyio.to_thread.run_sync(os.fstat, handle.wrapped.fileno())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await handle.aclose()
            raise
        return StoredContent(size=stat.st_size, chunks=_read_chunks(handle))

    async def remove(self, key: str, *, partial: bool = False) -> bool:
        """Delete a stored (or, with `partial`, a staged) file; False when it was not there."""
        path = self.path(key)
        if partial:
            path = path.with_name(path.name + PART_SUFFIX)
        return await anyio.to_thread.run_sync(_unlink, path)

    async def scan(self) -> list[StorageEntry]:
        """Every stored and staged file under the root. Files that are not Etter's are ignored."""
        return await anyio.to_thread.run_sync(self._scan_sync)

    def _scan_sync(self) -> list[StorageEntry]:
        entries: list[StorageEntry] = []
        if not self.root.is_dir():
            return entries
        for tenant_dir in self.root.iterdir():
            if not tenant_dir.is_dir() or tenant_dir.is_symlink():
                continue
            for file in tenant_dir.iterdir():
                name = file.name
                partial = name.endswith(PART_SUFFIX)
                key = f"{tenant_dir.name}/{name.removesuffix(PART_SUFFIX)}"
                if not KEY_PATTERN.fullmatch(key) or not file.is_file() or file.is_symlink():
                    continue
                try:
                    modified = datetime.fromtimestamp(file.stat().st_mtime, UTC)
                except FileNotFoundError:  # removed while we looked
                    continue
                entries.append(StorageEntry(key=key, partial=partial, modified=modified))
        return entries


class _StagedWrite:
    """One upload being written (sync; each method runs in a worker thread)."""

    def __init__(self, final: Path, max_bytes: int, inspect: Inspector | None) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        self.final = final
        self.partial = final.with_name(final.name + PART_SUFFIX)
        self.max_bytes = max_bytes
        self.inspect = inspect
        self.size = 0
        self.hasher = hashlib.sha256()
        # "x": exclusive creation; keys are random, so an existing file would be a bug.
        self.file: BinaryIO = open(self.partial, "xb")  # noqa: SIM115 - closed in commit/abandon

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLargeError(
                f"The file is larger than the upload limit of {self.max_bytes} bytes."
            )
        if self.inspect is not None:
            self.inspect(chunk)
        self.hasher.update(chunk)
        self.file.write(chunk)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())  # the row that will point here must not outlive the bytes
        self.file.close()
        os.replace(self.partial, self.final)

    def abandon(self) -> None:
        self.file.close()
        _unlink(self.partial)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


async def _read_chunks(handle: anyio.AsyncFile[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await handle.read(CHUNK_SIZE):
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await handle.aclose()
