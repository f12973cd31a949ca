"""Test data for documents: sample files of every allowed type, upload helpers, raw multipart."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import DocumentStatus
from common.storage import FileStorage
from common.upload_policy import DOCX, XLSX
from models import Company, Document, User
from settings.config import Settings
from tests.factories import World

URL = "/api/v1/documents"
PROBLEM = "application/problem+json"
# How every stored file is named: the tenant, then a random key; never the client's filename.
STORED_NAME = re.compile(r"[1-9][0-9]*/[0-9a-f]{32}")

PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)) + b"\xff\xd9"
TEXT_BYTES = "Quarterly notes — naïve café, 10 € ✓\n".encode()
CSV_BYTES = b"name,minutes\nintake,12\nreview,30\n"
JSON_BYTES = b'{"workflows": [1, 2, 3]}'


def office_package(main_part: str) -> bytes:
    """A minimal Office Open XML package: a zip with [Content_Types].xml and the main part."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        package.writestr(main_part, '<?xml version="1.0"?><root/>')
    return buffer.getvalue()


DOCX_BYTES = office_package("word/document.xml")
XLSX_BYTES = office_package("xl/workbook.xml")

# Every allowed type with bytes that are really of that type.
SAMPLES: dict[str, tuple[str, bytes]] = {
    "application/pdf": ("report.pdf", PDF_BYTES),
    "image/png": ("chart.png", PNG_BYTES),
    "image/jpeg": ("photo.jpg", JPEG_BYTES),
    DOCX: ("memo.docx", DOCX_BYTES),
    XLSX: ("budget.xlsx", XLSX_BYTES),
    "text/plain": ("notes.txt", TEXT_BYTES),
    "text/csv": ("steps.csv", CSV_BYTES),
    "application/json": ("data.json", JSON_BYTES),
}


def headers_for(world: World, who: str) -> dict[str, str]:
    """Auth headers for a `World` user by attribute name, or none for "anonymous"."""
    return {} if who == "anonymous" else world.auth(getattr(world, who))


def stored_files(settings: Settings) -> list[str]:
    """Every file under the storage directory, relative to it (staged `.part` files too)."""
    root = settings.storage_dir
    return sorted(
        str(Path(dirpath, name).relative_to(root))
        for dirpath, _, names in os.walk(root)
        for name in names
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    return body


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    content: bytes = PDF_BYTES,
    filename: str = "report.pdf",
    content_type: str = "application/pdf",
    title: str = "Quarterly report",
) -> httpx.Response:
    return await client.post(
        URL,
        headers=headers,
        data={"title": title},
        files={"file": (filename, content, content_type)},
    )


async def uploaded(client: httpx.AsyncClient, headers: dict[str, str], **kwargs: Any) -> dict:
    """Upload through the API and return the created document's JSON (asserting the 201)."""
    response = await upload(client, headers, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def raw_multipart(
    *,
    filename: bytes = b"report.pdf",
    content: bytes = PDF_BYTES,
    content_type: bytes = b"application/pdf",
    title: bytes = b"Raw upload",
) -> tuple[bytes, dict[str, str]]:
    """A multipart body built byte by byte, for what httpx would escape (NUL, CR, LF in the
    filename), and the matching Content-Type header."""
    boundary = f"etter-{uuid.uuid4().hex}".encode()
    body = b"".join(
        (
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="title"\r\n\r\n',
            title + b"\r\n",
            b"--" + boundary + b"\r\n",
            b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n',
            b"Content-Type: " + content_type + b"\r\n\r\n",
            content + b"\r\n",
            b"--" + boundary + b"--\r\n",
        )
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}


async def create_document(
    session: AsyncSession,
    storage: FileStorage,
    tenant: Company,
    uploader: User | None,
    *,
    content: bytes = PDF_BYTES,
    content_type: str = "application/pdf",
    status: DocumentStatus = DocumentStatus.UPLOADED,
    **values: Any,
) -> Document:
    """A document row with its bytes in storage, bypassing the API (flushed, not committed)."""

    pending = [content]

    async def read(_: int) -> bytes:
        return pending.pop() if pending else b""

    stored = await storage.store(tenant.id, read, max_bytes=len(content) + 1)
    values.setdefault("title", "Factory document")
    values.setdefault("filename", "factory.pdf")
    document = Document(
        tenant_id=tenant.id,
        uploaded_by=uploader.id if uploader else None,
        content_type=content_type,
        size_bytes=stored.size,
        sha256=hashlib.sha256(content).hexdigest(),
        storage_key=stored.key,
        status=status.value,
        **values,
    )
    session.add(document)
    await session.flush()
    return document
