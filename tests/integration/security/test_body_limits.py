"""Issue 10, defects 1 and 2 (the edge): request bodies and request targets are bounded before
anything parses them or authenticates the caller.

Before the fix a 128 MiB JSON body without a token was read and parsed whole, and only then
answered 401; a 64 KB path went on to the router, the rate limiter and the access log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.apps import client_for, running_app
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.embedded

WORKFLOWS = "/api/v1/workflows"
DOCUMENTS = "/api/v1/documents"
MIB = 1024 * 1024


class CountingBody:
    """A body streamed in chunks (no Content-Length: chunked), counting the chunks pulled."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.chunk = chunk
        self.pulled = 0

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # A JSON string that never ends: only the bound can stop it.
        yield b'{"name": "'
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * self.chunk


def workflow_body(padding: int) -> bytes:
    return json.dumps(
        {"name": "x" * padding, "steps": [{"name": "a", "minutes": 1, "automation_score": 0.5}]}
    ).encode()


async def test_declared_oversized_body_is_413_before_auth(client, world):
    """Defect 1: the anonymous caller gets the 413, not a 401 after the body was parsed."""
    body = workflow_body(2 * MIB)
    response = await client.post(
        WORKFLOWS, content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 413)
    assert problem["type"] == "urn:etter:problem:payload-too-large"
    assert str(MIB) in problem["detail"]


async def test_declared_oversized_body_is_not_read_at_all(app, world):
    """The declared length alone decides: not one chunk of the body is pulled."""
    stream = CountingBody(8 * MIB)
    async with client_for(app) as client:
        response = await client.post(
            WORKFLOWS,
            content=stream,
            headers={"Content-Type": "application/json", "Content-Length": str(8 * MIB)},
        )
    assert_problem(response, 413)
    assert stream.pulled == 0


async def test_chunked_body_is_cut_off_at_the_bound(client, world):
    """Without a Content-Length the bytes are counted as they come and the read stops at the
    bound, with a token or without: never read to the end."""
    for headers in ({}, world.auth(world.chro)):
        stream = CountingBody(16 * MIB)
        response = await client.post(
            WORKFLOWS, content=stream, headers={**headers, "Content-Type": "application/json"}
        )
        assert_problem(response, 413)
        assert stream.pulled <= MIB // stream.chunk + 1, stream.pulled
        assert stream.pulled < stream.chunks


async def test_a_body_under_the_bound_goes_on_to_auth(client, world):
    body = workflow_body(MIB // 2)
    response = await client.post(
        WORKFLOWS, content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 401)


async def test_the_bound_is_a_setting(settings, connection, world):
    headers = {**world.auth(world.chro), "Content-Type": "application/json"}
    async with (
        running_app(settings, connection, max_body_bytes=4096) as app,
        client_for(app) as client,
    ):
        small = await client.post(WORKFLOWS, content=workflow_body(3000), headers=headers)
        big = await client.post(WORKFLOWS, content=workflow_body(5000), headers=headers)
    assert_problem(small, 422)  # went on to validation (the name is too long)
    assert_problem(big, 413)


async def test_uploads_keep_their_own_larger_bound(settings, connection, world):
    """A 2 MiB document passes where a 2 MiB JSON body would not; beyond MAX_UPLOAD_BYTES the
    upload is refused too."""
    content = b"line of text\n" * (2 * MIB // 13)
    async with (
        running_app(settings, connection, max_upload_bytes=3 * MIB) as app,
        client_for(app) as client,
    ):
        fits, too_big = [
            await client.post(
                DOCUMENTS,
                headers=world.auth(world.member),
                data={"title": "Big notes"},
                files={"file": ("notes.txt", body, "text/plain")},
            )
            for body in (content, content * 2)
        ]
    assert fits.status_code == 201, fits.text
    assert_problem(too_big, 413)


async def test_login_form_is_bounded_too(client, world):
    response = await client.post(
        "/api/v1/auth/token",
        content=b"username=a&password=" + b"x" * (2 * MIB),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 413)


# --- request targets (defect 2's edge) ---------------------------------------------------------


def adversarial_path(length: int) -> str:
    """The reviewer's path: `eyJ-` segments, the worst case of the old redaction pattern."""
    return "/api/v1/" + ("eyJ-" * (length // 4))


async def test_an_absurd_path_is_414_and_logged_short(client, world):
    with captured_logs("INFO") as logs:
        response = await client.get(adversarial_path(60 * 1024))  # httpx: 64 KiB at most
    problem = assert_problem(response, 414)
    assert problem["type"] == "urn:etter:problem:uri-too-long"
    (access,) = logs.named("request")
    assert access["status"] == 414
    assert len(access["path"]) < 1024


async def test_an_absurd_query_string_is_414(client, world):
    response = await client.get("/api/v1/companies", params={"q": "x" * 20_000})
    assert_problem(response, 414)


async def test_a_long_but_sane_path_is_routed_and_logged_capped(client, world):
    path = adversarial_path(4 * 1024)
    with captured_logs("INFO") as logs:
        response = await client.get(path)
    assert_problem(response, 404)
    (access,) = logs.named("request")
    assert len(access["path"]) < 600
    assert access["path"].endswith("characters cut]")
