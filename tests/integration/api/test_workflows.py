"""Workflows through the HTTP API: the role and tenancy matrix, validation, stats, and cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import RunStatus, WorkflowStatus
from models import Workflow
from tests.fixtures.factories import World
from tests.fixtures.problems import assert_problem
from tests.fixtures.workflows import create_run, create_workflow, step_payload

URL = "/api/v1/workflows"


def new_workflow(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Expense report",
        "department": "Finance",
        "description": "Monthly expenses",
        "steps": [
            {"name": "Collect receipts", "minutes": 30, "automation_score": 0.8},
            {"name": "Approve", "minutes": 10, "automation_score": 0.2},
        ],
        **overrides,
    }


@pytest.fixture
async def tenant_workflow(db: AsyncSession, world: World) -> Workflow:
    workflow = await create_workflow(db, world.tenant, world.chro, name="Onboarding")
    await db.commit()
    return workflow


@pytest.fixture
async def other_workflow(db: AsyncSession, world: World) -> Workflow:
    workflow = await create_workflow(db, world.other_tenant, world.other_chro, name="Hiring")
    await db.commit()
    return workflow


async def reload(db: AsyncSession, workflow_id: int) -> Workflow:
    statement = (
        select(Workflow).where(Workflow.id == workflow_id).execution_options(populate_existing=True)
    )
    return (await db.execute(statement)).scalar_one()


# --- list --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status", "expected"),
    [
        ("member", 200, ["Onboarding"]),
        ("chro", 200, ["Onboarding"]),
        ("admin", 200, ["Hiring", "Onboarding"]),
        ("outsider", 200, ["Hiring"]),
        ("anonymous", 401, None),
    ],
)
async def test_list_matrix(
    client: httpx.AsyncClient,
    world: World,
    tenant_workflow: Workflow,
    other_workflow: Workflow,
    who: str,
    status: int,
    expected: list[str] | None,
) -> None:
    r = await client.get(URL, headers=world.as_role(who))
    if expected is None:
        assert_problem(r, status)
        return
    assert r.status_code == status, r.text
    body = r.json()
    assert [item["name"] for item in body["items"]] == expected
    assert body["total"] == len(expected)
    # A list item carries no steps or description; the detail does.
    assert "steps" not in body["items"][0]
    assert "automation_potential" in body["items"][0]


async def test_admin_picks_a_company_and_others_cannot(
    client: httpx.AsyncClient, world: World, tenant_workflow: Workflow, other_workflow: Workflow
) -> None:
    r = await client.get(
        URL, params={"company_id": world.tenant.id}, headers=world.auth(world.admin)
    )
    assert [w["name"] for w in r.json()["items"]] == ["Onboarding"]
    # For everyone else `company_id` changes nothing: their own company, never another's.
    r = await client.get(
        URL, params={"company_id": world.other_tenant.id}, headers=world.auth(world.chro)
    )
    assert [w["name"] for w in r.json()["items"]] == ["Onboarding"]


@pytest.mark.embedded
async def test_list_filters_order_and_pages(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    for name, department, status in [
        ("invoice archive", "Finance", WorkflowStatus.ARCHIVED),
        ("Invoice Approval", "Finance", WorkflowStatus.ACTIVE),
        ("Payroll 100%", "HR", WorkflowStatus.ACTIVE),
        ("Payroll 1000", "HR", WorkflowStatus.DRAFT),
        ("Payroll_run", "HR", WorkflowStatus.DRAFT),
    ]:
        await create_workflow(db, world.tenant, name=name, department=department, status=status)
    await create_workflow(db, world.other_tenant, name="Invoice elsewhere")
    await db.commit()
    auth = world.auth(world.member)

    async def names(**params: Any) -> list[str]:
        r = await client.get(URL, params=params, headers=auth)
        assert r.status_code == 200, r.text
        return [w["name"] for w in r.json()["items"]]

    assert await names(q="INVOICE") == ["Invoice Approval", "invoice archive"]
    # LIKE wildcards in the term are literal characters, on PostgreSQL and SQLite alike.
    assert await names(q="100%") == ["Payroll 100%"]
    assert await names(q="l_1") == []  # "_" would match the space in "Payroll 1000"
    assert await names(q="l_run") == ["Payroll_run"]
    assert await names(department="HR", status="draft") == ["Payroll 1000", "Payroll_run"]
    assert await names(status="archived") == ["invoice archive"]
    assert await names(department="Nowhere") == []

    # Pages of 2 add up to the whole list, in the same order (the collation is the database's).
    everything = await names(page_size=100)
    assert len(everything) == 5
    paged = []
    for page in (1, 2, 3):
        r = await client.get(URL, params={"page": page, "page_size": 2}, headers=auth)
        body = r.json()
        assert (body["total"], body["pages"], body["page"]) == (5, 3, page)
        paged += [w["name"] for w in body["items"]]
    assert paged == everything
    assert await names(page=9, page_size=2) == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "deleted"},
        {"page": 0},
        {"page_size": 0},
        {"page_size": 101},
        {"q": "x" * 101},
        {"q": "a\x00b"},
        {"department": "d" * 101},
        {"company_id": 0},
        {"company_id": "abc"},
    ],
)
async def test_list_refuses_bad_query(
    client: httpx.AsyncClient, world: World, params: dict[str, Any]
) -> None:
    body = assert_problem(
        await client.get(URL, params=params, headers=world.auth(world.admin)), 422
    )
    assert body["errors"]


async def test_list_costs_two_statements(
    client: httpx.AsyncClient, db: AsyncSession, world: World, count_statements: Any
) -> None:
    for _ in range(5):
        await create_workflow(db, world.tenant)
    await db.commit()
    with count_statements() as counter:
        r = await client.get(URL, headers=world.auth(world.member))
    assert r.status_code == 200
    assert len(r.json()["items"]) == 5
    # At most the caller (unless cached), then the page carrying its count, whatever the size.
    assert counter.count <= 2, counter
    assert sum("FROM workflows" in sql for sql in counter.statements) == 1, counter


# --- detail ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("member", 200),
        ("chro", 200),
        ("admin", 200),
        ("outsider", 404),
        ("other_chro", 404),
        ("anonymous", 401),
    ],
)
async def test_detail_matrix(
    client: httpx.AsyncClient, world: World, tenant_workflow: Workflow, who: str, status: int
) -> None:
    r = await client.get(f"{URL}/{tenant_workflow.id}", headers=world.as_role(who))
    if status != 200:
        body = assert_problem(r, status)
        assert "Onboarding" not in r.text
        assert "steps" not in body
        return
    body = r.json()
    assert body["id"] == tenant_workflow.id
    assert body["company_id"] == world.tenant.id
    assert body["name"] == "Onboarding"
    assert body["steps"] == [
        {"name": "Collect receipts", "minutes": 30.0, "automation_score": 0.8},
        {"name": "Approve", "minutes": 10.0, "automation_score": 0.2},
    ]
    # (30 x 0.8 + 10 x 0.2) / 40 = 26 / 40
    assert body["automation_potential"] == pytest.approx(0.65)
    assert body["created_by"] == world.chro.id
    assert body["stats"] == {
        "runs_30d": 0,
        "distinct_users_30d": 0,
        "mean_duration_seconds": None,
    }


@pytest.mark.embedded
async def test_detail_stats_match_hand_computed_values(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    tenant_workflow: Workflow,
    count_statements: Any,
) -> None:
    now = datetime.now(UTC)
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    neighbour = await create_workflow(db, world.tenant, name="Neighbour")
    for user, started, status, duration in [
        (world.member, days(2), RunStatus.COMPLETED, 600),
        (world.member, days(10), RunStatus.COMPLETED, 1200),
        (world.chro, days(29), RunStatus.COMPLETED, 300),
        (world.other_member, days(5), RunStatus.ABANDONED, None),
        (world.other_member, days(3), RunStatus.ABANDONED, 50),  # not in the mean
        (world.other_member, days(1), RunStatus.STARTED, None),
        (world.member, days(31), RunStatus.COMPLETED, 10_000),  # outside the window
    ]:
        await create_run(
            db, user, tenant_workflow, started_at=started, status=status, duration_seconds=duration
        )
    await create_run(db, world.member, neighbour, started_at=days(1), duration_seconds=9_999)
    await db.commit()

    with count_statements() as counter:
        r = await client.get(f"{URL}/{tenant_workflow.id}", headers=world.auth(world.member))
    assert r.status_code == 200, r.text
    # 6 runs in 30 days by member, chro and other_member; mean of the completed ones:
    # (600 + 1200 + 300) / 3 = 700
    assert r.json()["stats"] == {
        "runs_30d": 6,
        "distinct_users_30d": 3,
        "mean_duration_seconds": pytest.approx(700.0),
    }
    # The caller (unless cached), the workflow, and one aggregate over the history.
    assert counter.count <= 3, counter
    assert sum("FROM user_workflow_history" in sql for sql in counter.statements) == 1, counter


# --- create ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("chro", 201), ("admin", 201), ("member", 403), ("outsider", 403), ("anonymous", 401)],
)
async def test_create_matrix(
    client: httpx.AsyncClient, db: AsyncSession, world: World, who: str, status: int
) -> None:
    r = await client.post(URL, json=new_workflow(), headers=world.as_role(who))
    if status != 201:
        assert_problem(r, status)
        assert (await db.execute(select(Workflow))).first() is None
        return
    assert r.status_code == 201, r.text
    body = r.json()
    caller = getattr(world, who)
    assert r.headers["location"] == f"{URL}/{body['id']}"
    assert body["company_id"] == caller.company_id
    assert body["created_by"] == caller.id
    assert body["status"] == "draft"
    assert body["automation_potential"] == pytest.approx(0.65)
    fetched = await client.get(r.headers["location"], headers=world.auth(caller))
    assert fetched.json()["steps"] == body["steps"]


async def test_create_in_another_company_is_for_the_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.post(
        URL, json=new_workflow(company_id=world.tenant.id), headers=world.auth(world.admin)
    )
    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.tenant.id
    r = await client.post(
        URL, json=new_workflow(company_id=world.other_tenant.id), headers=world.auth(world.chro)
    )
    assert_problem(r, 403)
    # The chro naming its own company is fine.
    r = await client.post(
        URL,
        json=new_workflow(name="Own", company_id=world.tenant.id),
        headers=world.auth(world.chro),
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        URL, json=new_workflow(company_id=2_000_000_000), headers=world.auth(world.admin)
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"].endswith("company_id")


@pytest.mark.embedded
async def test_name_is_unique_per_company(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        URL, json=new_workflow(name="  Payroll  "), headers=world.auth(world.chro)
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Payroll"  # trimmed
    body = assert_problem(
        await client.post(URL, json=new_workflow(name="Payroll"), headers=world.auth(world.chro)),
        409,
    )
    assert "Payroll" in body["detail"]
    # Another company may use the same name.
    r = await client.post(
        URL, json=new_workflow(name="Payroll"), headers=world.auth(world.other_chro)
    )
    assert r.status_code == 201, r.text
    # The failed attempt left nothing behind: the company still has exactly one.
    r = await client.get(URL, params={"q": "payroll"}, headers=world.auth(world.chro))
    assert r.json()["total"] == 1


def _steps(n: int) -> list[dict[str, Any]]:
    return [step_payload(name=f"Step {i}") for i in range(n)]


INVALID_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("no steps", {"steps": []}, "steps"),
    ("101 steps", {"steps": _steps(101)}, "steps"),
    ("steps not a list", {"steps": {"name": "x"}}, "steps"),
    ("zero minutes", {"steps": [step_payload(minutes=0)]}, "minutes"),
    ("negative minutes", {"steps": [step_payload(minutes=-5)]}, "minutes"),
    ("minutes over a week", {"steps": [step_payload(minutes=10_081)]}, "minutes"),
    ("minutes not a number", {"steps": [step_payload(minutes="ten")]}, "minutes"),
    ("score below 0", {"steps": [step_payload(automation_score=-0.01)]}, "automation_score"),
    ("score above 1", {"steps": [step_payload(automation_score=1.01)]}, "automation_score"),
    ("score missing", {"steps": [{"name": "x", "minutes": 1}]}, "automation_score"),
    ("empty step name", {"steps": [step_payload(name="")]}, "name"),
    ("blank step name", {"steps": [step_payload(name="   ")]}, "name"),
    ("long step name", {"steps": [step_payload(name="x" * 201)]}, "name"),
    ("extra step key", {"steps": [step_payload(weight=3)]}, "weight"),
    ("empty name", {"name": ""}, "name"),
    ("long name", {"name": "n" * 201}, "name"),
    ("NUL in name", {"name": "Pay\x00roll"}, "body"),
    ("NUL in a step name", {"steps": [step_payload(name="a\x00")]}, "body"),
    ("NUL in description", {"description": "\x00"}, "body"),
    ("automation_potential", {"automation_potential": 0.5}, "automation_potential"),
    ("created_by", {"created_by": 1}, "created_by"),
    ("unknown status", {"status": "deleted"}, "status"),
    ("company_id zero", {"company_id": 0}, "company_id"),
    ("long department", {"department": "d" * 101}, "department"),
]


@pytest.mark.parametrize(
    ("change", "field"),
    [(case[1], case[2]) for case in INVALID_CREATES],
    ids=[case[0] for case in INVALID_CREATES],
)
async def test_create_refuses_invalid_bodies(
    client: httpx.AsyncClient, world: World, change: dict[str, Any], field: str
) -> None:
    r = await client.post(URL, json=new_workflow(**change), headers=world.auth(world.chro))
    body = assert_problem(r, 422)
    assert any(field in error["field"] for error in body["errors"]), body


STEP = b'{"name": "s", "minutes": 5, "automation_score": 0.5}'


def _with_step(minutes: bytes, score: bytes) -> bytes:
    return b'{"name": "x", "steps": [{"name": "s", "minutes": %s, "automation_score": %s}]}' % (
        minutes,
        score,
    )


MALFORMED: dict[str, bytes] = {
    "NaN minutes": _with_step(b"NaN", b"1"),
    "infinite score": _with_step(b"5", b"Infinity"),
    "minutes beyond a float": _with_step(b"1e309", b"1"),
    "a list": b"[]",
    "null": b"null",
    "not json": b"not json",
    "truncated": b'{"name": "x", "steps": [',
    "not utf-8": b'{"name": "\xff\xfe", "steps": [' + STEP + b"]}",
    "lone surrogate": b'{"name": "\\ud800", "steps": [' + STEP + b"]}",
    "nested 500 deep": b'{"name": ' + b"[" * 500 + b'"x"' + b"]" * 500 + b', "steps": []}',
    "step nested 500 deep": b'{"name": "x", "steps": ' + b"[" * 500 + b"]" * 500 + b"}",
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_malformed_json_is_a_4xx_problem(
    client: httpx.AsyncClient, world: World, tenant_workflow: Workflow, method: str, case: str
) -> None:
    url = URL if method == "POST" else f"{URL}/{tenant_workflow.id}"
    r = await client.request(
        method,
        url,
        content=MALFORMED[case],
        headers={**world.auth(world.chro), "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    body = assert_problem(r, r.status_code)
    assert body["request_id"] == r.headers["x-request-id"]


@pytest.mark.embedded
async def test_create_accepts_the_bounds(client: httpx.AsyncClient, world: World) -> None:
    steps = [step_payload(name=f"S{i}", minutes=10_080, automation_score=1) for i in range(99)]
    steps.append(step_payload(name="x" * 200, minutes=0.01, automation_score=0))
    r = await client.post(URL, json=new_workflow(steps=steps), headers=world.auth(world.chro))
    assert r.status_code == 201, r.text
    assert len(r.json()["steps"]) == 100
    assert 0.99 < r.json()["automation_potential"] < 1


# --- update ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("chro", 200),
        ("admin", 200),
        ("member", 403),
        ("outsider", 404),
        ("other_chro", 404),
        ("anonymous", 401),
    ],
)
async def test_update_matrix(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    tenant_workflow: Workflow,
    who: str,
    status: int,
) -> None:
    r = await client.patch(
        f"{URL}/{tenant_workflow.id}",
        json={"description": "Changed"},
        headers=world.as_role(who),
    )
    stored = await reload(db, tenant_workflow.id)
    if status != 200:
        assert_problem(r, status)
        assert stored.description is None
        return
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "Changed" == stored.description


@pytest.mark.embedded
async def test_update_is_partial_and_rederives_the_potential(
    client: httpx.AsyncClient, db: AsyncSession, world: World, tenant_workflow: Workflow
) -> None:
    url = f"{URL}/{tenant_workflow.id}"
    auth = world.auth(world.chro)
    r = await client.patch(url, json={"department": "People", "status": "active"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["department"], body["status"]) == ("Onboarding", "People", "active")
    assert body["automation_potential"] == pytest.approx(0.65)
    assert len(body["steps"]) == 2

    steps = [
        {"name": "Draft", "minutes": 60, "automation_score": 0.25},
        {"name": "Send", "minutes": 20, "automation_score": 1},
    ]
    r = await client.patch(url, json={"steps": steps}, headers=auth)
    # (60 x 0.25 + 20 x 1) / 80 = 35 / 80
    assert r.json()["automation_potential"] == pytest.approx(0.4375)
    stored = await reload(db, tenant_workflow.id)
    assert stored.automation_potential == pytest.approx(0.4375)
    assert [s["name"] for s in stored.steps] == ["Draft", "Send"]

    # A nullable field may be cleared.
    r = await client.patch(url, json={"department": None}, headers=auth)
    assert r.json()["department"] is None
    assert r.json()["name"] == "Onboarding"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({}, "body"),
        ({"automation_potential": 0.9}, "automation_potential"),
        ({"company_id": 1}, "company_id"),
        ({"name": None}, "name"),
        ({"steps": None}, "steps"),
        ({"status": None}, "status"),
        ({"steps": []}, "steps"),
        ({"steps": [step_payload(automation_score=2)]}, "automation_score"),
        ({"name": " "}, "name"),
        ({"description": "a\x00"}, "body"),
    ],
)
async def test_update_refuses_invalid_bodies(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    tenant_workflow: Workflow,
    change: dict[str, Any],
    field: str,
) -> None:
    r = await client.patch(
        f"{URL}/{tenant_workflow.id}", json=change, headers=world.auth(world.chro)
    )
    body = assert_problem(r, 422)
    assert any(field in error["field"] for error in body["errors"]), body
    stored = await reload(db, tenant_workflow.id)
    assert stored.automation_potential == pytest.approx(0.65)


@pytest.mark.embedded
async def test_rename_onto_another_name_conflicts(
    client: httpx.AsyncClient, db: AsyncSession, world: World, tenant_workflow: Workflow
) -> None:
    await create_workflow(db, world.tenant, name="Offboarding")
    await db.commit()
    r = await client.patch(
        f"{URL}/{tenant_workflow.id}", json={"name": "Offboarding"}, headers=world.auth(world.chro)
    )
    assert_problem(r, 409)
    assert (await reload(db, tenant_workflow.id)).name == "Onboarding"


# --- archive -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("chro", 204),
        ("admin", 204),
        ("member", 403),
        ("outsider", 404),
        ("other_chro", 404),
        ("anonymous", 401),
    ],
)
async def test_archive_matrix(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    tenant_workflow: Workflow,
    who: str,
    status: int,
) -> None:
    r = await client.delete(f"{URL}/{tenant_workflow.id}", headers=world.as_role(who))
    stored = await reload(db, tenant_workflow.id)
    if status != 204:
        assert_problem(r, status)
        assert stored.status == "active"
        return
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert stored.status == "archived"
    # Archived, not gone: still readable, and archiving again changes nothing.
    r = await client.get(f"{URL}/{tenant_workflow.id}", headers=world.auth(world.member))
    assert r.json()["status"] == "archived"
    r = await client.delete(f"{URL}/{tenant_workflow.id}", headers=world.as_role(who))
    assert r.status_code == 204


# --- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "1.5", "2147483648"])
async def test_bad_ids_are_refused(
    client: httpx.AsyncClient, world: World, method: str, bad_id: str
) -> None:
    r = await client.request(
        method, f"{URL}/{bad_id}", json={"description": "x"}, headers=world.auth(world.chro)
    )
    assert_problem(r, 422)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_id_is_404(client: httpx.AsyncClient, world: World, method: str) -> None:
    r = await client.request(
        method, f"{URL}/2147483647", json={"description": "x"}, headers=world.auth(world.admin)
    )
    assert_problem(r, 404)
