"""The cache seen through the API: what is served from it, what a write drops, per-tenant
entries, the principal, ETags, stampedes and the switches. On PostgreSQL the cache is in Redis;
the embedded run repeats these on the in-process backend."""

from __future__ import annotations

import asyncio

import pytest

from services.cache_service import KEY_PREFIX, CacheName
from tests.fixtures.apps import client_for, override, running_app
from tests.fixtures.cache import (
    API,
    CacheCounts,
    cache_keys,
    entry_keys,
    hold_company_reads_until_all_missed,
    patient,
    tag_generations,
)
from tests.fixtures.problems import assert_problem, use_cheap_hashing
from tests.fixtures.query_counter import count_statements as count_statements_of

pytestmark = pytest.mark.embedded

COMPANIES = f"{API}/companies"
USERS = f"{API}/users"
AUTOCOMPLETE = f"{USERS}/autocomplete"
ME = f"{API}/auth/me"


async def ok(response):
    assert response.status_code == 200, response.text
    return response.json()


async def suggestions(client, headers, q: str) -> list[str]:
    return [
        s["full_name"]
        for s in await ok(await client.get(AUTOCOMPLETE, params={"q": q}, headers=headers))
    ]


# --- served from the cache, dropped by writes -------------------------------------------------


async def test_company_detail_is_served_from_the_cache_until_it_changes(
    client, world, count_statements
):
    url, headers = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
    first = await ok(await client.get(url, headers=headers))
    before = CacheCounts.of(CacheName.COMPANIES)
    with count_statements() as counter:
        second = await ok(await client.get(url, headers=headers))
    assert counter.count == 0, counter
    assert second == first
    assert (CacheCounts.of(CacheName.COMPANIES) - before).hits == 1

    r = await client.patch(url, json={"name": "Tenant A Renamed"}, headers=world.auth(world.admin))
    assert r.status_code == 200, r.text
    third = await ok(await client.get(url, headers=headers))
    assert third["name"] == "Tenant A Renamed"
    assert third["updated_at"] >= first["updated_at"]


async def test_catalogue_pages_follow_creates_and_updates(client, world):
    headers, admin = world.auth(world.member), world.auth(world.admin)
    page = await ok(await client.get(COMPANIES, headers=headers))
    assert await ok(await client.get(COMPANIES, headers=headers)) == page  # cached

    body = {"name": "Initech", "country": "US", "industry": "Software"}
    created = await client.post(COMPANIES, json=body, headers=admin)
    assert created.status_code == 201, created.text
    after_create = await ok(await client.get(COMPANIES, headers=headers))
    assert after_create["total"] == page["total"] + 1
    assert "Initech" in {c["name"] for c in after_create["items"]}

    banking = {"industry": "Banking"}
    assert await ok(await client.get(COMPANIES, params=banking, headers=headers)) != {}
    assert (await ok(await client.get(COMPANIES, params=banking, headers=headers)))["total"] == 0
    r = await client.patch(f"{COMPANIES}/{created.json()['id']}", json=banking, headers=admin)
    assert r.status_code == 200, r.text
    filtered = await ok(await client.get(COMPANIES, params=banking, headers=headers))
    assert [c["name"] for c in filtered["items"]] == ["Initech"]


async def test_equivalent_catalogue_queries_share_an_entry(client, world, app):
    headers = world.auth(world.member)
    for params in ({"q": "tenant", "country": "us"}, {"q": "TENANT", "country": "US"}):
        r = await ok(await client.get(COMPANIES, params=params, headers=headers))
        assert {c["name"] for c in r["items"]} == {"Tenant A", "Tenant B"}
    catalogue = [k for k in entry_keys(await cache_keys(app), "companies") if "catalogue" in k]
    assert len(catalogue) == 1


async def test_autocomplete_follows_every_user_write(client, world, monkeypatch):
    use_cheap_hashing(monkeypatch)
    chro, member = world.auth(world.chro), world.auth(world.member)
    assert await suggestions(client, member, "ne") == []

    body = {
        "email": "zed@tenant-a.example",
        "full_name": "Nena New",
        "password": "pw-long-enough-1",
    }
    created = await client.post(USERS, json=body, headers=chro)
    assert created.status_code == 201, created.text
    user_url = f"{USERS}/{created.json()['id']}"
    assert await suggestions(client, member, "ne") == ["Nena New"]

    assert (await client.patch(user_url, json={"full_name": "Zora"}, headers=chro)).is_success
    assert await suggestions(client, member, "ne") == []
    assert await suggestions(client, member, "zo") == ["Zora"]

    r = await client.patch(user_url, json={"job_title": "Welder"}, headers=chro)
    assert r.is_success
    hits = await ok(await client.get(AUTOCOMPLETE, params={"q": "zo"}, headers=member))
    assert hits[0]["job_title"] == "Welder"

    assert (await client.delete(user_url, headers=chro)).status_code == 204
    assert await suggestions(client, member, "zo") == []


