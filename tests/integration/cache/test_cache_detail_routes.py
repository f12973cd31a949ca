"""The cache's second phase through the API: workflow detail, simulation detail and the CHRO
dashboard. Freshness across two app instances on one Redis (as two processes would be), tenant
isolation of the workflow detail, and ETag revalidation of the three routes.

The two-instance tests need what production shares (PostgreSQL and Redis) and run on
PostgreSQL only; the rest runs again on the embedded backend (`embedded` mark).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from models import Simulation, Workflow
from services.cache_service import CacheName
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.cache import API, CacheCounts, cache_keys, entry_keys
from tests.fixtures.documents import uploaded
from tests.fixtures.factories import World
from tests.fixtures.problems import assert_problem, use_cheap_hashing
from tests.fixtures.simulations import create_stored_simulation
from tests.fixtures.workflows import create_workflow

WORKFLOWS = f"{API}/workflows"
SIMULATIONS = f"{API}/simulations"
DASHBOARD = f"{API}/chro/dashboard"
USERS = f"{API}/users"

embedded = pytest.mark.embedded


@pytest.fixture
async def workflow(db: AsyncSession, world: World) -> Workflow:
    """An active workflow of world.tenant, without runs."""
    created = await create_workflow(db, world.tenant, world.chro, name="Expense report")
    await db.commit()
    return created


@pytest.fixture
async def other_workflow(db: AsyncSession, world: World) -> Workflow:
    """An active workflow of world.other_tenant."""
    created = await create_workflow(db, world.other_tenant, world.other_chro, name="Hiring")
    await db.commit()
    return created


@pytest.fixture
async def simulation(db: AsyncSession, world: World) -> Simulation:
    created = await create_stored_simulation(db, world.tenant, name="Stored")
    await db.commit()
    return created


@pytest.fixture
async def second(settings, connection, app) -> AsyncIterator[FastAPI]:
    """A second app instance on the same database and Redis as `app`'s."""
    async with running_app(settings, connection) as instance:
        assert instance.state.cache is not app.state.cache
        yield instance


