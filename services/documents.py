"""Documents: upload, list, read, download, edit (with a lost-update guard), delete.

How the row and the bytes stay in step, given that a service only flushes and the request
commits later (common/transactions.py):

- Upload: the bytes are written under a temporary name and renamed into place first; then the
  row is flushed. If the flush (or anything before it) fails, the file is removed at once. If
  the later commit fails, the file is left without a row: an orphan `sweep_orphans()` removes.
- Delete: the row is deleted and flushed; the bytes are removed only after the commit (the
  caller passes `after_commit`: the route's `common.transactions.after_commit`, which runs the
  removal once the transaction has committed and before the 204 is sent, and never after a
  rollback). A failed commit therefore leaves row *and* bytes intact, and a failure between
  the commit and the removal (crash, I/O error) leaves only a file without a row, which
  `sweep_orphans()` removes. Removing or renaming ("tombstoning") the file before the commit
  would instead leave a row without its bytes whenever the commit then fails.

So whatever fails, no row ever points at missing bytes because of Etter, and every leftover is
a file without a row, which the sweep recognises and removes (a maintenance task for
`manage.py`; it takes a session and the storage, no principal).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, Self

import anyio
import anyio.to_thread
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from common.enums import DocumentStatus
from common.exceptions import (
    ConflictError,
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    PreconditionRequiredError,
    ValidationFailedError,
)
from common.pagination import PageResult, PaginationParams, paginate
from common.principal import Principal
from common.storage import FileStorage
from common.upload_policy import ContentInspector, allowed_type, safe_filename
from models import Document
from schemas.documents import DocumentUpdate
from services import cache_invalidation
from services.base_service import BaseService
from settings.config import Settings

if TYPE_CHECKING:
    from services.cache_service import RequestCache

log = structlog.get_logger("etter.documents")

# The status machine: where a document may go from each status.
TRANSITIONS: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    DocumentStatus.UPLOADED: frozenset({DocumentStatus.PROCESSING}),
    DocumentStatus.PROCESSING: frozenset({DocumentStatus.PROCESSED, DocumentStatus.FAILED}),
    DocumentStatus.FAILED: frozenset({DocumentStatus.PROCESSING}),
    DocumentStatus.PROCESSED: frozenset(),
}

# A stored file without a row is only swept once it is this old: a younger one may belong to
# an upload whose row is not committed yet.
ORPHAN_GRACE = timedelta(hours=1)


class UploadSource(Protocol):
    """An uploaded file as the service reads it; Starlette's `UploadFile` is one."""

    filename: str | None
    size: int | None

    @property
    def content_type(self) -> str | None: ...

    async def read(self, size: int = -1) -> bytes: ...


# Runs a coroutine function once the request's transaction has committed.
AfterCommit = Callable[[Callable[[], Awaitable[None]]], object]


@dataclass(slots=True)
class DocumentContent:
    document: Document
    size: int
    chunks: AsyncIterator[bytes]


