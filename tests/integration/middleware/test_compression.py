"""gzip for bodies of at least GZIP_MIN_SIZE when the client accepts it; never twice; streams
compressed as they go, not buffered."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from common.enums import Role
from settings.config import Settings
from tests.fixtures.apps import add_test_route
from tests.fixtures.factories import create_user
from tests.fixtures.logs import captured_logs


def vary(response) -> set[str]:
    return {part.strip().lower() for part in response.headers.get("vary", "").split(",")}


async def test_a_100_item_list_shrinks_by_at_least_70_percent(client, world, db):
    for n in range(100):
        await create_user(
            db,
            world.tenant,
            Role.MEMBER,
            full_name=f"Employee Number {n}",
            department=("Finance", "Engineering", "People", "Sales")[n % 4],
            job_title="Analyst",
        )
    await db.commit()
    url = "/api/v1/users?page_size=100"
    headers = world.auth(world.chro)

    with captured_logs("INFO") as logs:
        plain = await client.get(url, headers={**headers, "Accept-Encoding": "identity"})
        packed = await client.get(url, headers={**headers, "Accept-Encoding": "gzip, br"})

    assert plain.status_code == packed.status_code == 200
    assert len(packed.json()["items"]) == 100
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in vary(plain)
    assert "accept-encoding" in vary(packed)
    wire_size = int(packed.headers["content-length"])
    assert packed.content == plain.content  # httpx decoded it: the same document
    assert wire_size <= 0.30 * len(plain.content), (wire_size, len(plain.content))
    # The access log counts the bytes that went out.
    sizes = [event["response_bytes"] for event in logs.named("request")]
    assert sizes == [len(plain.content), wire_size]


async def test_small_bodies_are_sent_as_they_are(client):
    response = await client.get("/health/live", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


@pytest.mark.own_app
async def test_the_threshold_is_gzip_min_size(app, client, settings):
    minimum = settings.gzip_min_size
    assert minimum == 1024

    async def sized(n: int) -> PlainTextResponse:
        return PlainTextResponse("a" * n)

    add_test_route(app, "/test-only/sized", sized)
    below = await client.get(
        f"/test-only/sized?n={minimum - 1}", headers={"Accept-Encoding": "gzip"}
    )
    at = await client.get(f"/test-only/sized?n={minimum}", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in below.headers
    assert at.headers["content-encoding"] == "gzip"
    assert at.text == "a" * minimum


@pytest.mark.parametrize("accept", ["gzip;q=0, identity", "identity", "br", ""])
@pytest.mark.own_app
async def test_clients_that_do_not_accept_gzip_get_identity(app, client, accept):
    async def big() -> PlainTextResponse:
        return PlainTextResponse("b" * 5000)

    add_test_route(app, "/test-only/big", big)
    response = await client.get("/test-only/big", headers={"Accept-Encoding": accept})
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == 5000


@pytest.mark.own_app
async def test_an_encoded_body_is_not_compressed_again(app, client):
    document = b'{"data": "' + b"z" * 4000 + b'"}'
    encoded = gzip.compress(document)

    async def pre_encoded() -> Response:
        return Response(
            encoded, media_type="application/json", headers={"Content-Encoding": "gzip"}
        )

    add_test_route(app, "/test-only/pre-encoded", pre_encoded)
    response = await client.get("/test-only/pre-encoded", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(encoded)
    assert response.content == document  # one decoding gives the document back


@pytest.mark.own_app
async def test_already_compressed_formats_are_left_alone(app, client):
    async def pdf() -> Response:
        return Response(b"%PDF-1.7\n" + bytes(range(256)) * 40, media_type="application/pdf")

    add_test_route(app, "/test-only/pdf", pdf)
    response = await client.get("/test-only/pdf", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers


@pytest.mark.own_app
async def test_a_streamed_download_is_compressed_as_it_goes_not_buffered(app):
    first_chunk_delivered = asyncio.Event()

    async def chunks():
        yield b"id,name\n" + b"1,first\n" * 500
        # Were the middleware buffering, the first chunk would never reach the client and
        # this wait would fail the request.
        await asyncio.wait_for(first_chunk_delivered.wait(), timeout=10)
        yield b"2,second\n" * 500

    async def download() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/csv")

    add_test_route(app, "/test-only/stream", download)
    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk_delivered.set()

    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/test-only/stream",
        "raw_path": b"/test-only/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"accept-encoding", b"gzip")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)

    start = messages[0]
    assert start["type"] == "http.response.start"
    assert start["status"] == 200
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert headers["content-encoding"] == "gzip"
    assert "content-length" not in headers
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    assert len([b for b in bodies if b.get("body")]) >= 2  # sent in pieces, as produced
    assert bodies[-1].get("more_body", False) is False
    wire = b"".join(m.get("body", b"") for m in bodies)
    decoded = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(wire)
    assert decoded == b"id,name\n" + b"1,first\n" * 500 + b"2,second\n" * 500


def test_the_level_is_moderate_by_default():
    settings = Settings(_env_file=None)
    assert settings.gzip_level <= 5
    with pytest.raises(ValueError, match="gzip_level"):
        Settings(_env_file=None, gzip_level=10)