@pytest.fixture
async def other(second: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the second instance."""
    async with client_for(second) as c:
        yield c


async def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def record_run(client: httpx.AsyncClient, headers: dict[str, str], workflow_id: int) -> None:
    r = await client.post(
        f"{WORKFLOWS}/{workflow_id}/history",
        json={"status": "completed", "duration_seconds": 600},
        headers=headers,
    )
    assert r.status_code == 201, r.text


async def read_twice(client: httpx.AsyncClient, url: str, headers: dict[str, str], cache: str):
    """Read `url` twice and check that the second answer came from the cache; the answer."""
    first = await ok(await client.get(url, headers=headers))
    before = CacheCounts.of(cache)
    second = await ok(await client.get(url, headers=headers))
    delta = CacheCounts.of(cache) - before
    assert (delta.hits, delta.misses) == (1, 0), delta
    assert second == first
    return first


# --- freshness across two processes: workflow detail ----------------------------------------


async def test_a_workflow_patched_through_one_process_is_fresh_in_the_other(
    client, other, world, workflow
):
    url, member = f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)
    cached = await read_twice(other, url, member, CacheName.WORKFLOWS)
    assert cached["name"] == "Expense report"

    steps = [{"name": "Fill in", "minutes": 10, "automation_score": 1.0}]
    r = await client.patch(
        url, json={"name": "Travel report", "steps": steps}, headers=world.auth(world.chro)
    )
    assert r.status_code == 200, r.text

    fresh = await ok(await other.get(url, headers=member))
    assert fresh["name"] == "Travel report"
    assert fresh["steps"] == steps
    assert fresh["automation_potential"] == 1.0
    assert fresh["stats"] == cached["stats"]


async def test_an_archive_through_one_process_is_fresh_in_the_other(client, other, world, workflow):
    url, member = f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)
    assert (await read_twice(other, url, member, CacheName.WORKFLOWS))["status"] == "active"
    assert (await client.delete(url, headers=world.auth(world.chro))).status_code == 204
    assert (await ok(await other.get(url, headers=member)))["status"] == "archived"


async def test_a_run_recorded_through_one_process_updates_the_stats_in_the_other(
    client, other, world, workflow
):
    url, member = f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)
    cached = await read_twice(other, url, member, CacheName.WORKFLOWS)
    assert cached["stats"] == {
        "runs_30d": 0,
        "distinct_users_30d": 0,
        "mean_duration_seconds": None,
    }

    await record_run(client, member, workflow.id)
    after_one = await ok(await other.get(url, headers=member))
    assert after_one["stats"] == {
        "runs_30d": 1,
        "distinct_users_30d": 1,
        "mean_duration_seconds": 600.0,
    }
    # Only the stats changed: the rest of the entry is what it was.
    assert {k: v for k, v in after_one.items() if k != "stats"} == {
        k: v for k, v in cached.items() if k != "stats"
    }

    await record_run(client, world.auth(world.other_member), workflow.id)
    assert (await ok(await other.get(url, headers=member)))["stats"]["distinct_users_30d"] == 2


# --- freshness across two processes: the dashboard ------------------------------------------


async def test_the_dashboard_follows_a_run_recorded_in_another_process(
    client, other, world, workflow
):
    chro = world.auth(world.chro)
    before = await read_twice(other, DASHBOARD, chro, CacheName.DASHBOARD)
    assert before["activity"]["runs"] == 0
    assert before["top_workflows"] == []

    await record_run(client, world.auth(world.member), workflow.id)

    after = await ok(await other.get(DASHBOARD, headers=chro))
    assert after["activity"]["runs"] == 1
    assert after["activity"]["completed_runs"] == 1
    assert after["activity"]["active_users"] == 1
    assert [w["id"] for w in after["top_workflows"]] == [workflow.id]
    assert after["generated_at"] > before["generated_at"]


async def test_the_dashboard_follows_user_changes_in_another_process(
    client, other, world, monkeypatch
):
    use_cheap_hashing(monkeypatch)
    chro = world.auth(world.chro)

    def headcount(board: dict[str, Any]) -> dict[str | None, int]:
        return {d["department"]: d["headcount"] for d in board["headcount"]["by_department"]}

    board = await read_twice(other, DASHBOARD, chro, CacheName.DASHBOARD)
    assert board["headcount"]["total"] == 3
    assert headcount(board) == {"HR": 1, "Engineering": 2}

    r = await client.patch(f"{USERS}/{world.member.id}", json={"department": "Sales"}, headers=chro)
    assert r.status_code == 200, r.text
    assert headcount(await ok(await other.get(DASHBOARD, headers=chro))) == {
        "HR": 1,
        "Sales": 1,
        "Engineering": 1,
    }

    body = {"email": "nina@tenant-a.example", "full_name": "Nina New", "password": "pw-long-1234"}
    body["department"] = "Sales"
    created = await client.post(USERS, json=body, headers=chro)
    assert created.status_code == 201, created.text
    board = await ok(await other.get(DASHBOARD, headers=chro))
    assert (board["headcount"]["total"], headcount(board)["Sales"]) == (4, 2)

    r = await client.delete(f"{USERS}/{world.other_member.id}", headers=chro)
    assert r.status_code == 204, r.text
    board = await ok(await other.get(DASHBOARD, headers=chro))
    assert board["headcount"]["total"] == 3
    assert headcount(board) == {"HR": 1, "Sales": 2}


async def test_a_user_change_drops_only_its_own_companys_dashboard(client, other, world):
    mine, theirs = world.auth(world.chro), world.auth(world.other_chro)
    await read_twice(other, DASHBOARD, mine, CacheName.DASHBOARD)
    await read_twice(other, DASHBOARD, theirs, CacheName.DASHBOARD)

    r = await client.patch(
        f"{USERS}/{world.outsider.id}", json={"department": "Ops"}, headers=theirs
    )
    assert r.status_code == 200, r.text

    before = CacheCounts.of(CacheName.DASHBOARD)
    untouched = await ok(await other.get(DASHBOARD, headers=mine))
    assert (CacheCounts.of(CacheName.DASHBOARD) - before).hits == 1
    assert untouched["company"]["id"] == world.tenant.id

    before = CacheCounts.of(CacheName.DASHBOARD)
    refreshed = await ok(await other.get(DASHBOARD, headers=theirs))
    assert (CacheCounts.of(CacheName.DASHBOARD) - before).misses == 1
    assert "Ops" in {d["department"] for d in refreshed["headcount"]["by_department"]}


async def test_the_dashboard_follows_a_document_upload_in_another_process(client, other, world):
    chro = world.auth(world.chro)
    before = await read_twice(other, DASHBOARD, chro, CacheName.DASHBOARD)
    assert before["documents"]["total"] == 0

    await uploaded(client, world.auth(world.member), title="Plan")

    after = await ok(await other.get(DASHBOARD, headers=chro))
    assert after["documents"]["total"] == 1
    assert after["documents"]["by_status"]["uploaded"] == 1


async def test_the_dashboard_follows_a_simulation_and_a_rename_in_another_process(
    client, other, world
):
    chro = world.auth(world.chro)
    await read_twice(other, DASHBOARD, chro, CacheName.DASHBOARD)
    parameters = {"adoption_rate": 0.5, "horizon_months": 6, "ramp_months": 2, "hourly_cost": 50}
    r = await client.post(SIMULATIONS, json={"name": "Q3", "parameters": parameters}, headers=chro)
    assert r.status_code == 201, r.text
    board = await ok(await other.get(DASHBOARD, headers=chro))
    assert [s["name"] for s in board["latest_simulations"]] == ["Q3"]

    r = await client.patch(
        f"{API}/companies/{world.tenant.id}",
        json={"name": "Tenant A Prime"},
        headers=world.auth(world.admin),
    )
    assert r.status_code == 200, r.text
    assert (await ok(await other.get(DASHBOARD, headers=chro)))["company"]["name"] == (
        "Tenant A Prime"
    )


# --- simulation detail across two processes ---------------------------------------------------


async def test_a_simulation_created_in_one_process_is_shared_through_redis(client, other, world):
    chro, member = world.auth(world.chro), world.auth(world.member)
    parameters = {"adoption_rate": 0.4, "horizon_months": 12, "ramp_months": 3, "hourly_cost": 60}
    created = await client.post(
        SIMULATIONS, json={"name": "Pilot", "parameters": parameters}, headers=chro
    )
    assert created.status_code == 201, created.text
    url = f"{SIMULATIONS}/{created.json()['id']}"

    before = CacheCounts.of(CacheName.SIMULATIONS)
    computed = await ok(await other.get(url, headers=member))  # a miss, stored in Redis
    served = await ok(await client.get(url, headers=chro))  # the other process's entry
    delta = CacheCounts.of(CacheName.SIMULATIONS) - before
    assert (delta.misses, delta.hits) == (1, 1)
    assert computed == served
    assert served["name"] == "Pilot"
    assert served["results"] == created.json()["results"]

    # Cached for tenant A in both processes; tenant B is still told it does not exist.
    for c in (client, other):
        assert_problem(await c.get(url, headers=world.auth(world.outsider)), 404)


# --- tenant isolation of the workflow detail ----------------------------------------------


@embedded
async def test_a_cached_workflow_never_answers_another_tenant(client, app, world, workflow):
    url = f"{WORKFLOWS}/{workflow.id}"
    await read_twice(client, url, world.auth(world.member), CacheName.WORKFLOWS)
    await ok(await client.get(url, headers=world.auth(world.chro)))  # the same entry
    for user in (world.outsider, world.other_chro):
        for _ in range(2):
            assert_problem(await client.get(url, headers=world.auth(user)), 404)

    await read_twice(client, url, world.auth(world.admin), CacheName.WORKFLOWS)
    entries = entry_keys(await cache_keys(app), CacheName.WORKFLOWS)
    assert len(entries) == 2
    assert len([k for k in entries if f":t{world.tenant.id}:" in k]) == 1
    assert len([k for k in entries if f":u{world.admin.id}:" in k]) == 1
    assert not [k for k in entries if f":t{world.other_tenant.id}:" in k]


@embedded
async def test_the_admins_cached_workflow_answers_no_tenant(client, world, other_workflow):
    url = f"{WORKFLOWS}/{other_workflow.id}"
    await read_twice(client, url, world.auth(world.admin), CacheName.WORKFLOWS)
    assert_problem(await client.get(url, headers=world.auth(world.member)), 404)
    assert_problem(await client.get(url, headers=world.auth(world.chro)), 404)
    assert (await ok(await client.get(url, headers=world.auth(world.outsider))))["name"] == "Hiring"


async def test_a_workflow_cached_by_one_process_never_answers_another_tenant_in_the_other(
    client, other, world, workflow
):
    url = f"{WORKFLOWS}/{workflow.id}"
    await read_twice(other, url, world.auth(world.member), CacheName.WORKFLOWS)
    for c in (client, other):
        assert_problem(await c.get(url, headers=world.auth(world.outsider)), 404)


@embedded
async def test_a_cached_workflow_detail_sends_no_statement(
    client, world, workflow, count_statements
):
    url, member = f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)
    await ok(await client.get(url, headers=member))
    with count_statements() as counter:
        await ok(await client.get(url, headers=member))
    assert counter.count == 0, counter

    await record_run(client, member, workflow.id)
    with count_statements() as counter:
        assert (await ok(await client.get(url, headers=member)))["stats"]["runs_30d"] == 1
    assert counter.count == 2, counter  # the workflow and its stats; the caller is cached


# --- HTTP revalidation ------------------------------------------------------------------------


@pytest.fixture
def cacheable(world, workflow, simulation) -> list[tuple[str, dict[str, str]]]:
    """The phase-2 routes, each with a caller allowed to read it."""
    return [
        (f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)),
        (f"{SIMULATIONS}/{simulation.id}", world.auth(world.member)),
        (DASHBOARD, world.auth(world.chro)),
        (f"{DASHBOARD}?company_id={world.tenant.id}", world.auth(world.admin)),
    ]


@embedded
async def test_the_routes_carry_an_etag_and_answer_304_when_it_matches(client, cacheable):
    for url, headers in cacheable:
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        etag = r.headers["etag"]
        assert etag.startswith('W/"')
        assert r.headers["cache-control"] == "private, no-cache"
        assert "authorization" in r.headers["vary"].lower()
        assert r.headers["content-type"] == "application/json"
        for if_none_match in (etag, etag.removeprefix("W/"), f'"other", {etag}'):
            again = await client.get(url, headers={**headers, "If-None-Match": if_none_match})
            assert again.status_code == 304, (url, if_none_match, again.text)
            assert again.content == b""
            assert again.headers["etag"] == etag
        stale = await client.get(url, headers={**headers, "If-None-Match": 'W/"nope"'})
        assert stale.status_code == 200
        assert stale.json() == r.json()
        assert stale.headers["etag"] == etag


@embedded
async def test_the_workflow_etag_changes_with_a_write_and_a_run(client, world, workflow):
    url, member = f"{WORKFLOWS}/{workflow.id}", world.auth(world.member)
    etag = (await client.get(url, headers=member)).headers["etag"]

    r = await client.patch(url, json={"description": "New"}, headers=world.auth(world.chro))
    assert r.status_code == 200, r.text
    patched = await client.get(url, headers={**member, "If-None-Match": etag})
    assert patched.status_code == 200
    assert patched.json()["description"] == "New"
    assert patched.headers["etag"] != etag

    await record_run(client, member, workflow.id)
    ran = await client.get(url, headers={**member, "If-None-Match": patched.headers["etag"]})
    assert ran.status_code == 200
    assert ran.json()["stats"]["runs_30d"] == 1
    assert ran.headers["etag"] not in {etag, patched.headers["etag"]}


@embedded
async def test_the_dashboard_etag_holds_while_cached_and_changes_after_a_write(
    client, world, workflow
):
    chro = world.auth(world.chro)
    etag = (await client.get(DASHBOARD, headers=chro)).headers["etag"]
    assert (await client.get(DASHBOARD, headers={**chro, "If-None-Match": etag})).status_code == 304

    await record_run(client, world.auth(world.member), workflow.id)
    fresh = await client.get(DASHBOARD, headers={**chro, "If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.json()["activity"]["runs"] == 1
    assert fresh.headers["etag"] != etag


@embedded
async def test_refusals_carry_no_etag(client, world, workflow, simulation):
    refusals = [
        (f"{WORKFLOWS}/{workflow.id}", world.auth(world.outsider), 404),
        (f"{SIMULATIONS}/{simulation.id}", world.auth(world.outsider), 404),
        (DASHBOARD, world.auth(world.member), 403),
        (DASHBOARD, world.auth(world.admin), 422),
        (f"{DASHBOARD}?company_id={world.tenant.id}", world.auth(world.other_chro), 404),
    ]
    for url, headers, status in refusals:
        r = await client.get(url, headers={**headers, "If-None-Match": "*"})
        assert_problem(r, status)
        assert "etag" not in r.headers


@embedded
async def test_the_openapi_document_describes_the_304s(client):
    paths = (await ok(await client.get("/openapi.json")))["paths"]
    for path in (
        f"{WORKFLOWS}/{{workflow_id}}",
        f"{SIMULATIONS}/{{simulation_id}}",
        DASHBOARD,
    ):
        responses = paths[path]["get"]["responses"]
        assert {"200", "304"} <= set(responses), path
    # The body is still described by the response model, though the route returns a Response.
    detail = paths[f"{WORKFLOWS}/{{workflow_id}}"]["get"]["responses"]["200"]
    assert detail["content"]["application/json"]["schema"]["$ref"].endswith("/WorkflowDetail")
