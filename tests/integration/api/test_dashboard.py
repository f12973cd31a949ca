"""GET /chro/dashboard through the HTTP API: the figures, who may see them, and what they cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from common.enums import DocumentStatus, Role, RunStatus
from models import User
from tests.fixtures.factories import create_user
from tests.fixtures.query_counter import count_statements, uncached_app
from tests.fixtures.simulations import (
    add_documents,
    add_runs,
    create_stored_simulation,
    create_workflow,
)

URL = "/api/v1/chro/dashboard"


@pytest.fixture
async def tenant_data(db, world):
    """World's tenant (chro in HR, two members in Engineering) plus a Finance user, a user
    without a department and a deactivated user; runs inside and outside the 30-day window;
    documents; six simulations. Another tenant's rows around it must not count."""
    member, other_member, chro = world.member, world.other_member, world.chro
    finance = await create_user(db, world.tenant, department="Finance")
    await create_user(db, world.tenant, department=None)
    await create_user(db, world.tenant, department="Sales", is_active=False)

    invoices = await create_workflow(db, world.tenant, name="Invoices", department="Finance")
    screening = await create_workflow(db, world.tenant, name="Screening", department="HR")
    close = await create_workflow(db, world.tenant, name="Close", department="Finance")
    small = [await create_workflow(db, world.tenant, name=f"Small {n}") for n in range(3)]
    stale = await create_workflow(db, world.tenant, name="Stale")

    await add_runs(db, invoices, [member, other_member], 6, days_ago=2)
    await add_runs(db, invoices, [finance], 2, status=RunStatus.ABANDONED, days_ago=3)
    await add_runs(db, screening, [chro], 3, days_ago=4)
    await add_runs(db, screening, [member], 1, status=RunStatus.STARTED, days_ago=1)
    await add_runs(db, close, [member], 4, status=RunStatus.ABANDONED, days_ago=5)
    for workflow in small:
        await add_runs(db, workflow, [member], 1, days_ago=6)
    # Outside the window: neither activity nor top workflows.
    await add_runs(db, invoices, [member], 10, days_ago=40)
    await add_runs(db, stale, [member], 10, days_ago=31)

    await add_documents(
        db,
        world.tenant,
        member,
        [
            DocumentStatus.PROCESSED,
            DocumentStatus.UPLOADED,
            DocumentStatus.PROCESSED,
            DocumentStatus.FAILED,
        ],
    )
    now = datetime.now(UTC)
    simulations = [
        await create_stored_simulation(
            db,
            world.tenant,
            name=f"Sim {n}",
            hours_saved=None if n == 4 else 10.0 * n,
            created_at=now - timedelta(days=10 - n),
        )
        for n in range(6)
    ]

    foreign = await create_workflow(db, world.other_tenant, name="Invoices")
    await add_runs(db, foreign, [world.outsider], 7, days_ago=2)
    await add_documents(db, world.other_tenant, world.outsider, [DocumentStatus.UPLOADED] * 3)
    await create_stored_simulation(db, world.other_tenant, name="Foreign")
    await db.commit()
    return {
        "invoices": invoices,
        "screening": screening,
        "close": close,
        "small": small,
        "simulations": simulations,
    }


