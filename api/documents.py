"""Documents: multipart upload, metadata, streamed download, guarded edits, delete.

Choices the contract left open:
- A stale `version` (body) is 409, like any other lost-update conflict; a stale `If-Match` is
  412 Precondition Failed (RFC 9110); an edit that carries neither is 428 Precondition
  Required. The ETag is the version, strong (`"3"`); If-Match takes exactly one such tag.
- Bytes missing on disk for an existing row answer the download with 404 (never 500).
- An upload's whole request body is bounded (`UploadLimitRoute`): a declared Content-Length
  over the limit is refused before anything is read, a body without one as soon as it passes
  the limit.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import (
    File,
    Form,
    Header,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive

from api.deps import CompanyFilter, IdPath, ServiceDep
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from common.enums import DocumentStatus
from common.exceptions import BadRequestError, PayloadTooLargeError
from common.request_deps import PageParams
from common.transactions import TransactionalRoute, after_commit
from common.validators import Name
from schemas.base import Page
from schemas.documents import Document, DocumentUpdate
from schemas.problems import Problem
from services.documents import DocumentService

router = resource_router("/documents", "documents")

# Room for the multipart framing around the file: boundaries, part headers, the title field.
MULTIPART_ALLOWANCE = 64 * 1024
STRONG_ETAG = re.compile(r'"([0-9]{1,10})"')


def problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# --- reading ---------------------------------------------------------------------------------


@router.get("", response_model=Page[Document], summary="The company's documents, newest first")
async def list_documents(
    documents: ServiceDep[DocumentService],
    page: PageParams,
    status: Annotated[DocumentStatus | None, Query()] = None,
    company_id: CompanyFilter = None,
) -> object:
    return await documents.list(page, status=status, company_id=company_id)


@router.get(
    "/{document_id}",
    response_model=Document,
    summary="A document's metadata; the ETag is its version",
)
async def get_document(
    document_id: IdPath, documents: ServiceDep[DocumentService], response: Response
) -> object:
    document = await documents.get(document_id)
    response.headers["ETag"] = etag(document.version)
    return document


@router.get(
    "/{document_id}/content",
    response_class=StreamingResponse,
    summary="The document's bytes, as an attachment",
    responses={
        200: {
            "description": "The bytes, with the stored content type",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        404: problem("No such document, another tenant's, or its bytes are missing"),
    },
)
async def download_document(
    document_id: IdPath, documents: ServiceDep[DocumentService]
) -> StreamingResponse:
    content = await documents.open_content(document_id)
    document = content.document
    media_type = document.content_type
    if media_type.startswith("text/") or media_type == "application/json":
        media_type += "; charset=utf-8"  # the upload was checked to be UTF-8
    return StreamingResponse(
        content.chunks,
        media_type=media_type,
        headers={
            "Content-Length": str(content.size),
            "Content-Disposition": content_disposition(document.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


# --- writing ---------------------------------------------------------------------------------


class UploadLimitRoute(TransactionalRoute):
    """Bounds an upload's whole request body by `max_upload_bytes` plus the multipart framing.

    FastAPI parses a multipart body completely (spooling the file to a temporary file) before
    the endpoint runs, so the endpoint's own byte count would come too late to stop a huge
    body. This route class refuses a declared Content-Length over the bound before reading
    anything, and stops a body without one (chunked) as soon as it passes the bound: 413
    either way. The endpoint then enforces the exact limit on the file itself.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle_bounded(request: Request) -> Response:
            max_upload_bytes: int = request.app.state.settings.max_upload_bytes
            bound = max_upload_bytes + MULTIPART_ALLOWANCE
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > bound:
                raise upload_too_large(max_upload_bytes)
            guard = _BodyGuard(request.receive, bound)
            try:
                return await handler(Request(request.scope, guard.receive))
            except Exception:
                # FastAPI reports any failure while reading the form as a 400; say what it was.
                if guard.exceeded:
                    raise upload_too_large(max_upload_bytes) from None
                raise

        return handle_bounded


class _BodyGuard:
    def __init__(self, receive: Receive, bound: int) -> None:
        self._receive = receive
        self.bound = bound
        self.received = 0
        self.exceeded = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.bound:
                self.exceeded = True
                raise PayloadTooLargeError("The request body is too large.")
        return message


def upload_too_large(max_upload_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The file is larger than the upload limit of {max_upload_bytes} bytes."
    )


async def upload_document(
    request: Request,
    response: Response,
    documents: ServiceDep[DocumentService],
    file: Annotated[UploadFile, File(description="the document (see the allowed types)")],
    title: Annotated[Name, Form()],
) -> object:
    document = await documents.upload(title, file)
    set_location(request, response, "get_document", document_id=document.id)
    return document


router.add_api_route(
    "",
    upload_document,
    methods=["POST"],
    response_model=Document,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a document (multipart: file, title)",
    description="Allowed types: PDF, PNG, JPEG, DOCX, XLSX, plain text, CSV and JSON (text as "
    "UTF-8). The declared type must match the bytes. Size limit: `MAX_UPLOAD_BYTES`.",
    dependencies=[Idempotent],
    responses=with_idempotency(
        {
            413: problem("The file is over the upload limit"),
            415: problem("The type is not allowed, or the bytes do not match it"),
        }
    ),
    route_class_override=UploadLimitRoute,
)


@router.patch(
    "/{document_id}",
    response_model=Document,
    summary="Change the title or status; guarded by the version (body) or If-Match",
    responses={
        400: problem("If-Match is malformed or disagrees with `version`"),
        409: problem("A stale `version`, or a status move the state machine forbids"),
        412: problem("If-Match names a version that is no longer current"),
        428: problem("Neither `version` nor If-Match was sent"),
    },
)
async def update_document(
    document_id: IdPath,
    data: DocumentUpdate,
    documents: ServiceDep[DocumentService],
    response: Response,
    if_match: Annotated[
        str | None, Header(description='the ETag you read, e.g. "3"', max_length=100)
    ] = None,
) -> object:
    version = expected_version(if_match, data.version)
    document = await documents.update(document_id, data, version, precondition=if_match is not None)
    response.headers["ETag"] = etag(document.version)
    return document


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete the record and its bytes",
)
async def delete_document(
    document_id: IdPath, documents: ServiceDep[DocumentService], request: Request
) -> None:
    # The bytes go last: after the commit, never after a rollback (services/documents.py).
    await documents.delete(document_id, after_commit=functools.partial(after_commit, request))


# --- HTTP details ----------------------------------------------------------------------------


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None, body_version: int | None) -> int | None:
    """The version an edit is based on, from If-Match or the body (both: they must agree)."""
    if if_match is None:
        return body_version
    match = STRONG_ETAG.fullmatch(if_match.strip())
    if match is None:
        raise BadRequestError('If-Match must be the ETag of the version you read, e.g. "3".')
    version = int(match.group(1))
    if body_version is not None and body_version != version:
        raise BadRequestError("If-Match and `version` name different versions.")
    return version


def content_disposition(filename: str) -> str:
    """`attachment` with the name twice (RFC 6266): `filename*` carries it exactly, UTF-8
    percent-encoded (RFC 5987); `filename` is an ASCII stand-in for old clients."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[^\x20-\x7e]|["\\%]', "_", ascii_name).strip()
    if not ascii_name or ascii_name.startswith("."):  # nothing, or only the extension, left
        ascii_name = "document" + ascii_name
    encoded = quote(filename, safe="!#$&+^`|~")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"
