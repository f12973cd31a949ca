"""Recording runs and reading a user's history: roles, tenancy, time rules, keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import Role, WorkflowStatus
from common.pagination import CursorCodec
from common.principal import Principal
from models import UserWorkflowHistory, Workflow
from services.workflow_history import CURSOR_PURPOSE, WorkflowHistoryService
from tests.fixtures.factories import World
from tests.fixtures.problems import assert_problem
from tests.fixtures.workflows import create_run, create_workflow


def iso(moment: datetime) -> str:
    return moment.isoformat()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
async def workflow(db: AsyncSession, world: World) -> Workflow:
    created = await create_workflow(db, world.tenant, world.chro, name="Month-end close")
    await db.commit()
    return created


def runs_url(workflow_id: int) -> str:
    return f"/api/v1/workflows/{workflow_id}/history"


def history_url(user_id: int) -> str:
    return f"/api/v1/users/{user_id}/workflow-history"


# --- recording: who ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("member", 201),
        ("chro", 201),
        ("admin", 403),  # sees the workflow, but is no user of its company
        ("outsider", 404),
        ("other_chro", 404),
        ("anonymous", 401),
    ],
)
async def test_record_matrix(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    workflow: Workflow,
    who: str,
    status: int,
) -> None:
    r = await client.post(
        runs_url(workflow.id),
        json={"status": "completed", "duration_seconds": 120},
        headers=world.as_role(who),
    )
    rows = (await db.execute(select(UserWorkflowHistory))).scalars().all()
    if status != 201:
        assert_problem(r, status)
        assert rows == []
        return
    assert r.status_code == 201, r.text
    caller = getattr(world, who)
    body = r.json()
    assert r.headers["location"] == history_url(caller.id)
    assert body["user_id"] == caller.id
    assert body["workflow_id"] == workflow.id
    assert body["workflow_name"] == "Month-end close"
    assert body["status"] == "completed"
    assert body["duration_seconds"] == 120
    assert parse(body["completed_at"]) - parse(body["started_at"]) == timedelta(seconds=120)
    [row] = rows
    assert (row.id, row.user_id, row.company_id) == (body["id"], caller.id, world.tenant.id)
    # The new run heads the caller's history, where Location points.
    listed = await client.get(r.headers["location"], headers=world.auth(caller))
    assert listed.json()["items"][0]["id"] == body["id"]


async def test_admin_records_in_its_own_company(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    own = await create_workflow(db, world.platform, world.admin)
    await db.commit()
    r = await client.post(
        runs_url(own.id), json={"status": "started"}, headers=world.auth(world.admin)
    )
    assert r.status_code == 201, r.text


async def test_archived_workflow_takes_no_runs_but_drafts_do(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    archived = await create_workflow(db, world.tenant, status=WorkflowStatus.ARCHIVED)
    draft = await create_workflow(db, world.tenant, status=WorkflowStatus.DRAFT)
    await db.commit()
    auth = world.auth(world.member)
    assert_problem(
        await client.post(runs_url(archived.id), json={"status": "started"}, headers=auth), 409
    )
    r = await client.post(runs_url(draft.id), json={"status": "started"}, headers=auth)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "2147483648"])
async def test_record_refuses_bad_ids(client: httpx.AsyncClient, world: World, bad_id: str) -> None:
    r = await client.post(
        f"/api/v1/workflows/{bad_id}/history",
        json={"status": "started"},
        headers=world.auth(world.member),
    )
    assert_problem(r, 422)


async def test_record_on_unknown_workflow_is_404(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        runs_url(2_147_483_647), json={"status": "started"}, headers=world.auth(world.member)
    )
    assert_problem(r, 404)


# --- recording: the time rules -----------------------------------------------------------------


async def record(
    client: httpx.AsyncClient, world: World, workflow: Workflow, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(runs_url(workflow.id), json=body, headers=world.auth(world.member))


@pytest.mark.embedded
async def test_started_at_defaults_to_now(
    client: httpx.AsyncClient, world: World, workflow: Workflow
) -> None:
    before = datetime.now(UTC)
    r = await record(client, world, workflow, {"status": "started"})
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    body = r.json()
    assert before <= parse(body["started_at"]) <= after
    assert body["completed_at"] is None
    assert body["duration_seconds"] is None


@pytest.mark.embedded
async def test_a_duration_alone_means_the_run_just_ended(
    client: httpx.AsyncClient, world: World, workflow: Workflow
) -> None:
    before = datetime.now(UTC)
    r = await record(client, world, workflow, {"status": "completed", "duration_seconds": 90})
    after = datetime.now(UTC)
    body = r.json()
    assert before <= parse(body["completed_at"]) <= after
    assert parse(body["completed_at"]) - parse(body["started_at"]) == timedelta(seconds=90)


T0 = datetime(2025, 3, 4, 8, 30, 15, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (  # completed_at given: the duration is derived
            {
                "status": "completed",
                "started_at": iso(T0),
                "completed_at": iso(T0 + timedelta(seconds=90)),
            },
            (T0, T0 + timedelta(seconds=90), 90),
        ),
        (  # the duration given: completed_at is derived
            {"status": "completed", "started_at": iso(T0), "duration_seconds": 3600},
            (T0, T0 + timedelta(hours=1), 3600),
        ),
        (  # the end and the duration: started_at is derived
            {
                "status": "completed",
                "completed_at": iso(T0 + timedelta(hours=1)),
                "duration_seconds": 3600,
            },
            (T0, T0 + timedelta(hours=1), 3600),
        ),
        (  # all three, agreeing to the second
            {
                "status": "completed",
                "started_at": iso(T0),
                "completed_at": iso(T0 + timedelta(seconds=60.4)),
                "duration_seconds": 60,
            },
            (T0, T0 + timedelta(seconds=60.4), 60),
        ),
        (  # an offset other than UTC: the same instant, answered in UTC
            {
                "status": "completed",
                "started_at": "2025-03-04T10:30:15.25+02:00",
                "duration_seconds": 5,
            },
            (T0, T0 + timedelta(seconds=5), 5),
        ),
        (  # an abandoned run whose end is unknown
            {"status": "abandoned", "started_at": iso(T0)},
            (T0, None, None),
        ),
        (
            {
                "status": "abandoned",
                "started_at": iso(T0),
                "completed_at": iso(T0 + timedelta(seconds=30)),
            },
            (T0, T0 + timedelta(seconds=30), 30),
        ),
        (  # a zero-length run
            {"status": "completed", "started_at": iso(T0), "duration_seconds": 0},
            (T0, T0, 0),
        ),
        (
            {"status": "started", "started_at": iso(T0)},
            (T0, None, None),
        ),
    ],
)
@pytest.mark.embedded
async def test_times_are_completed_from_each_other(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    workflow: Workflow,
    sent: dict[str, Any],
    expected: tuple[datetime, datetime | None, int | None],
) -> None:
    r = await record(client, world, workflow, sent)
    assert r.status_code == 201, r.text
    body = r.json()
    started, completed, duration = expected
    assert body["started_at"].endswith(("Z", "+00:00"))
    assert parse(body["started_at"]) == started
    assert (parse(body["completed_at"]) if body["completed_at"] else None) == completed
    assert body["duration_seconds"] == duration
    row = (await db.execute(select(UserWorkflowHistory))).scalar_one()
    assert (row.started_at, row.completed_at, row.duration_seconds) == expected


async def test_a_little_clock_skew_is_tolerated(
    client: httpx.AsyncClient, world: World, workflow: Workflow
) -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=20)
    r = await record(client, world, workflow, {"status": "started", "started_at": iso(ahead)})
    assert r.status_code == 201, r.text


def _invalid_runs(now: datetime) -> list[tuple[str, dict[str, Any], str]]:
    """(name, body, the field the error names); times relative to `now`, taken when the test
    runs rather than when it is collected."""
    hour_ago = now - timedelta(hours=1)
    return [
        (
            "naive started_at",
            {"status": "started", "started_at": "2025-01-01T10:00:00"},
            "started_at",
        ),
        (
            "naive completed_at",
            {
                "status": "completed",
                "started_at": iso(hour_ago),
                "completed_at": "2025-01-01T10:00:00",
            },
            "completed_at",
        ),
        (
            "started in the future",
            {"status": "started", "started_at": iso(now + timedelta(hours=1))},
            "started_at",
        ),
        (
            "completed in the future",
            {
                "status": "completed",
                "started_at": iso(hour_ago),
                "completed_at": iso(now + timedelta(days=1)),
            },
            "completed_at",
        ),
        (
            "ends in the future by its duration",
            {
                "status": "completed",
                "started_at": iso(now - timedelta(seconds=10)),
                "duration_seconds": 3600,
            },
            "duration_seconds",
        ),
        (
            "started with an end",
            {"status": "started", "completed_at": iso(hour_ago)},
            "completed_at",
        ),
        (
            "started with a duration",
            {"status": "started", "duration_seconds": 5},
            "duration_seconds",
        ),
        (
            "completed without an end",
            {"status": "completed", "started_at": iso(hour_ago)},
            "completed_at",
        ),
        ("completed without anything", {"status": "completed"}, "completed_at"),
        (
            "end before start",
            {
                "status": "completed",
                "started_at": iso(hour_ago),
                "completed_at": iso(hour_ago - timedelta(seconds=1)),
            },
            "completed_at",
        ),
        # started_at defaults to now, and an hour ago is before now
        (
            "end alone, in the past",
            {"status": "completed", "completed_at": iso(hour_ago)},
            "completed_at",
        ),
        (
            "duration disagrees",
            {
                "status": "completed",
                "started_at": iso(hour_ago),
                "completed_at": iso(hour_ago + timedelta(seconds=60)),
                "duration_seconds": 120,
            },
            "duration_seconds",
        ),
        (
            "longer than 31 days",
            {
                "status": "completed",
                "started_at": iso(now - timedelta(days=40)),
                "completed_at": iso(now - timedelta(days=8)),
            },
            "completed_at",
        ),
        ("negative duration", {"status": "completed", "duration_seconds": -1}, "duration_seconds"),
        (
            "duration over 31 days",
            {"status": "completed", "duration_seconds": 31 * 86_400 + 1},
            "duration_seconds",
        ),
        (
            "fractional duration",
            {"status": "completed", "duration_seconds": 1.5},
            "duration_seconds",
        ),
        (
            "duration not a number",
            {"status": "completed", "duration_seconds": "long"},
            "duration_seconds",
        ),
        (
            "before 1970",
            {"status": "started", "started_at": "1969-12-31T23:59:59+00:00"},
            "started_at",
        ),
        (
            "year 1 with an offset",
            {
                "status": "completed",
                "completed_at": "0001-01-01T00:00:00+01:00",
                "duration_seconds": 5,
            },
            "completed_at",
        ),
        ("not a time", {"status": "started", "started_at": "yesterday"}, "started_at"),
        ("unknown status", {"status": "done"}, "status"),
        ("no status", {}, "status"),
        ("NUL in status", {"status": "started\x00"}, "body"),
        ("recording for someone else", {"status": "started", "user_id": 1}, "user_id"),
        ("an unknown field", {"status": "started", "company_id": 1}, "company_id"),
    ]


INVALID_RUN_NAMES = [case[0] for case in _invalid_runs(datetime.now(UTC))]


@pytest.mark.parametrize("case", INVALID_RUN_NAMES)
async def test_record_refuses_invalid_runs(
    client: httpx.AsyncClient, db: AsyncSession, world: World, workflow: Workflow, case: str
) -> None:
    cases = {name: (body, field) for name, body, field in _invalid_runs(datetime.now(UTC))}
    body, field = cases[case]
    found = assert_problem(await record(client, world, workflow, body), 422)
    assert any(field in error["field"] for error in found["errors"]), found
    assert (await db.execute(select(UserWorkflowHistory))).first() is None


RAW_RUNS: dict[str, bytes] = {
    "not json": b"started",
    "null": b"null",
    "a list": b'[{"status": "started"}]',
    "NaN duration": b'{"status": "completed", "duration_seconds": NaN}',
    "duration beyond a float": b'{"status": "completed", "duration_seconds": 1e309}',
    "duration 2**70": b'{"status": "completed", "duration_seconds": 1180591620717411303424}',
    "lone surrogate": b'{"status": "started", "started_at": "\\ud800"}',
    "nested 500 deep": b'{"status": ' + b"[" * 500 + b"]" * 500 + b"}",
    "year 10000": b'{"status": "started", "started_at": "10000-01-01T00:00:00+00:00"}',
    "offset of 25 hours": b'{"status": "started", "started_at": "2025-01-01T00:00:00+25:00"}',
}


@pytest.mark.parametrize("case", list(RAW_RUNS))
async def test_malformed_runs_are_a_4xx_problem(
    client: httpx.AsyncClient, world: World, workflow: Workflow, case: str
) -> None:
    r = await client.post(
        runs_url(workflow.id),
        content=RAW_RUNS[case],
        headers={**world.auth(world.member), "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    assert_problem(r, r.status_code)


# --- reading a user's history: who -------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("member", 200),  # themself
        ("chro", 200),
        ("admin", 200),
        ("other_member", 403),  # a colleague
        ("outsider", 404),
        ("other_chro", 404),
        ("anonymous", 401),
    ],
)
async def test_history_matrix(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    workflow: Workflow,
    who: str,
    status: int,
) -> None:
    run = await create_run(db, world.member, workflow)
    await create_run(db, world.other_member, workflow)  # someone else's run: never listed
    await db.commit()
    r = await client.get(history_url(world.member.id), headers=world.as_role(who))
    if status != 200:
        body = assert_problem(r, status)
        assert "items" not in body
        return
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert item == {
        "id": run.id,
        "user_id": world.member.id,
        "workflow_id": workflow.id,
        "workflow_name": "Month-end close",
        "status": "completed",
        "started_at": item["started_at"],
        "completed_at": item["completed_at"],
        "duration_seconds": 600,
    }
    assert parse(item["started_at"]) == run.started_at
    assert parse(item["completed_at"]) == run.completed_at


async def test_admin_reads_any_tenant_and_unknown_users_are_404(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    theirs = await create_workflow(db, world.other_tenant)
    run = await create_run(db, world.outsider, theirs)
    await db.commit()
    r = await client.get(history_url(world.outsider.id), headers=world.auth(world.admin))
    assert [item["id"] for item in r.json()["items"]] == [run.id]
    assert_problem(
        await client.get(history_url(2_147_483_647), headers=world.auth(world.admin)), 404
    )
    assert_problem(
        await client.get(history_url(2_147_483_647), headers=world.auth(world.chro)), 404
    )


@pytest.mark.embedded
async def test_an_empty_history(client: httpx.AsyncClient, world: World) -> None:
    r = await client.get(history_url(world.member.id), headers=world.auth(world.member))
    assert r.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "2147483648"])
async def test_history_refuses_bad_ids(
    client: httpx.AsyncClient, world: World, bad_id: str
) -> None:
    assert_problem(
        await client.get(
            f"/api/v1/users/{bad_id}/workflow-history", headers=world.auth(world.admin)
        ),
        422,
    )


# --- reading a user's history: keyset pages ----------------------------------------------------


async def seed_history(db: AsyncSession, world: World, workflow: Workflow) -> list[int]:
    """23 runs of the member in groups of three sharing a started_at, over two workflows;
    returns their ids newest first (started_at desc, then id desc)."""
    second = await create_workflow(db, world.tenant, name="Payroll")
    base = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    runs = []
    for i in range(23):
        runs.append(
            await create_run(
                db,
                world.member,
                workflow if i % 2 else second,
                started_at=base - timedelta(minutes=i // 3),
            )
        )
    for _ in range(3):  # a colleague's runs at the same moments: never in the member's pages
        await create_run(db, world.other_member, workflow, started_at=base)
    await db.commit()
    runs.sort(key=lambda run: (run.started_at, run.id), reverse=True)
    return [run.id for run in runs]


async def walk(
    client: httpx.AsyncClient, url: str, auth: dict[str, str], limit: int
) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get(url, params=params, headers=auth)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not advance"


@pytest.mark.parametrize("limit", [1, 5, 6, 23, 100])
@pytest.mark.embedded
async def test_pages_cover_every_run_once_in_order(
    client: httpx.AsyncClient, db: AsyncSession, world: World, workflow: Workflow, limit: int
) -> None:
    expected = await seed_history(db, world, workflow)
    pages = await walk(client, history_url(world.member.id), world.auth(world.chro), limit)
    ids = [item["id"] for page in pages for item in page]
    assert ids == expected  # no duplicates, no gaps, ties on started_at broken by id
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit  # never an empty last page
    names = {item["workflow_name"] for page in pages for item in page}
    assert names == {"Month-end close", "Payroll"}


@pytest.mark.embedded
async def test_new_runs_do_not_shift_later_pages(
    client: httpx.AsyncClient, db: AsyncSession, world: World, workflow: Workflow
) -> None:
    expected = await seed_history(db, world, workflow)
    url, auth = history_url(world.member.id), world.auth(world.member)
    first = (await client.get(url, params={"limit": 10}, headers=auth)).json()
    # A run recorded meanwhile is newer than everything: it belongs before page 1, not in page 2.
    r = await client.post(runs_url(workflow.id), json={"status": "started"}, headers=auth)
    assert r.status_code == 201
    second = (
        await client.get(url, params={"limit": 10, "cursor": first["next_cursor"]}, headers=auth)
    ).json()
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert ids == expected[:20]


@pytest.mark.embedded
async def test_a_deep_page_costs_what_the_first_costs(
    client: httpx.AsyncClient,
    db: AsyncSession,
    world: World,
    workflow: Workflow,
    count_statements: Any,
) -> None:
    await seed_history(db, world, workflow)
    url = history_url(world.member.id)
    page_queries: list[str] = []
    for who, most in (("member", 2), ("chro", 3)):
        auth, cursor = world.auth(getattr(world, who)), None
        while True:
            params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
            with count_statements() as counter:
                r = await client.get(url, params=params, headers=auth)
            # Themself: the caller (unless cached) and the page; the chro also looks the
            # user up (tenancy: another company's user is a 404).
            assert counter.count <= most, counter
            [page_query] = [s for s in counter.statements if "FROM user_workflow_history" in s]
            page_queries.append(page_query)
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    assert len(page_queries) == 10
    # Every later page is the same statement, a (started_at, id) keyset: page 5 reads the index
    # where page 2 does. (SQLite writes `LIMIT ? OFFSET ?` for any limit; PostgreSQL shows
    # that no rows are skipped by OFFSET.)
    deep = {sql for n, sql in enumerate(page_queries) if n % 5}
    assert len(deep) == 1
    [deep_query] = deep
    assert "(user_workflow_history.started_at, user_workflow_history.id) <" in deep_query
    if not world.settings.is_sqlite:
        assert "OFFSET" not in deep_query.upper()


def _plan_cost(plan: dict[str, Any]) -> tuple[int, int]:
    """(buffers touched, rows read and then thrown away by a filter) over an EXPLAIN plan."""
    removed = plan.get("Rows Removed by Filter", 0)
    for child in plan.get("Plans", []):
        removed += _plan_cost(child)[1]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], removed


async def test_postgresql_bounds_a_deep_page_by_the_index(
    db: AsyncSession, world: World, workflow: Workflow
) -> None:
    """On a history of thousands of runs, page ~250 touches as many buffers as page 1 and
    filters nothing away: the keyset position is an index bound, not a filter."""
    if world.settings.is_sqlite:
        pytest.skip("EXPLAIN (ANALYZE, BUFFERS) is PostgreSQL's")
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for user, runs_per_second in ((world.member, 3), (world.other_member, 1)):
        await db.execute(
            text(
                "INSERT INTO user_workflow_history"
                " (user_id, workflow_id, company_id, status, started_at, created_at, updated_at)"
                " SELECT :user, :workflow, :company, 'started',"
                " CAST(:base AS timestamptz) - (n / :per) * interval '1 second', now(), now()"
                " FROM generate_series(1, 5000) AS n"
            ),
            {
                "user": user.id,
                "workflow": workflow.id,
                "company": world.tenant.id,
                "base": base,
                "per": runs_per_second,
            },
        )
    await db.execute(text("ANALYZE user_workflow_history"))
    deep = (
        await db.execute(
            select(UserWorkflowHistory.started_at, UserWorkflowHistory.id)
            .where(UserWorkflowHistory.user_id == world.member.id)
            .order_by(UserWorkflowHistory.started_at.desc(), UserWorkflowHistory.id.desc())
            .offset(4_500)
            .limit(1)
        )
    ).one()
    principal = Principal(world.member.id, world.tenant.id, Role.MEMBER, world.member.email)
    service = WorkflowHistoryService(db, principal, CursorCodec(b"unused", CURSOR_PURPOSE))
    costs = []
    for after in (None, (deep.started_at, deep.id)):
        statement = service.page_statement(world.member.id, world.tenant.id, 21, after)
        sql = statement.compile(dialect=db.bind.dialect, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(sql)
        [[result]] = (await db.execute(text(explain))).all()
        costs.append(_plan_cost(result[0]["Plan"]))
    (first_buffers, _), (deep_buffers, deep_removed) = costs
    assert deep_removed == 0, costs
    assert deep_buffers <= first_buffers + 5, costs


# --- reading a user's history: bad input -------------------------------------------------------


def cursors(secret: str) -> dict[str, str]:
    right = CursorCodec(secret.encode(), CURSOR_PURPOSE)
    moment = "2025-06-01T12:00:00+00:00"
    valid = right.encode([moment, 5])
    tampered = valid[:-2] + ("A" if valid[-2] != "A" else "B") + valid[-1]
    return {
        "garbage": "not-a-cursor",
        "empty": "",
        "non-ascii": "é" * 30,
        "tampered": tampered,
        "truncated": valid[:20],
        "over-long": valid + "A" * 600,
        "other purpose": CursorCodec(secret.encode(), "documents").encode([moment, 5]),
        "other secret": CursorCodec(b"not-the-secret", CURSOR_PURPOSE).encode([moment, 5]),
        "signed, not a time": right.encode(["yesterday", 5]),
        "signed, naive time": right.encode(["2025-06-01T12:00:00", 5]),
        "signed, id a string": right.encode([moment, "5"]),
        "signed, id a bool": right.encode([moment, True]),
        "signed, id a float": right.encode([moment, 5.5]),
        "signed, id zero": right.encode([moment, 0]),
        "signed, too short": right.encode([moment]),
        "signed, too long": right.encode([moment, 5, 6]),
        "signed, time a number": right.encode([1_700_000_000, 5]),
        "signed, an object": right.encode({"t": moment, "id": 5}),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("case", list(cursors("any")))
async def test_bad_cursors_are_400(client: httpx.AsyncClient, world: World, case: str) -> None:
    cursor = cursors(world.settings.secret_key.get_secret_value())[case]
    r = await client.get(
        history_url(world.member.id), params={"cursor": cursor}, headers=world.auth(world.member)
    )
    body = assert_problem(r, 400)
    assert "cursor" in body["detail"]


@pytest.mark.embedded
async def test_a_valid_cursor_is_accepted(client: httpx.AsyncClient, world: World) -> None:
    codec = CursorCodec(world.settings.secret_key.get_secret_value().encode(), CURSOR_PURPOSE)
    cursor = codec.encode(["2025-06-01T12:00:00+00:00", 5])
    r = await client.get(
        history_url(world.member.id), params={"cursor": cursor}, headers=world.auth(world.member)
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
async def test_limit_is_bounded(client: httpx.AsyncClient, world: World, limit: str) -> None:
    r = await client.get(
        history_url(world.member.id), params={"limit": limit}, headers=world.auth(world.member)
    )
    body = assert_problem(r, 422)
    assert any("limit" in error["field"] for error in body["errors"])
