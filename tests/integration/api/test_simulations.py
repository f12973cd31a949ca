"""POST/GET /simulations through the HTTP API: the numbers, the roles, the tenancy, the input
and the statement counts."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from common.enums import RunStatus, WorkflowStatus
from services.simulation_model import simulate
from tests.fixtures.query_counter import count_statements, uncached_app
from tests.fixtures.simulations import add_runs, create_stored_simulation, create_workflow, step

URL = "/api/v1/simulations"
PARAMETERS = {"adoption_rate": 0.5, "horizon_months": 4, "ramp_months": 2, "hourly_cost": 50}


def body(**overrides: Any) -> dict[str, Any]:
    parameters = {**PARAMETERS, **overrides.pop("parameters", {})}
    return {"name": "Pilot", "parameters": parameters, **overrides}


@pytest.fixture
async def tenant_data(db, world):
    """The hand-computed example of tests/unit/services/test_simulation_model.py, in the
    database, with rows that must not count around it.

    In scope: Invoices (Finance, 25 automatable minutes, 36 completed runs in 90 days -> 5 h a
    month at full adoption) and Screening (HR, 15 minutes, 24 runs -> 2 h a month).
    """
    users = [world.member, world.other_member, world.chro]
    invoices = await create_workflow(
        db,
        world.tenant,
        name="Invoices",
        department="Finance",
        steps=[step("Match", 30, 0.5), step("Post", 10, 1.0)],
    )
    screening = await create_workflow(
        db, world.tenant, name="Screening", department="HR", steps=[step("Read CVs", 60, 0.25)]
    )
    await add_runs(db, invoices, users, 36, days_ago=10)
    await add_runs(db, screening, users, 24, days_ago=80)
    # Not counted: runs that did not complete, and completed runs older than 90 days.
    await add_runs(db, invoices, users, 5, status=RunStatus.ABANDONED, days_ago=5)
    await add_runs(db, invoices, users, 3, status=RunStatus.STARTED, days_ago=1)
    await add_runs(db, invoices, users, 40, days_ago=95)
    # Not in scope: a draft and an archived workflow, and another tenant's workflow.
    for status in (WorkflowStatus.DRAFT, WorkflowStatus.ARCHIVED):
        hidden = await create_workflow(
            db, world.tenant, department="Finance", status=status, steps=[step("x", 60, 1.0)]
        )
        await add_runs(db, hidden, users, 30)
    foreign = await create_workflow(db, world.other_tenant, steps=[step("x", 60, 1.0)])
    await add_runs(db, foreign, [world.outsider], 30)
    await db.commit()
    return {"invoices": invoices, "screening": screening}


# --- the numbers ----------------------------------------------------------------------------


@pytest.mark.embedded
async def test_chro_simulates_from_the_company_data(client, world, tenant_data):
    r = await client.post(URL, json=body(name="Pilot 2026"), headers=world.auth(world.chro))

    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"{URL}/{created['id']}"
    assert created["name"] == "Pilot 2026"
    assert created["status"] == "completed"
    assert created["company_id"] == world.tenant.id
    assert created["created_by"] == world.chro.id
    assert created["completed_at"] is not None
    assert created["parameters"] == {**PARAMETERS, "departments": None}
    results = created["results"]
    # 7 h a month at full adoption; adoption 0.25, 0.5, 0.5, 0.5 (see the unit test).
    assert [m["hours_saved"] for m in results["monthly"]] == [1.75, 3.5, 3.5, 3.5]
    assert [m["cost_saved"] for m in results["monthly"]] == [87.5, 175.0, 175.0, 175.0]
    assert results["totals"] == {"hours_saved": 12.25, "cost_saved": 612.5, "fte_equivalent": 0.02}
    assert results["by_department"] == [
        {"department": "Finance", "hours_saved": 8.75, "cost_saved": 437.5},
        {"department": "HR", "hours_saved": 3.5, "cost_saved": 175.0},
    ]
    invoices, screening = tenant_data["invoices"], tenant_data["screening"]
    assert results["top_workflows"] == [
        {"id": invoices.id, "name": "Invoices", "department": "Finance", "hours_saved": 8.75},
        {"id": screening.id, "name": "Screening", "department": "HR", "hours_saved": 3.5},
    ]
    assert results["baseline"]["workflows_in_scope"] == 2
    assert results["baseline"]["completed_runs"] == 60

    stored = await client.get(r.headers["location"], headers=world.auth(world.member))
    assert stored.status_code == 200, stored.text
    assert stored.json() == created


@pytest.mark.embedded
async def test_departments_narrow_the_scope(client, world, tenant_data):
    r = await client.post(
        URL,
        json=body(parameters={"departments": ["HR", " HR ", "Legal"]}),
        headers=world.auth(world.chro),
    )

    assert r.status_code == 201, r.text
    created = r.json()
    assert created["parameters"]["departments"] == ["HR", "Legal"]  # trimmed, deduplicated
    # Screening only: 2 h a month x 1.75 months of full adoption.
    assert created["results"]["totals"]["hours_saved"] == 3.5
    assert [d["department"] for d in created["results"]["by_department"]] == ["HR"]


async def test_a_company_without_workflows_in_scope_gets_zero_savings(client, world, tenant_data):
    r = await client.post(
        URL, json=body(parameters={"departments": ["Legal"]}), headers=world.auth(world.chro)
    )

    assert r.status_code == 201, r.text
    results = r.json()["results"]
    assert len(results["monthly"]) == 4
    assert results["totals"] == {"hours_saved": 0.0, "cost_saved": 0.0, "fte_equivalent": 0.0}
    assert results["by_department"] == []
    assert results["top_workflows"] == []


async def test_admin_simulates_a_chosen_company(client, world, tenant_data):
    r = await client.post(
        URL, json=body(company_id=world.tenant.id), headers=world.auth(world.admin)
    )

    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.tenant.id
    assert r.json()["created_by"] == world.admin.id
    assert r.json()["results"]["totals"]["hours_saved"] == 12.25


async def test_admin_without_company_id_simulates_its_own_company(client, world, tenant_data):
    r = await client.post(URL, json=body(), headers=world.auth(world.admin))

    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.platform.id
    assert r.json()["results"]["totals"]["hours_saved"] == 0.0


async def test_admin_naming_a_missing_company_is_a_validation_error(client, world):
    r = await client.post(URL, json=body(company_id=2_000_000_000), headers=world.auth(world.admin))

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "body.company_id", "message": "no company has this id"}]


async def test_another_tenants_chro_sees_none_of_the_data(client, world, tenant_data):
    r = await client.post(URL, json=body(), headers=world.auth(world.other_chro))

    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.other_tenant.id
    # Only its own workflow: 10 runs a month x 60 min x 1.0 = 10 h at full adoption x 1.75.
    assert r.json()["results"]["totals"]["hours_saved"] == 17.5


# --- roles and tenancy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 201), ("chro", 201), ("member", 403), ("outsider", 403), ("anonymous", 401)],
)
async def test_who_may_run_a_simulation(client, world, role, expected):
    r = await client.post(URL, json=body(), headers=world.as_role(role))

    assert r.status_code == expected, r.text
    if expected != 201:
        assert r.headers["content-type"] == "application/problem+json"


async def test_a_chro_cannot_simulate_another_company(client, world):
    r = await client.post(
        URL, json=body(company_id=world.other_tenant.id), headers=world.auth(world.chro)
    )
    assert r.status_code == 403, r.text

    own = await client.post(
        URL, json=body(company_id=world.tenant.id), headers=world.auth(world.chro)
    )
    assert own.status_code == 201, own.text


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("chro", 200), ("member", 200), ("outsider", 404), ("anonymous", 401)],
)
async def test_who_may_read_a_simulation(client, db, world, role, expected):
    simulation = await create_stored_simulation(db, world.tenant)
    await db.commit()

    r = await client.get(f"{URL}/{simulation.id}", headers=world.as_role(role))

    assert r.status_code == expected, r.text
    if expected == 200:
        assert r.json()["id"] == simulation.id
    else:
        assert "Tenant A" not in r.text


async def test_another_tenants_chro_gets_404(client, db, world):
    simulation = await create_stored_simulation(db, world.tenant)
    await db.commit()

    r = await client.get(f"{URL}/{simulation.id}", headers=world.auth(world.other_chro))

    assert r.status_code == 404, r.text
    assert r.json()["status"] == 404


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "2147483648", "1.5"])
async def test_bad_ids_are_refused(client, world, bad_id):
    r = await client.get(f"{URL}/{bad_id}", headers=world.auth(world.chro))
    assert r.status_code == 422, r.text


async def test_a_missing_simulation_is_404(client, world):
    r = await client.get(f"{URL}/2147483647", headers=world.auth(world.chro))
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(("role", "expected"), [("member", 200), ("anonymous", 401)])
async def test_who_may_list(client, world, role, expected):
    r = await client.get(URL, headers=world.as_role(role))
    assert r.status_code == expected, r.text


@pytest.mark.embedded
async def test_list_is_company_scoped_and_newest_first(client, db, world):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    older = await create_stored_simulation(
        db, world.tenant, name="Older", created_at=now - timedelta(days=2)
    )
    newer = await create_stored_simulation(
        db, world.tenant, name="Newer", hours_saved=250.5, created_at=now - timedelta(days=1)
    )
    failed = await create_stored_simulation(db, world.tenant, name="Failed", hours_saved=None)
    foreign = await create_stored_simulation(db, world.other_tenant, name="Foreign")
    await db.commit()

    r = await client.get(URL, headers=world.auth(world.member))

    assert r.status_code == 200, r.text
    page = r.json()
    assert [item["id"] for item in page["items"]] == [failed.id, newer.id, older.id]
    assert page["total"] == 3
    assert page["pages"] == 1
    item = page["items"][1]
    assert item["totals"] == {"hours_saved": 250.5, "cost_saved": 12525.0, "fte_equivalent": 1.57}
    assert "results" not in item
    assert "monthly" not in r.text
    assert page["items"][0]["totals"] is None
    assert page["items"][0]["status"] == "failed"

    outsider = await client.get(URL, headers=world.auth(world.outsider))
    assert [item["id"] for item in outsider.json()["items"]] == [foreign.id]

    # A member's company_id is ignored: the list stays within its own company.
    scoped = await client.get(
        URL, params={"company_id": world.other_tenant.id}, headers=world.auth(world.member)
    )
    assert {item["id"] for item in scoped.json()["items"]} == {failed.id, newer.id, older.id}


async def test_admin_lists_all_or_one_company(client, db, world):
    mine = await create_stored_simulation(db, world.tenant)
    theirs = await create_stored_simulation(db, world.other_tenant)
    await db.commit()

    everything = await client.get(URL, headers=world.auth(world.admin))
    assert {mine.id, theirs.id} <= {item["id"] for item in everything.json()["items"]}

    one = await client.get(
        URL, params={"company_id": world.other_tenant.id}, headers=world.auth(world.admin)
    )
    assert [item["id"] for item in one.json()["items"]] == [theirs.id]


@pytest.mark.embedded
async def test_list_pages(client, db, world):
    for n in range(3):
        await create_stored_simulation(db, world.tenant, name=f"S{n}")
    await db.commit()

    r = await client.get(URL, params={"page": 2, "page_size": 2}, headers=world.auth(world.chro))

    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 1
    assert r.json()["total"] == 3
    assert r.json()["pages"] == 2
    beyond = await client.get(URL, params={"page": 9}, headers=world.auth(world.chro))
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] == 3


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"page_size": 0}, {"page_size": 101}, {"company_id": 0}]
)
async def test_bad_list_parameters(client, world, params):
    r = await client.get(URL, params=params, headers=world.auth(world.chro))
    assert r.status_code == 422, r.text


# --- input ------------------------------------------------------------------------------------

INVALID_BODIES = {
    "adoption below 0": body(parameters={"adoption_rate": -0.01}),
    "adoption above 1": body(parameters={"adoption_rate": 1.01}),
    "adoption not a number": body(parameters={"adoption_rate": "half"}),
    "adoption a numeric string": body(parameters={"adoption_rate": "0.5"}),
    "adoption a boolean": body(parameters={"adoption_rate": True}),
    "horizon a string": body(parameters={"horizon_months": "12"}),
    "hourly cost null": body(parameters={"hourly_cost": None}),
    "horizon 0": body(parameters={"horizon_months": 0, "ramp_months": 0}),
    "horizon above 120": body(parameters={"horizon_months": 121}),
    "horizon fractional": body(parameters={"horizon_months": 2.5}),
    "ramp negative": body(parameters={"ramp_months": -1}),
    "ramp beyond horizon": body(parameters={"horizon_months": 6, "ramp_months": 7}),
    "hourly cost 0": body(parameters={"hourly_cost": 0}),
    "hourly cost negative": body(parameters={"hourly_cost": -10}),
    "hourly cost too high": body(parameters={"hourly_cost": 10_000.01}),
    "no departments": body(parameters={"departments": []}),
    "empty department": body(parameters={"departments": ["HR", ""]}),
    "blank department": body(parameters={"departments": ["   "]}),
    "department not a string": body(parameters={"departments": [42]}),
    "too many departments": body(parameters={"departments": [f"D{n}" for n in range(51)]}),
    "department too long": body(parameters={"departments": ["x" * 101]}),
    "NUL in department": body(parameters={"departments": ["H\x00R"]}),
    "NUL in name": body(name="Pilot\x00"),
    "empty name": body(name=" "),
    "name too long": body(name="x" * 201),
    "unknown field": body(owner="me"),
    "unknown parameter": body(parameters={"discount": 0.1}),
    "company_id 0": body(company_id=0),
    "missing parameter": {"name": "Pilot", "parameters": {"adoption_rate": 0.5}},
    "missing parameters": {"name": "Pilot"},
    "not an object": ["Pilot"],
}


@pytest.mark.parametrize("payload", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_invalid_input_is_a_422_problem(client, world, payload):
    r = await client.post(URL, json=payload, headers=world.auth(world.chro))

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"]


async def test_malformed_json_is_a_problem_not_a_500(client, world):
    r = await client.post(
        URL,
        content=b'{"name": "Pilot", "parameters": ',
        headers={**world.auth(world.chro), "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


@pytest.mark.embedded
async def test_limits_are_inclusive(client, world):
    edge = body(
        name="x" * 200,
        parameters={
            "adoption_rate": 1,
            "horizon_months": 120,
            "ramp_months": 120,
            "hourly_cost": 10_000,
            "departments": [f"D{n}" for n in range(50)],
        },
    )
    r = await client.post(URL, json=edge, headers=world.auth(world.chro))

    assert r.status_code == 201, r.text
    assert len(r.json()["results"]["monthly"]) == 120
    assert r.json()["results"]["monthly"][-1]["adoption"] == 1.0


# --- cost -------------------------------------------------------------------------------------


async def test_a_simulation_costs_the_same_statements_for_a_larger_company(
    db, world, settings, connection
):
    users = [world.member, world.other_member]
    workflow = await create_workflow(db, world.tenant)
    await add_runs(db, workflow, users, 5)
    await db.commit()
    async with uncached_app(settings, connection) as (app, client):
        with count_statements(app) as small:
            r = await client.post(URL, json=body(), headers=world.auth(world.chro))
        assert r.status_code == 201, r.text

        for _ in range(30):
            workflow = await create_workflow(db, world.tenant, department="Ops")
            await add_runs(db, workflow, users, 20)
        await db.commit()
        with count_statements(app) as large:
            r = await client.post(URL, json=body(), headers=world.auth(world.chro))
        assert r.status_code == 201, r.text
        assert r.json()["results"]["baseline"]["workflows_in_scope"] == 31

    # The caller, the workflows with their run counts, the INSERT.
    assert small.count == 3, small
    assert large.count == small.count, large


async def test_list_and_detail_statements(db, world, settings, connection):
    for n in range(5):
        simulation = await create_stored_simulation(db, world.tenant, name=f"S{n}")
    await db.commit()

    async with uncached_app(settings, connection) as (app, client):
        with count_statements(app) as listing:
            r = await client.get(URL, headers=world.auth(world.chro))
        assert r.status_code == 200, r.text
        with count_statements(app) as detail:
            r = await client.get(f"{URL}/{simulation.id}", headers=world.auth(world.chro))
        assert r.status_code == 200, r.text

    assert listing.count == 3, listing  # the caller, the count, the page
    assert detail.count == 2, detail  # the caller, the row


# --- cache ------------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_a_simulation_is_read_from_the_cache_the_second_time(app, client, db, world):
    simulation = await create_stored_simulation(db, world.tenant)
    await db.commit()
    first = await client.get(f"{URL}/{simulation.id}", headers=world.auth(world.member))
    assert first.status_code == 200, first.text

    # Another user of the same company: the same cached entry, no statement at all once the
    # caller's principal is cached too.
    await client.get("/api/v1/auth/me", headers=world.auth(world.chro))
    with count_statements(app) as again:
        second = await client.get(f"{URL}/{simulation.id}", headers=world.auth(world.chro))
    assert second.json() == first.json()
    assert again.count == 0, again


async def test_a_cached_simulation_never_answers_another_tenant(client, db, world):
    simulation = await create_stored_simulation(db, world.tenant)
    await db.commit()
    for role in ("admin", "chro"):  # cached for the admin, then for the tenant
        r = await client.get(f"{URL}/{simulation.id}", headers=world.as_role(role))
        assert r.status_code == 200, r.text

    for user in (world.outsider, world.other_chro):
        r = await client.get(f"{URL}/{simulation.id}", headers=world.auth(user))
        assert r.status_code == 404, r.text


async def test_a_large_scope_is_computed_off_the_event_loop_with_the_same_result(
    client, world, tenant_data, monkeypatch
):
    inline = await client.post(URL, json=body(), headers=world.auth(world.chro))
    ran_in_thread = []
    run_sync = anyio.to_thread.run_sync

    async def spy(function, *args, **kwargs):
        ran_in_thread.append(function)
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    monkeypatch.setattr("services.simulations.THREAD_THRESHOLD", 1)  # 2 workflows in scope
    threaded = await client.post(URL, json=body(), headers=world.auth(world.chro))

    assert threaded.status_code == 201, threaded.text
    assert simulate in ran_in_thread
    assert threaded.json()["results"] == inline.json()["results"]
