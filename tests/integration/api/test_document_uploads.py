"""Uploads through the HTTP API: allowed types and content checks, validation, size limits
(against an app built with a 1 KiB limit), and hostile filenames."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from common.upload_policy import DOCX, XLSX
from settings.config import Settings
from settings.server import create_app
from tests.conftest import isolated_sessionmaker, make_settings
from tests.fixtures.documents import (
    DOCX_BYTES,
    JPEG_BYTES,
    PDF_BYTES,
    PNG_BYTES,
    SAMPLES,
    STORED_NAME,
    TEXT_BYTES,
    URL,
    XLSX_BYTES,
    assert_problem,
    raw_multipart,
    stored_files,
    upload,
    uploaded,
)
from tests.fixtures.factories import World

SMALL_LIMIT = 1024


@pytest.fixture
async def small_app(
    settings: Settings, connection: AsyncConnection | None, redis: Redis | None
) -> AsyncIterator[FastAPI]:
    """The app with max_upload_bytes=1024, on the same data and storage as `app`."""
    small = make_settings(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        storage_dir=settings.storage_dir,
        max_upload_bytes=SMALL_LIMIT,
    )
    application = create_app(small)
    async with LifespanManager(application):
        if connection is not None:
            application.state.database.sessionmaker = isolated_sessionmaker(connection)
        yield application


@pytest.fixture
async def small_client(small_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class CountingBody:
    """A request body streamed in chunks, counting how many chunks the server pulled."""

    def __init__(self, body: bytes, chunk: int = 8 * 1024) -> None:
        self.chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


# --- upload validation -------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", list(SAMPLES))
@pytest.mark.embedded
async def test_every_allowed_type_round_trips(
    client: httpx.AsyncClient, world: World, media_type: str
) -> None:
    filename, content = SAMPLES[media_type]
    member = world.auth(world.member)
    body = await uploaded(
        client, member, content=content, filename=filename, content_type=media_type
    )
    assert body["content_type"] == media_type
    assert body["filename"] == filename
    response = await client.get(f"{URL}/{body['id']}/content", headers=member)
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"].split(";")[0] == media_type


async def test_text_is_served_as_utf8_and_declared_charset_is_checked(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    member = world.auth(world.member)
    body = await uploaded(
        client,
        member,
        content=TEXT_BYTES,
        filename="notes.txt",
        content_type="TEXT/Plain; Charset=UTF-8",
    )
    assert body["content_type"] == "text/plain"  # canonical, parameters dropped
    response = await client.get(f"{URL}/{body['id']}/content", headers=member)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == TEXT_BYTES.decode()

    latin = await upload(
        client,
        member,
        content=b"caf\xe9",
        filename="latin.txt",
        content_type="text/plain; charset=iso-8859-1",
    )
    assert "UTF-8" in assert_problem(latin, 415)["detail"]
    assert len(stored_files(settings)) == 1  # only the accepted file


@pytest.mark.parametrize(
    ("declared", "content"),
    [
        ("text/html", b"<html><script>alert(1)</script></html>"),
        ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("application/octet-stream", PDF_BYTES),
        ("application/x-msdownload", b"MZ\x90\x00\x03"),
        ("application/zip", DOCX_BYTES),
        ("pdf", PDF_BYTES),
    ],
)
async def test_types_off_the_allow_list_are_415(
    client: httpx.AsyncClient, world: World, settings: Settings, declared: str, content: bytes
) -> None:
    response = await upload(
        client, world.auth(world.member), content=content, content_type=declared
    )
    body = assert_problem(response, 415)
    assert body["type"] == "urn:etter:problem:unsupported-media-type"
    assert "application/pdf" in body["detail"]  # names what is allowed
    assert stored_files(settings) == []


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<root/>")  # the part, but no [Content_Types].xml
    return buffer.getvalue()


NOT_OFFICE_ZIP = plain_zip()


@pytest.mark.parametrize(
    ("declared", "content"),
    [
        ("application/pdf", PNG_BYTES),  # declared PDF, bytes are PNG
        ("image/png", JPEG_BYTES),
        ("image/jpeg", PDF_BYTES),
        ("application/pdf", b"%PD"),  # shorter than the signature
        (DOCX, XLSX_BYTES),  # a spreadsheet posing as a word document
        (XLSX, DOCX_BYTES),
        (DOCX, NOT_OFFICE_ZIP),  # a zip, but no Office package
        (DOCX, b"PK\x03\x04 but not really a zip at all"),
        (DOCX, PDF_BYTES),
        ("text/plain", PNG_BYTES),
        ("text/plain", b"plain until\x00a NUL byte"),
        ("text/csv", b"name,city\nAna,Caf\xe9\n"),  # Latin-1, not UTF-8
        ("application/json", '{"a": 1}'.encode("utf-16")),
        ("text/plain", "truncated €".encode()[:-1]),  # ends inside a UTF-8 sequence
    ],
)
async def test_bytes_must_match_the_declared_type(
    client: httpx.AsyncClient, world: World, settings: Settings, declared: str, content: bytes
) -> None:
    response = await upload(
        client, world.auth(world.member), content=content, content_type=declared
    )
    body = assert_problem(response, 415)
    assert "does not match" in body["detail"]
    assert stored_files(settings) == []  # the partial or complete file is gone


async def test_large_text_mismatch_deep_in_the_file_is_caught(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    content = b"a" * (300 * 1024) + b"\xff" + b"b" * 1024
    response = await upload(
        client, world.auth(world.member), content=content, content_type="text/plain"
    )
    assert_problem(response, 415)
    assert stored_files(settings) == []


async def test_empty_file_is_refused(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    response = await upload(client, world.auth(world.member), content=b"")
    body = assert_problem(response, 422)
    assert body["errors"] == [{"field": "body.file", "message": "the file is empty"}]
    assert stored_files(settings) == []


async def test_missing_parts_are_422(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    member = world.auth(world.member)
    no_file = await client.post(
        URL,
        headers=member,
        data={"title": "No file"},
        files={"attachment": ("report.pdf", PDF_BYTES, "application/pdf")},
    )
    assert "body.file" in {e["field"] for e in assert_problem(no_file, 422)["errors"]}
    form_only = await client.post(URL, headers=member, data={"title": "Form only"})
    assert "body.file" in {e["field"] for e in assert_problem(form_only, 422)["errors"]}
    no_title = await client.post(
        URL, headers=member, files={"file": ("report.pdf", PDF_BYTES, "application/pdf")}
    )
    assert "body.title" in {e["field"] for e in assert_problem(no_title, 422)["errors"]}
    not_multipart = await client.post(URL, headers=member, json={"title": "JSON"})
    assert_problem(not_multipart, 422)
    assert stored_files(settings) == []


@pytest.mark.parametrize("title", ["", "   ", "x" * 201, "nul\x00inside"])
async def test_invalid_titles_are_422(
    client: httpx.AsyncClient, world: World, settings: Settings, title: str
) -> None:
    response = await upload(client, world.auth(world.member), title=title)
    assert "body.title" in {e["field"] for e in assert_problem(response, 422)["errors"]}
    assert stored_files(settings) == []


@pytest.mark.embedded
async def test_title_is_trimmed(client: httpx.AsyncClient, world: World) -> None:
    body = await uploaded(client, world.auth(world.member), title="  Spaced out  ")
    assert body["title"] == "Spaced out"


async def test_malformed_multipart_is_400(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    body, headers = raw_multipart(filename=b"line\r\nbreak.pdf")  # CRLF ends the part header
    response = await client.post(URL, content=body, headers={**world.auth(world.member), **headers})
    assert_problem(response, 400)
    assert stored_files(settings) == []


# --- upload size limits ------------------------------------------------------------------------


@pytest.mark.embedded
async def test_file_at_the_limit_is_accepted(small_client: httpx.AsyncClient, world: World) -> None:
    content = b"x" * SMALL_LIMIT
    body = await uploaded(
        small_client, world.auth(world.member), content=content, content_type="text/plain"
    )
    assert body["size_bytes"] == SMALL_LIMIT


@pytest.mark.embedded
async def test_one_byte_over_the_limit_is_413(
    small_client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    response = await upload(
        small_client,
        world.auth(world.member),
        content=b"x" * (SMALL_LIMIT + 1),
        content_type="text/plain",
    )
    body = assert_problem(response, 413)
    assert body["type"] == "urn:etter:problem:payload-too-large"
    assert str(SMALL_LIMIT) in body["detail"]
    assert stored_files(settings) == []


async def test_large_content_length_is_refused_before_reading(
    small_client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    raw, headers = raw_multipart(content=b"%PDF-" + b"x" * (200 * 1024))
    stream = CountingBody(raw)
    response = await small_client.post(
        URL,
        content=stream,
        headers={**world.auth(world.member), **headers, "Content-Length": str(len(raw))},
    )
    assert_problem(response, 413)
    assert stream.pulled == 0
    assert stored_files(settings) == []


@pytest.mark.embedded
async def test_chunked_body_is_cut_off_once_over_the_bound(
    small_client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    raw, headers = raw_multipart(content=b"%PDF-" + b"x" * (200 * 1024))
    stream = CountingBody(raw)
    response = await small_client.post(
        URL, content=stream, headers={**world.auth(world.member), **headers}
    )
    assert_problem(response, 413)
    assert 0 < stream.pulled < len(stream.chunks)  # stopped early, not read to the end
    assert stored_files(settings) == []


# --- filenames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\System32\\evil.pdf", "evil.pdf"),
        ("/var/www/report.pdf", "report.pdf"),
        ("..", "document"),
        ("   ...   ", "document"),
        (".hidden.pdf", "hidden.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # right-to-left override dropped
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ("many    spaces .pdf", "many spaces .pdf"),
        ("Re\u0301sume\u0301 2024 (final).pdf", "Résumé 2024 (final).pdf"),  # NFC
        ("a" * 300 + ".pdf", "a" * 251 + ".pdf"),
    ],
)
async def test_filenames_are_sanitised(
    client: httpx.AsyncClient, world: World, settings: Settings, sent: str, kept: str
) -> None:
    body = await uploaded(client, world.auth(world.member), filename=sent)
    assert body["filename"] == kept
    assert len(body["filename"]) <= 255
    files = stored_files(settings)
    assert len(files) == 1
    assert STORED_NAME.fullmatch(files[0])
    assert not (settings.storage_dir.parent / "etc").exists()


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"../../etc/pa\x00ss\nwd", "passwd"),  # NUL and a bare LF, raw on the wire
        (b"evil\x00.pdf", "evil.pdf"),
        (b"esc\x1b[31mred.pdf", "esc[31mred.pdf"),
        (b"tab\there.pdf", "tabhere.pdf"),
        ("Résumé.pdf".encode(), "Résumé.pdf"),
    ],
)
async def test_raw_control_characters_in_filenames(
    client: httpx.AsyncClient, world: World, settings: Settings, sent: bytes, kept: str
) -> None:
    raw, headers = raw_multipart(filename=sent)
    response = await client.post(URL, content=raw, headers={**world.auth(world.member), **headers})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == kept
    assert all(STORED_NAME.fullmatch(name) for name in stored_files(settings))
