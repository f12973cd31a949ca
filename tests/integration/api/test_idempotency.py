"""Idempotency-Key on every creating POST: replay, 422 for another body, 409 while running,
per-caller keys, expiry, failures release the key, Redis down, and the OpenAPI document.

The concurrency proof (50 retries at once, one row) is in test_idempotency_concurrency.py: it
needs real commits on a database of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.idempotency_store import KEY_PREFIX
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from services.workflows import WorkflowService
from tests.conftest import make_settings
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.documents import PDF_BYTES, raw_multipart
from tests.fixtures.problems import assert_problem, use_cheap_hashing
from tests.fixtures.workflows import create_workflow
from tests.servers import redis_server

pytestmark = pytest.mark.embedded

API = "/api/v1"
REPLAYED = "idempotent-replayed"


def key() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def workflow_body(name: str = "Expense report") -> dict[str, Any]:
    return {
        "name": name,
        "department": "Finance",
        "steps": [{"name": "Collect", "minutes": 30, "automation_score": 0.8}],
    }


async def count(db: AsyncSession, model: type, *where: Any) -> int:
    db.expire_all()
    return (await db.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_a_retry_with_the_same_key_and_body_replays_the_first_response(client, world, db):
    headers = {**world.auth(world.chro), **key()}
    first = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers

    again = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert await count(db, Workflow, Workflow.name == "Expense report") == 1


CREATES: list[tuple[str, str, str, Any]] = [
    ("companies", "admin", "/companies", {"name": "Initech", "country": "US"}),
    (
        "users",
        "chro",
        "/users",
        {"email": "new.hire@tenant-a.example", "full_name": "New Hire", "password": "pw-" * 4},
    ),
    ("workflows", "chro", "/workflows", workflow_body("Payroll")),
    (
        "simulations",
        "chro",
        "/simulations",
        {
            "name": "Pilot",
            "parameters": {
                "adoption_rate": 0.5,
                "horizon_months": 12,
                "ramp_months": 3,
                "hourly_cost": 50,
            },
        },
    ),
]
MODELS = {"companies": Company, "users": User, "workflows": Workflow, "simulations": Simulation}


@pytest.mark.parametrize(("resource", "role", "path", "body"), CREATES, ids=[c[0] for c in CREATES])
async def test_every_creating_post_runs_once_per_key(
    client, world, db, monkeypatch, resource, role, path, body
):
    use_cheap_hashing(monkeypatch)
    headers = {**world.as_role(role), **key()}
    before = await count(db, MODELS[resource])
    first = await client.post(f"{API}{path}", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(f"{API}{path}", json=body, headers=headers)
    assert (again.status_code, again.headers.get(REPLAYED)) == (201, "true")
    assert again.json() == first.json()
    assert await count(db, MODELS[resource]) == before + 1


async def test_recording_a_run_runs_once_per_key_and_the_path_is_part_of_the_request(
    client, world, db
):
    one = await create_workflow(db, world.tenant, world.chro, name="One")
    two = await create_workflow(db, world.tenant, world.chro, name="Two")
    await db.commit()
    headers = {**world.auth(world.member), **key()}
    run = {"status": "started"}
    first = await client.post(f"{API}/workflows/{one.id}/history", json=run, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(f"{API}/workflows/{one.id}/history", json=run, headers=headers)
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    # The same body to another workflow is another request: the key cannot be reused for it.
    other = await client.post(f"{API}/workflows/{two.id}/history", json=run, headers=headers)
    assert_problem(other, 422)
    assert await count(db, UserWorkflowHistory, UserWorkflowHistory.user_id == world.member.id) == 1


async def test_an_upload_is_fingerprinted_by_its_parts_not_its_boundary(client, world, db):
    headers = {**world.auth(world.member), **key()}
    body, content_type = raw_multipart(title=b"Board deck")
    first = await client.post(f"{API}/documents", content=body, headers={**headers, **content_type})
    assert first.status_code == 201, first.text
    # raw_multipart draws a new boundary each time: other bytes on the wire, the same request.
    body, content_type = raw_multipart(title=b"Board deck")
    again = await client.post(f"{API}/documents", content=body, headers={**headers, **content_type})
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
    # Other file bytes under the same key: refused.
    body, content_type = raw_multipart(title=b"Board deck", content=PDF_BYTES + b"\n%more")
    other = await client.post(f"{API}/documents", content=body, headers={**headers, **content_type})
    assert_problem(other, 422)
    assert await count(db, Document, Document.title == "Board deck") == 1


async def test_the_same_key_with_another_body_is_422(client, world, db):
    headers = {**world.auth(world.chro), **key()}
    assert (await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)).is_success
    other = await client.post(f"{API}/workflows", json=workflow_body("Other"), headers=headers)
    problem = assert_problem(other, 422)
    assert problem["type"] == "urn:etter:problem:idempotency-key-reused"
    assert await count(db, Workflow, Workflow.name == "Other") == 0


async def test_a_retry_while_the_first_request_runs_is_409(client, world, db, monkeypatch):
    started, finish = asyncio.Event(), asyncio.Event()
    create = WorkflowService.create

    async def slow_create(self: WorkflowService, data: Any) -> Any:
        started.set()
        await finish.wait()
        return await create(self, data)

    monkeypatch.setattr(WorkflowService, "create", slow_create)
    headers = {**world.auth(world.chro), **key()}
    first = asyncio.create_task(
        client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    )
    await asyncio.wait_for(started.wait(), timeout=30)

    retry = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    problem = assert_problem(retry, 409)
    assert problem["type"] == "urn:etter:problem:idempotency-key-in-use"
    assert retry.headers["retry-after"] == "1"
    # Another body under the running key is still the client's mistake, not a conflict.
    assert_problem(
        await client.post(f"{API}/workflows", json=workflow_body("X"), headers=headers), 422
    )

    finish.set()
    assert (await first).status_code == 201
    replay = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert replay.headers[REPLAYED] == "true"
    assert await count(db, Workflow, Workflow.name == "Expense report") == 1


async def test_a_failed_request_releases_its_key(client, world, db):
    await create_workflow(db, world.tenant, world.chro, name="Expense report")
    await db.commit()
    headers = {**world.auth(world.chro), **key()}
    for _ in range(2):  # run again, not replayed: the failure was not stored
        failed = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
        assert_problem(failed, 409)
        assert REPLAYED not in failed.headers
        assert failed.json()["type"] == "urn:etter:problem:conflict"


async def test_keys_are_per_caller(client, world, db):
    shared = key()
    for who in (world.chro, world.other_chro):
        response = await client.post(
            f"{API}/workflows", json=workflow_body(), headers={**world.auth(who), **shared}
        )
        assert response.status_code == 201, response.text
        assert REPLAYED not in response.headers
    assert await count(db, Workflow, Workflow.name == "Expense report") == 2


async def test_an_anonymous_caller_cannot_use_a_key(client, world):
    response = await client.post(f"{API}/workflows", json=workflow_body(), headers=key())
    assert_problem(response, 401)


@pytest.mark.parametrize("value", [b'""', b"x" * 256, "caf\u00e9".encode(), b'"a"b"', b"a\\b"])
async def test_a_malformed_key_is_400(client, world, value):
    headers = {**world.auth(world.chro), "Idempotency-Key": value}
    response = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert_problem(response, 400)


def test_the_openapi_document_shows_the_header_on_creating_posts_only(app):
    document = app.openapi()
    creating = {
        "/api/v1/companies",
        "/api/v1/users",
        "/api/v1/workflows",
        "/api/v1/workflows/{workflow_id}/history",
        "/api/v1/documents",
        "/api/v1/simulations",
    }
    for path, operations in document["paths"].items():
        post = operations.get("post")
        if post is None:
            continue
        names = {p["name"] for p in post.get("parameters", []) if p["in"] == "header"}
        assert ("Idempotency-Key" in names) == (path in creating), path
        if path in creating:
            assert {"409", "422"} <= post["responses"].keys()


# --- Redis ------------------------------------------------------------------------------------


async def test_redis_keeps_the_response_for_the_configured_ttl(settings, connection, world, redis):
    if redis is None:
        pytest.skip("needs the suite's Redis")
    ttl = 3600
    own = make_settings(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        storage_dir=settings.storage_dir,
        idempotency_ttl_seconds=ttl,
    )
    async with running_app(own, connection) as application, client_for(application) as client:
        headers = {**world.auth(world.chro), **key()}
        assert (
            await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
        ).is_success
    keys = [k async for k in redis.scan_iter(f"{KEY_PREFIX}:{world.chro.id}:*")]
    assert len(keys) == 1
    assert 0 < await redis.pttl(keys[0]) <= ttl * 1000
    # Once the record is gone (expired), the key is new again: the request runs.
    await redis.delete(keys[0])
    async with running_app(own, connection) as application, client_for(application) as client:
        again = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
        assert_problem(again, 409)  # ran again: the name now exists (not a replay)
        assert REPLAYED not in again.headers


async def test_with_redis_down_a_request_with_a_key_is_503_and_one_without_runs(
    settings, connection, world, db
):
    if settings.redis_url is None:
        pytest.skip("the embedded default keeps keys in memory")
    with redis_server() as own_redis:
        own = make_settings(
            database_url=settings.database_url,
            redis_url=own_redis.url,
            storage_dir=settings.storage_dir,
            redis_socket_timeout=10,
        )
        async with running_app(own, connection) as application, client_for(application) as client:
            auth = world.auth(world.chro)
            assert (await client.get(f"{API}/auth/me", headers=auth)).status_code == 200
            own_redis.stop()
            refused = await client.post(
                f"{API}/workflows", json=workflow_body(), headers={**auth, **key()}
            )
            assert_problem(refused, 503)
            assert int(refused.headers["retry-after"]) >= 1
            assert await count(db, Workflow, Workflow.name == "Expense report") == 0
            unguarded = await client.post(f"{API}/workflows", json=workflow_body(), headers=auth)
            assert unguarded.status_code == 201, unguarded.text

            own_redis.start()
            headers = {**auth, **key()}
            body = workflow_body("After")
            first = await client.post(f"{API}/workflows", json=body, headers=headers)
            assert first.status_code == 201, first.text
            again = await client.post(f"{API}/workflows", json=body, headers=headers)
            assert again.headers[REPLAYED] == "true"


async def test_keys_are_shared_by_two_processes(settings, connection, world, app, client):
    """Two app instances on one Redis (or, embedded, each its own memory: skipped)."""
    if settings.redis_url is None:
        pytest.skip("the embedded default is one process")
    headers = {**world.auth(world.chro), **key()}
    first = await client.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert first.status_code == 201
    async with running_app(settings, connection) as second, client_for(second) as other:
        again = await other.post(f"{API}/workflows", json=workflow_body(), headers=headers)
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()