@pytest.mark.embedded
async def test_chro_sees_its_company_at_a_glance(client, world, tenant_data):
    r = await client.get(URL, headers=world.auth(world.chro))

    assert r.status_code == 200, r.text
    board = r.json()
    assert board["company"] == {"id": world.tenant.id, "name": "Tenant A"}
    assert board["window_days"] == 30
    assert board["headcount"] == {
        "total": 5,  # the deactivated user does not count
        "by_department": [
            {"department": "Engineering", "headcount": 2},
            {"department": "Finance", "headcount": 1},
            {"department": "HR", "headcount": 1},
            {"department": None, "headcount": 1},
        ],
    }
    # In the window: Invoices 6 completed + 2 abandoned, Screening 3 completed + 1 started,
    # Close 4 abandoned, Small 0..2 one completed each = 19 runs by member, other_member,
    # finance and chro; completed 12, abandoned 6 -> 12 / 18.
    assert board["activity"] == {
        "runs": 19,
        "active_users": 4,
        "completed_runs": 12,
        "abandoned_runs": 6,
        "in_progress_runs": 1,
        "completion_rate": 0.6667,
    }
    data = tenant_data
    # Ties (Screening and Close, 4 each; the Small ones, 1 each) go to the older workflow.
    assert board["top_workflows"] == [
        {"id": data["invoices"].id, "name": "Invoices", "department": "Finance", "runs": 8},
        {"id": data["screening"].id, "name": "Screening", "department": "HR", "runs": 4},
        {"id": data["close"].id, "name": "Close", "department": "Finance", "runs": 4},
        {"id": data["small"][0].id, "name": "Small 0", "department": "Finance", "runs": 1},
        {"id": data["small"][1].id, "name": "Small 1", "department": "Finance", "runs": 1},
    ]
    assert board["documents"] == {
        "total": 4,
        "by_status": {"uploaded": 1, "processing": 0, "processed": 2, "failed": 1},
    }
    simulations = data["simulations"]
    assert [s["id"] for s in board["latest_simulations"]] == [
        simulations[n].id for n in (5, 4, 3, 2, 1)
    ]
    assert board["latest_simulations"][0]["hours_saved"] == 50.0
    assert board["latest_simulations"][1]["hours_saved"] is None  # failed
    assert board["latest_simulations"][1]["status"] == "failed"
    assert board["latest_simulations"][2]["name"] == "Sim 3"


@pytest.mark.embedded
async def test_an_empty_company_has_an_empty_dashboard(client, world):
    r = await client.get(URL, headers=world.auth(world.other_chro))

    assert r.status_code == 200, r.text
    board = r.json()
    assert board["company"]["id"] == world.other_tenant.id
    assert board["headcount"]["total"] == 2
    assert board["activity"] == {
        "runs": 0,
        "active_users": 0,
        "completed_runs": 0,
        "abandoned_runs": 0,
        "in_progress_runs": 0,
        "completion_rate": None,
    }
    assert board["top_workflows"] == []
    assert board["documents"]["total"] == 0
    assert board["latest_simulations"] == []


@pytest.mark.embedded
async def test_admin_reads_any_company_by_id(client, world, tenant_data):
    r = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.as_role("admin")
    )

    assert r.status_code == 200, r.text
    assert r.json()["company"]["id"] == world.tenant.id
    assert r.json()["activity"]["runs"] == 19


async def test_admin_must_name_the_company(client, world):
    r = await client.get(URL, headers=world.as_role("admin"))

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "query.company_id"


async def test_admin_naming_a_missing_company_gets_404(client, world):
    r = await client.get(URL, params={"company_id": 2_147_483_647}, headers=world.as_role("admin"))
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("role", "expected"), [("chro", 200), ("member", 403), ("outsider", 403), ("anonymous", 401)]
)
async def test_who_may_see_the_dashboard(client, world, role, expected):
    r = await client.get(URL, headers=world.as_role(role))

    assert r.status_code == expected, r.text
    if expected != 200:
        assert r.headers["content-type"] == "application/problem+json"


async def test_member_is_refused_even_when_naming_its_company(client, world):
    r = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.as_role("member")
    )
    assert r.status_code == 403, r.text


async def test_chro_naming_another_company_gets_404(client, world, tenant_data):
    r = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.auth(world.other_chro)
    )

    assert r.status_code == 404, r.text
    assert "Tenant A" not in r.text
    own = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.auth(world.chro)
    )
    assert own.status_code == 200, own.text


