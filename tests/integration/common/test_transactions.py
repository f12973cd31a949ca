"""One transaction per request: a commit that fails turns into an error response and writes
nothing; a failure after a flush leaves no half-written change behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from models import Company, User
from services.users import UserService
from tests.fixtures.problems import assert_problem, use_cheap_hashing

pytestmark = pytest.mark.embedded

COMPANIES = "/api/v1/companies"
USERS = "/api/v1/users"


@contextmanager
def on_commit(hook: Callable[[Session], Any]) -> Iterator[None]:
    """Run `hook` inside every session commit while the block runs (the app's commits)."""
    event.listen(Session, "before_commit", hook)
    try:
        yield
    finally:
        event.remove(Session, "before_commit", hook)


async def company_count(db, name: str) -> int:
    statement = select(func.count()).select_from(Company).where(Company.name == name)
    return (await db.execute(statement)).scalar_one()


async def test_a_failing_commit_is_a_500_and_writes_nothing(client, world, db):
    def fail(session: Session) -> None:
        raise RuntimeError("the disk is full")

    with on_commit(fail):
        r = await client.post(
            COMPANIES, json={"name": "Lost Co", "country": "US"}, headers=world.auth(world.admin)
        )
    body = assert_problem(r, 500)
    assert "disk" not in r.text  # nothing of the cause reaches the client
    assert body["detail"].startswith("An unexpected error occurred")
    assert "location" not in r.headers
    assert await company_count(db, "Lost Co") == 0


async def test_a_conflict_found_at_commit_is_a_409_and_writes_nothing(client, world, db):
    def conflict(session: Session) -> None:
        # As with a deferred constraint, the violation surfaces only when committing: the
        # commit's own flush inserts a second "Tenant A".
        session.add(Company(name="Tenant A", slug="clash", country="US"))

    with on_commit(conflict):
        r = await client.post(
            COMPANIES, json={"name": "Half Co", "country": "US"}, headers=world.auth(world.admin)
        )
    assert_problem(r, 409)
    assert await company_count(db, "Half Co") == 0
    assert await company_count(db, "Tenant A") == 1


async def test_a_failing_commit_after_an_update_keeps_the_old_values(client, world, db):
    def fail(session: Session) -> None:
        raise RuntimeError("connection lost")

    with on_commit(fail):
        r = await client.patch(
            f"{USERS}/{world.member.id}",
            json={"full_name": "Never Saved"},
            headers=world.auth(world.chro),
        )
    assert_problem(r, 500)
    await db.refresh(world.member)
    assert world.member.full_name == "Mia Member"


async def test_an_error_after_a_flush_rolls_everything_back(client, world, db, monkeypatch):
    use_cheap_hashing(monkeypatch)
    create = UserService.create

    async def create_then_fail(self: UserService, data: Any) -> User:
        await create(self, data)  # flushed: the row exists in the transaction
        raise RuntimeError("a later step failed")

    monkeypatch.setattr(UserService, "create", create_then_fail)
    r = await client.post(
        USERS,
        json={"email": "half@tenant-a.example", "full_name": "Half", "password": "12345678"},
        headers=world.auth(world.chro),
    )
    assert_problem(r, 500)
    assert await db.scalar(select(User).where(User.email == "half@tenant-a.example")) is None


async def test_a_conflict_at_flush_drops_the_other_changes_of_the_request(client, world, db):
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"full_name": "Renamed", "job_title": "Boss", "email": world.chro.email},
        headers=world.auth(world.chro),
    )
    assert_problem(r, 409)
    await db.refresh(world.member)
    assert (world.member.full_name, world.member.job_title) == ("Mia Member", None)


async def test_the_next_request_after_a_failure_works(client, world, db):
    """A rolled-back request leaves neither the session nor the pool in a broken state."""

    def fail(session: Session) -> None:
        raise RuntimeError("boom")

    with on_commit(fail):
        assert_problem(
            await client.post(
                COMPANIES, json={"name": "A Co", "country": "US"}, headers=world.auth(world.admin)
            ),
            500,
        )
    r = await client.post(
        COMPANIES, json={"name": "A Co", "country": "US"}, headers=world.auth(world.admin)
    )
    assert r.status_code == 201, r.text
    assert await company_count(db, "A Co") == 1


async def test_reads_do_not_write(client, world, db):
    """GET requests commit nothing of their own (the commit of a read is empty)."""
    writes: list[str] = []

    def record(session: Session) -> None:
        writes.extend(type(obj).__name__ for obj in [*session.new, *session.dirty])

    with on_commit(record):
        for path in ("/api/v1/auth/me", USERS, COMPANIES, f"{USERS}/{world.member.id}"):
            assert (await client.get(path, headers=world.auth(world.chro))).status_code == 200
    assert writes == []
