"""`after_commit` callbacks (cache invalidation) run after the request's commit, before the
response, and never when the request fails or its commit does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from common.exceptions import ConflictError
from common.problems import install_problem_handlers
from common.transactions import SESSION_STATE_KEY, TransactionalRoute, after_commit


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def callback(self, name: str, fail: bool = False):
        async def run() -> None:
            self.events.append(name)
            if fail:
                raise RuntimeError(f"{name} failed")

        return run


class FakeSession:
    def __init__(self, recorder: Recorder, fail_commit: bool = False) -> None:
        self.recorder = recorder
        self.fail_commit = fail_commit

    async def commit(self) -> None:
        self.recorder.events.append("commit")
        if self.fail_commit:
            raise RuntimeError("could not serialize access")

    async def rollback(self) -> None:
        self.recorder.events.append("rollback")

    async def close(self) -> None:
        self.recorder.events.append("close")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter(route_class=TransactionalRoute)

    def begin(request: Request, fail_commit: bool = False) -> None:
        request.scope.setdefault("state", {})[SESSION_STATE_KEY] = FakeSession(
            recorder, fail_commit
        )

    @router.post("/ok")
    async def ok(request: Request) -> dict[str, bool]:
        begin(request)
        after_commit(request, recorder.callback("invalidate"))
        recorder.events.append("endpoint")
        return {"ok": True}

    @router.post("/refused")
    async def refused(request: Request) -> None:
        begin(request)
        after_commit(request, recorder.callback("invalidate"))
        raise ConflictError("taken")

    @router.post("/commit-fails")
    async def commit_fails(request: Request) -> None:
        begin(request, fail_commit=True)
        after_commit(request, recorder.callback("invalidate"))

    @router.post("/callback-fails")
    async def callback_fails(request: Request) -> dict[str, bool]:
        begin(request)
        after_commit(request, recorder.callback("first", fail=True))
        after_commit(request, recorder.callback("second"))
        return {"ok": True}

    @router.post("/no-session")
    async def no_session(request: Request) -> dict[str, bool]:
        after_commit(request, recorder.callback("invalidate"))
        return {"ok": True}

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_callbacks_run_after_the_commit(client, recorder):
    r = await client.post("/ok")
    assert r.status_code == 200
    assert recorder.events == ["endpoint", "commit", "close", "invalidate"]


async def test_callbacks_are_dropped_when_the_endpoint_fails(client, recorder):
    r = await client.post("/refused")
    assert r.status_code == 409
    assert recorder.events == ["rollback", "close"]


async def test_callbacks_are_dropped_when_the_commit_fails(client, recorder):
    r = await client.post("/commit-fails")
    assert r.status_code == 500
    assert recorder.events == ["commit", "rollback", "close"]


async def test_a_failing_callback_neither_fails_the_request_nor_stops_the_others(client, recorder):
    r = await client.post("/callback-fails")
    assert r.status_code == 200
    assert recorder.events == ["commit", "close", "first", "second"]


async def test_callbacks_run_without_a_session_too(client, recorder):
    assert (await client.post("/no-session")).status_code == 200
    assert recorder.events == ["invalidate"]