async def test_one_tenant_is_never_served_anothers_entry(client, world, app):
    member, outsider = world.auth(world.member), world.auth(world.outsider)
    for _ in range(2):  # the second round is served from the cache
        assert await suggestions(client, member, "mi") == ["Mia Member"]
        assert await suggestions(client, outsider, "mi") == []
        assert await suggestions(client, outsider, "os") == ["Oscar Outsider"]
        assert await suggestions(client, member, "os") == []

    entries = entry_keys(await cache_keys(app), "autocomplete")
    assert len(entries) == 4
    for tenant in (world.tenant, world.other_tenant):
        assert len([k for k in entries if f":t{tenant.id}:" in k]) == 2


async def test_a_write_in_one_tenant_leaves_the_others_entries_alone(client, world, app):
    member, outsider = world.auth(world.member), world.auth(world.outsider)
    await suggestions(client, outsider, "os")
    before = CacheCounts.of(CacheName.AUTOCOMPLETE)
    r = await client.patch(
        f"{USERS}/{world.other_member.id}",
        json={"job_title": "Lead"},
        headers=world.auth(world.chro),
    )
    assert r.is_success
    assert await suggestions(client, outsider, "os") == ["Oscar Outsider"]
    assert await suggestions(client, member, "ma") == ["Max Member"]
    delta = CacheCounts.of(CacheName.AUTOCOMPLETE) - before
    assert (delta.hits, delta.misses) == (1, 1)


# --- the principal ----------------------------------------------------------------------------


async def test_an_authenticated_request_does_not_read_the_users_table(
    client, world, count_statements
):
    headers = world.auth(world.member)
    urls = [f"{COMPANIES}/{world.tenant.id}", COMPANIES, f"{AUTOCOMPLETE}?q=ma"]
    for url in urls:
        await ok(await client.get(url, headers=headers))
    before = CacheCounts.of(CacheName.PRINCIPAL)
    with count_statements() as counter:
        for url in urls:
            await ok(await client.get(url, headers=headers))
    assert counter.count == 0, counter
    assert (CacheCounts.of(CacheName.PRINCIPAL) - before).hits == len(urls)


async def test_a_deactivated_user_loses_access_at_once_and_regains_it(client, world):
    url, member, chro = (
        f"{COMPANIES}/{world.tenant.id}",
        world.auth(world.member),
        world.auth(world.chro),
    )
    await ok(await client.get(url, headers=member))
    await ok(await client.get(url, headers=member))  # the principal is cached now
    assert (await client.delete(f"{USERS}/{world.member.id}", headers=chro)).status_code == 204
    assert_problem(await client.get(url, headers=member), 401)
    assert_problem(await client.get(url, headers=member), 401)  # the refusal is cached too

    r = await client.patch(f"{USERS}/{world.member.id}", json={"is_active": True}, headers=chro)
    assert r.status_code == 200, r.text
    await ok(await client.get(url, headers=member))


async def test_a_demoted_chro_loses_its_rights_at_once(client, world):
    chro, target = world.auth(world.chro), f"{USERS}/{world.member.id}"
    assert (await client.patch(target, json={"job_title": "Lead"}, headers=chro)).status_code == 200
    r = await client.patch(
        f"{USERS}/{world.chro.id}", json={"role": "member"}, headers=world.auth(world.admin)
    )
    assert r.status_code == 200, r.text
    assert_problem(await client.patch(target, json={"job_title": "Boss"}, headers=chro), 403)
    me = await ok(await client.get(ME, headers=chro))
    assert me["role"] == "member"


# --- HTTP revalidation ------------------------------------------------------------------------


@pytest.fixture
def cacheable_urls(world) -> list[str]:
    return [f"{COMPANIES}/{world.tenant.id}", f"{COMPANIES}?page_size=2", f"{AUTOCOMPLETE}?q=ma"]