class DocumentService(BaseService[Document]):
    model = Document
    label = "Document"

    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        settings: Settings,
        cache: RequestCache | None = None,
    ) -> None:
        super().__init__(session, principal, cache)
        self.storage = FileStorage(settings.storage_dir)
        self.max_upload_bytes = settings.max_upload_bytes

    @classmethod
    def for_request(
        cls, session: AsyncSession, principal: Principal, settings: Settings, cache: RequestCache
    ) -> Self:
        return cls(session, principal, settings, cache)

    async def list(
        self,
        params: PaginationParams,
        status: DocumentStatus | None = None,
        company_id: int | None = None,
    ) -> PageResult:
        statement = self.readable(company_id).order_by(
            Document.created_at.desc(), Document.id.desc()
        )
        if status is not None:
            statement = statement.where(Document.status == status)
        return await paginate(self.session, statement, params)

    async def upload(self, title: str, file: UploadSource) -> Document:
        """Store the file for the caller's company and record it as `uploaded`, version 1."""
        allowed = allowed_type(file.content_type)  # 415 before a byte is read
        if file.size is not None and file.size > self.max_upload_bytes:
            raise self._too_large()
        inspector = ContentInspector(allowed)
        stored = await self.storage.store(
            self.principal.company_id,
            file.read,
            max_bytes=self.max_upload_bytes,
            inspect=inspector.feed,
        )
        try:
            if stored.size == 0:
                raise ValidationFailedError(errors=[FieldError("body.file", "the file is empty")])
            await anyio.to_thread.run_sync(inspector.finish, self.storage.path(stored.key))
            document = Document(
                tenant_id=self.principal.company_id,
                uploaded_by=self.principal.user_id,
                title=title,
                filename=safe_filename(file.filename),
                content_type=allowed.media_type,
                size_bytes=stored.size,
                sha256=stored.sha256,
                storage_key=stored.key,
                status=DocumentStatus.UPLOADED,
            )
            self.session.add(document)
            await self.flush("The document could not be recorded.")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.storage.remove(stored.key)
            raise
        cache_invalidation.document_changed(self.cache, document.tenant_id)
        return document

    async def open_content(self, document_id: int) -> DocumentContent:
        """The document and its bytes, opened. Bytes missing on disk: 404 (and a warning in
        the log: the row outlived its file, which Etter itself never causes)."""
        document = await self.get(document_id)
        try:
            content = await self.storage.open(document.storage_key)
        except (FileNotFoundError, ValueError):
            log.warning(
                "document_content_missing",
                document_id=document.id,
                storage_key=document.storage_key,
            )
            raise NotFoundError(
                f"The content of document {document.id} is not available."
            ) from None
        return DocumentContent(document=document, size=content.size, chunks=content.chunks)

    async def update(
        self,
        document_id: int,
        data: DocumentUpdate,
        expected_version: int | None,
        *,
        precondition: bool = False,
    ) -> Document:
        """Apply `data` if the document is still at `expected_version`.

        The comparison gives a clear 409 for a stale version (412 when the version came as a
        precondition, If-Match); the mapper's `version_id_col` guards the UPDATE itself
        (`WHERE version = :read`), so a concurrent change that lands between the comparison
        and the flush is refused the same way, never a lost update.
        """
        stale: type[ConflictError | PreconditionFailedError] = (
            PreconditionFailedError if precondition else ConflictError
        )
        document = await self.get(document_id)
        self._require_editor(document)
        if expected_version is None:
            raise PreconditionRequiredError(
                'Send the version you read, as `version` in the body or `If-Match: "<version>"`.'
            )
        if expected_version != document.version:
            raise stale(
                f"Document {document.id} is at version {document.version}, not "
                f"{expected_version}: someone changed it since you read it. Reload it and retry."
            )
        changes = data.changes()
        if "status" in changes:
            self._check_transition(document, changes["status"])
        for name, value in changes.items():
            setattr(document, name, value)
        try:
            await self.flush("The document could not be updated.")
        except StaleDataError:
            # The failed flush expired `document`: name it by the id we were given.
            raise stale(
                f"Document {document_id} was changed by someone else at the same time. "
                "Reload it and retry."
            ) from None
        cache_invalidation.document_changed(self.cache, document.tenant_id)
        return document

    async def delete(self, document_id: int, after_commit: AfterCommit) -> None:
        """Delete the row now; the bytes once the transaction has committed (module docstring)."""
        document = await self.get(document_id)
        self._require_editor(document)
        key, tenant_id = document.storage_key, document.tenant_id
        await self.session.delete(document)
        await self.flush("The document could not be deleted.")
        cache_invalidation.document_changed(self.cache, tenant_id)
        after_commit(functools.partial(discard_content, self.storage, key))

    def _require_editor(self, document: Document) -> None:
        self.require(
            self.principal.is_chro_or_admin or document.uploaded_by == self.principal.user_id,
            "Only the uploader, a chro or an admin may change this document.",
        )

    @staticmethod
    def _check_transition(document: Document, target: DocumentStatus) -> None:
        current = document.status
        if target is current:
            return  # not a move: nothing to refuse
        allowed = TRANSITIONS[current]
        if target not in allowed:
            names = ", ".join(sorted(s.value for s in allowed)) or "none (it is final)"
            raise ConflictError(
                f"A document in status '{current.value}' cannot move to '{target.value}'; "
                f"allowed: {names}."
            )

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"The file is larger than the upload limit of {self.max_upload_bytes} bytes."
        )


async def discard_content(storage: FileStorage, key: str) -> None:
    """Remove a deleted document's bytes (after the commit). Best effort: a failure is logged
    and leaves an orphan for `sweep_orphans()`, never an error for a request already answered."""
    try:
        await storage.remove(key)
    except OSError as error:
        log.warning("document_content_not_removed", storage_key=key, error=str(error))


@dataclass(slots=True)
class SweepReport:
    scanned: int = 0
    removed: list[str] = field(default_factory=list)  # keys (".part" for staged writes)


async def sweep_orphans(
    session: AsyncSession,
    storage: FileStorage,
    *,
    older_than: timedelta = ORPHAN_GRACE,
    now: datetime | None = None,
) -> SweepReport:
    """Remove stored files that no document row refers to, and abandoned staged writes.

    Files younger than `older_than` are left alone: their upload may still be committing.
    Platform maintenance, not a tenant's action: it takes no principal (`manage.py` calls it).
    """
    entries = await storage.scan()
    cutoff = (now or datetime.now(UTC)) - older_than
    candidates = [entry for entry in entries if entry.modified <= cutoff]
    known = await _known_keys(session, [e.key for e in candidates if not e.partial])
    report = SweepReport(scanned=len(entries))
    for entry in candidates:
        if entry.partial or entry.key not in known:
            try:
                removed = await storage.remove(entry.key, partial=entry.partial)
            except OSError as error:
                log.warning("orphan_not_removed", storage_key=entry.key, error=str(error))
                continue
            if removed:
                report.removed.append(entry.key + (".part" if entry.partial else ""))
    if report.removed:
        log.info("orphans_removed", count=len(report.removed))
    return report


async def _known_keys(session: AsyncSession, keys: Sequence[str], batch: int = 500) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        rows = await session.execute(
            select(Document.storage_key).where(Document.storage_key.in_(chunk))
        )
        known.update(rows.scalars())
    return known