@pytest.mark.parametrize("company_id", ["0", "-1", "abc", "2147483648", "1.5"])
async def test_bad_company_ids_are_refused(client, world, company_id):
    r = await client.get(URL, params={"company_id": company_id}, headers=world.as_role("admin"))
    assert r.status_code == 422, r.text


# --- cost -------------------------------------------------------------------------------------


async def _grow(db, world, users: int, workflows: int, runs: int) -> None:
    """More of everything for world.tenant, inserted in bulk."""
    await db.execute(
        insert(User),
        [
            {
                "company_id": world.tenant.id,
                "email": f"bulk{n}@tenant-a.example",
                "full_name": f"Bulk {n}",
                "department": f"Dept {n % 7}",
                "role": Role.MEMBER.value,
                "hashed_password": "not-a-login",
            }
            for n in range(users)
        ],
    )
    people = [world.member, world.other_member, world.chro]
    made = [
        await create_workflow(db, world.tenant, name=f"Bulk workflow {n}") for n in range(workflows)
    ]
    for n, workflow in enumerate(made):
        status = RunStatus.ABANDONED if n % 3 == 0 else RunStatus.COMPLETED
        await add_runs(db, workflow, people, runs // workflows, status=status, days_ago=n % 29)
    await add_documents(db, world.tenant, world.member, list(DocumentStatus) * 5)
    for n in range(8):
        await create_stored_simulation(db, world.tenant, name=f"Bulk sim {n}")
    await db.commit()


@pytest.mark.parametrize("role", ["chro", "admin"])
async def test_the_dashboard_costs_the_same_statements_for_a_larger_company(
    db, world, settings, connection, role
):
    params = {"company_id": world.tenant.id} if role == "admin" else {}
    workflow = await create_workflow(db, world.tenant)
    await add_runs(db, workflow, [world.member], 5, days_ago=1)
    await db.commit()
    async with uncached_app(settings, connection) as (app, client):
        with count_statements(app) as small:
            r = await client.get(URL, params=params, headers=world.as_role(role))
        assert r.status_code == 200, r.text
        assert r.json()["activity"]["runs"] == 5

        await _grow(db, world, users=50, workflows=20, runs=300)
        with count_statements(app) as large:
            r = await client.get(URL, params=params, headers=world.as_role(role))
        assert r.status_code == 200, r.text
    assert r.json()["activity"]["runs"] == 305
    assert r.json()["headcount"]["total"] == 53
    assert len(r.json()["top_workflows"]) == 5
    assert len(r.json()["latest_simulations"]) == 5

    # The caller; the company with its activity; headcount; top workflows; documents;
    # latest simulations.
    assert small.count == 6, small
    assert large.count == small.count, large


# --- cache ------------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_the_dashboard_is_cached_until_a_write_in_the_company(app, client, db, world):
    first = await client.get(URL, headers=world.auth(world.chro))
    assert first.status_code == 200, first.text
    with count_statements(app) as again:
        second = await client.get(URL, headers=world.auth(world.chro))
    assert second.json() == first.json()
    assert again.count == 0, again  # the dashboard and the caller both from the cache

    created = await client.post(
        "/api/v1/simulations",
        json={
            "name": "Fresh",
            "parameters": {
                "adoption_rate": 0.3,
                "horizon_months": 6,
                "ramp_months": 3,
                "hourly_cost": 40,
            },
        },
        headers=world.auth(world.chro),
    )
    assert created.status_code == 201, created.text

    third = await client.get(URL, headers=world.auth(world.chro))
    assert [s["name"] for s in third.json()["latest_simulations"]] == ["Fresh"]


@pytest.mark.embedded
async def test_a_cached_dashboard_never_answers_another_company(client, world):
    admin = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.as_role("admin")
    )
    assert admin.status_code == 200, admin.text  # now cached for the tenant

    r = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.auth(world.other_chro)
    )
    assert r.status_code == 404, r.text
    own = await client.get(URL, headers=world.auth(world.other_chro))
    assert own.json()["company"]["id"] == world.other_tenant.id
