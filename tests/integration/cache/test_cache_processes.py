"""Two app instances on one Redis, as two processes (or machines) would be: a write through one
is seen through the other at once, and concurrent misses of the dashboard compute it once.

Both instances serve the test's data (its rolled-back connection) but each has its own Redis
client, cache object and in-process state, so all they share is what production shares: the
database and Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.cache_service import CacheName
from services.dashboard import DashboardService
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.cache import API, CacheCounts, hold_company_reads_until_all_missed, patient
from tests.fixtures.problems import assert_problem

COMPANIES = f"{API}/companies"
USERS = f"{API}/users"
AUTOCOMPLETE = f"{USERS}/autocomplete"
ME = f"{API}/auth/me"
DASHBOARD = f"{API}/chro/dashboard"


@pytest.fixture
async def other(settings, connection, app) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second app instance on the same Redis as `client`'s."""
    async with running_app(settings, connection) as second, client_for(second) as c:
        assert second.state.cache is not app.state.cache
        yield c


async def body(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_company_write_through_one_process_is_seen_through_the_other(client, other, world):
    url, member = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
    for _ in range(2):  # cached in Redis after the first round
        assert (await body(await other.get(url, headers=member)))["name"] == "Tenant A"
        await body(await other.get(COMPANIES, headers=member))

    r = await client.patch(url, json={"name": "Tenant A Prime"}, headers=world.auth(world.admin))
    assert r.status_code == 200, r.text

    assert (await body(await other.get(url, headers=member)))["name"] == "Tenant A Prime"
    names = {c["name"] for c in (await body(await other.get(COMPANIES, headers=member)))["items"]}
    assert "Tenant A Prime" in names
    assert "Tenant A" not in names


async def test_user_writes_reach_the_other_processes_autocomplete(client, other, world):
    member, chro = world.auth(world.member), world.auth(world.chro)
    for _ in range(2):
        assert [
            s["full_name"]
            for s in await body(await other.get(AUTOCOMPLETE, params={"q": "mi"}, headers=member))
        ] == ["Mia Member"]
    r = await client.patch(
        f"{USERS}/{world.member.id}", json={"full_name": "Zia Member"}, headers=chro
    )
    assert r.status_code == 200, r.text
    assert await body(await other.get(AUTOCOMPLETE, params={"q": "mi"}, headers=member)) == []


async def test_a_user_deactivated_through_one_process_is_refused_by_the_other(client, other, world):
    url, member = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
    await body(await other.get(url, headers=member))
    await body(await other.get(url, headers=member))  # principal served from Redis
    r = await client.delete(f"{USERS}/{world.member.id}", headers=world.auth(world.chro))
    assert r.status_code == 204, r.text
    assert_problem(await other.get(url, headers=member), 401)


async def test_a_chro_demoted_through_one_process_loses_its_rights_in_the_other(
    client, other, world
):
    chro, target = world.auth(world.chro), f"{USERS}/{world.member.id}"
    assert (await other.patch(target, json={"job_title": "Lead"}, headers=chro)).status_code == 200
    r = await client.patch(
        f"{USERS}/{world.chro.id}", json={"role": "member"}, headers=world.auth(world.admin)
    )
    assert r.status_code == 200, r.text
    assert_problem(await other.patch(target, json={"job_title": "Boss"}, headers=chro), 403)


async def test_concurrent_dashboard_misses_across_two_processes_compute_once(
    settings, connection, world, monkeypatch
):
    """The dashboard is expensive: one process computes it while the other waits for the
    result (the cross-process lock). Cheap entries take no lock; each process computes them
    once (tests/unit/services/test_cache_service.py)."""
    chro = world.auth(world.chro)
    async with (
        running_app(patient(settings), connection) as first,
        running_app(patient(settings), connection) as second,
        client_for(first) as one,
        client_for(second) as two,
    ):
        await body(await one.get(ME, headers=chro))  # the principal is in Redis for both
        hold_company_reads_until_all_missed(
            monkeypatch, 50, (DashboardService, "_company_activity")
        )
        before = CacheCounts.of(CacheName.DASHBOARD)
        responses = await asyncio.gather(
            *(c.get(DASHBOARD, headers=chro) for _ in range(25) for c in (one, two))
        )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.is_error][
        :1
    ]
    assert len({r.content for r in responses}) == 1  # one computation: one generated_at
    delta = CacheCounts.of(CacheName.DASHBOARD) - before
    assert (delta.misses, delta.hits) == (1, 49)
