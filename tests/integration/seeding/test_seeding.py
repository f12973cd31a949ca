"""The demo data: what `manage.py seed` creates, that a second run adds nothing, and that the
demo chro then sees a live dashboard through the API."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from common.enums import RunStatus, WorkflowStatus
from common.storage import FileStorage
from models import Company, Document, Simulation, User, UserWorkflowHistory, Workflow
from models.base import utcnow
from seeding.demo import DEMO_PASSWORD, Scale, seed

pytestmark = pytest.mark.embedded

TABLES = (Company, User, Workflow, UserWorkflowHistory, Document, Simulation)


async def counts(db) -> dict[str, int]:
    return {
        table.__tablename__: (
            await db.execute(select(func.count()).select_from(table))
        ).scalar_one()
        for table in TABLES
    }


async def login(client, email: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_seeding_twice_adds_nothing(db, settings):
    first = await seed(db, Scale.DEMO, storage_dir=settings.storage_dir)
    await db.commit()
    after_first = await counts(db)

    second = await seed(db, Scale.DEMO, storage_dir=settings.storage_dir)
    await db.commit()

    assert await counts(db) == after_first
    assert (second.companies, second.users) == (0, 0)
    assert second.extra == {"workflows": 0, "workflow runs": 0, "documents": 0, "simulations": 0}
    # Acme Corp: 9 workflows, 5 documents; Globex: 8 workflows, 4 documents; one simulation each.
    assert first.extra["workflows"] == 17
    assert first.extra["documents"] == 9
    assert first.extra["simulations"] == 2
    assert 500 <= first.extra["workflow runs"] <= 700
    assert after_first["user_workflow_history"] == first.extra["workflow runs"]


async def test_the_demo_history_is_realistic(db, settings):
    now = utcnow()
    await seed(db, Scale.DEMO, storage_dir=settings.storage_dir, now=now)
    acme = (await db.execute(select(Company).where(Company.name == "Acme Corp"))).scalar_one()

    statuses = dict(
        (
            await db.execute(
                select(UserWorkflowHistory.status, func.count())
                .where(UserWorkflowHistory.company_id == acme.id)
                .group_by(UserWorkflowHistory.status)
            )
        ).all()
    )
    assert 300 <= sum(statuses.values()) <= 420
    assert statuses[RunStatus.COMPLETED] > 3 * statuses[RunStatus.ABANDONED] > 0
    oldest, newest = (
        await db.execute(
            select(
                func.min(UserWorkflowHistory.started_at), func.max(UserWorkflowHistory.started_at)
            )
        )
    ).one()
    assert oldest >= now - timedelta(days=120)
    assert newest <= now
    # A run never ends in the future, and drafts are never run.
    latest_end = (await db.execute(select(func.max(UserWorkflowHistory.completed_at)))).scalar_one()
    assert latest_end <= now
    draft_runs = (
        await db.execute(
            select(func.count())
            .select_from(UserWorkflowHistory)
            .join(Workflow, Workflow.id == UserWorkflowHistory.workflow_id)
            .where(Workflow.status == WorkflowStatus.DRAFT.value)
        )
    ).scalar_one()
    assert draft_runs == 0


async def test_demo_documents_have_their_bytes_in_storage(db, settings):
    await seed(db, Scale.DEMO, storage_dir=settings.storage_dir)
    documents = list((await db.execute(select(Document).order_by(Document.id))).scalars())
    storage = FileStorage(settings.storage_dir)

    assert {d.status for d in documents} == {"uploaded", "processing", "processed", "failed"}
    for document in documents:
        tenant, _, name = document.storage_key.partition("/")
        assert tenant == str(document.tenant_id)
        assert len(name) == 32
        data = storage.path(document.storage_key).read_bytes()
        assert len(data) == document.size_bytes > 0
        assert hashlib.sha256(data).hexdigest() == document.sha256
        data.decode("utf-8")  # the text types hold valid UTF-8


async def test_the_demo_chro_gets_a_live_dashboard(client, db, settings):
    await seed(db, Scale.DEMO, storage_dir=settings.storage_dir)
    await db.commit()
    headers = await login(client, "chro@acme.example")

    r = await client.get("/api/v1/chro/dashboard", headers=headers)

    assert r.status_code == 200, r.text
    board = r.json()
    assert board["company"]["name"] == "Acme Corp"
    assert board["headcount"]["total"] == 14  # 12 generated users, the chro and the member
    assert board["activity"]["runs"] > 0
    assert board["activity"]["active_users"] > 0
    assert 0 < board["activity"]["completion_rate"] < 1
    assert len(board["top_workflows"]) == 5
    assert board["documents"]["total"] == 5
    assert [s["name"] for s in board["latest_simulations"]] == [
        "Copilot rollout: 40% adoption over 18 months"
    ]
    assert board["latest_simulations"][0]["hours_saved"] > 0


async def test_the_demo_simulation_matches_a_fresh_one(client, db, settings):
    """The seeded simulation went through the same service: run again on the same data (and
    hourly cost), the API computes the same totals."""
    await seed(db, Scale.DEMO, storage_dir=settings.storage_dir)
    await db.commit()
    headers = await login(client, "chro@globex.example")
    listing = await client.get("/api/v1/simulations", headers=headers)
    seeded = listing.json()["items"]
    assert len(seeded) == 1

    r = await client.post(
        "/api/v1/simulations",
        json={"name": "Again", "parameters": seeded[0]["parameters"]},
        headers=headers,
    )

    assert r.status_code == 201, r.text
    assert r.json()["results"]["totals"] == seeded[0]["totals"]
    assert r.json()["results"]["totals"]["hours_saved"] > 0