async def test_cacheable_gets_carry_an_etag_and_answer_304_when_it_matches(
    client, world, cacheable_urls
):
    headers = world.auth(world.member)
    for url in cacheable_urls:
        r = await client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        etag = r.headers["etag"]
        assert etag.startswith('W/"')
        assert etag.endswith('"')
        assert r.headers["cache-control"] == "private, no-cache"
        assert "authorization" in r.headers["vary"].lower()
        assert r.headers["content-type"] == "application/json"
        for if_none_match in (etag, etag.removeprefix("W/"), f'"other", {etag}', "*"):
            again = await client.get(url, headers={**headers, "If-None-Match": if_none_match})
            assert again.status_code == 304, (url, if_none_match)
            assert again.content == b""
            assert again.headers["etag"] == etag
        stale = await client.get(url, headers={**headers, "If-None-Match": 'W/"nope"'})
        assert stale.status_code == 200
        assert stale.json() == r.json()


async def test_the_etag_changes_with_the_data(client, world):
    url, headers = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
    etag = (await client.get(url, headers=headers)).headers["etag"]
    r = await client.patch(url, json={"employee_count": 99}, headers=world.auth(world.admin))
    assert r.status_code == 200, r.text
    fresh = await client.get(url, headers={**headers, "If-None-Match": etag})
    assert fresh.status_code == 200
    assert fresh.json()["employee_count"] == 99
    assert fresh.headers["etag"] != etag


async def test_errors_carry_no_etag(client, world):
    r = await client.get(f"{COMPANIES}/2147483647", headers=world.auth(world.member))
    assert_problem(r, 404)
    assert "etag" not in r.headers


# --- invalidation only after a commit ---------------------------------------------------------


async def test_a_refused_write_invalidates_nothing(client, world, app):
    admin, other = world.auth(world.admin), world.other_tenant.id
    await ok(await client.get(f"{COMPANIES}/{other}", headers=admin))
    await ok(await client.get(COMPANIES, headers=admin))
    before = await tag_generations(app)
    r = await client.patch(f"{COMPANIES}/{other}", json={"name": "Tenant A"}, headers=admin)
    assert_problem(r, 409)
    assert await tag_generations(app) == before

    r = await client.patch(f"{COMPANIES}/{other}", json={"name": "Tenant C"}, headers=admin)
    assert r.status_code == 200, r.text
    after = await tag_generations(app)
    changed = {tag for tag, generation in after.items() if before.get(tag) != generation}
    assert changed == {"companies", f"company:{other}", f"dashboard:{other}"}


# --- stampede ---------------------------------------------------------------------------------


async def test_fifty_concurrent_misses_compute_once(settings, connection, world, monkeypatch):
    async with running_app(patient(settings), connection) as app, client_for(app) as client:
        headers = world.auth(world.member)
        await ok(await client.get(ME, headers=headers))  # the principal is cached; the company not
        hold_company_reads_until_all_missed(monkeypatch, 50)
        url = f"{COMPANIES}/{world.other_tenant.id}"
        before = CacheCounts.of(CacheName.COMPANIES)
        with count_statements_of(app) as counter:
            responses = await asyncio.gather(*(client.get(url, headers=headers) for _ in range(50)))
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.is_error][
        :1
    ]
    assert len({r.content for r in responses}) == 1
    assert counter.count == 1, counter
    delta = CacheCounts.of(CacheName.COMPANIES) - before
    assert (delta.misses, delta.hits) == (1, 49)


# --- switches ---------------------------------------------------------------------------------


async def test_cache_disabled_reads_and_writes_nothing(settings, connection, world, redis):
    async with (
        running_app(override(settings, cache_enabled=False), connection) as app,
        client_for(app) as client,
    ):
        assert app.state.cache is None
        url, headers = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
        before = CacheCounts.of(CacheName.COMPANIES)
        first = await client.get(url, headers=headers)
        assert first.status_code == 200
        assert "etag" in first.headers
        r = await client.patch(url, json={"name": "Renamed"}, headers=world.auth(world.admin))
        assert r.status_code == 200, r.text
        assert (await ok(await client.get(url, headers=headers)))["name"] == "Renamed"
        await ok(await client.get(AUTOCOMPLETE, params={"q": "mi"}, headers=headers))
        assert CacheCounts.of(CacheName.COMPANIES) == before
    if redis is not None:
        assert [k async for k in redis.scan_iter(f"{KEY_PREFIX}:*")] == []


async def test_one_cache_can_be_turned_off_alone(settings, connection, world):
    async with (
        running_app(override(settings, cache_ttl_companies=0), connection) as app,
        client_for(app) as client,
    ):
        url, headers = f"{COMPANIES}/{world.tenant.id}", world.auth(world.member)
        for _ in range(2):
            await ok(await client.get(url, headers=headers))
            await ok(await client.get(COMPANIES, headers=headers))
        keys = await cache_keys(app)
        assert entry_keys(keys, "companies") == []
        assert len(entry_keys(keys, "principal")) == 1
