"""The master company catalogue: readable by every user, written by the platform admin."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Company
from tests.fixtures.factories import create_company
from tests.fixtures.problems import assert_problem

COMPANIES = "/api/v1/companies"
NEW_COMPANY = {"name": "Initech", "country": "us", "industry": "Software", "employee_count": 120}


# --- role and tenancy matrix ------------------------------------------------------------------

ROLES = ["member", "chro", "admin", "outsider", "anonymous"]
MATRIX = [
    # method, path template, json body, expected status per role (in ROLES order)
    ("GET", COMPANIES, None, (200, 200, 200, 200, 401)),
    ("GET", COMPANIES + "/{tenant}", None, (200, 200, 200, 200, 401)),
    ("GET", COMPANIES + "/{platform}", None, (200, 200, 200, 200, 401)),
    ("POST", COMPANIES, NEW_COMPANY, (403, 403, 201, 403, 401)),
    ("PATCH", COMPANIES + "/{tenant}", {"employee_count": 7}, (403, 403, 200, 403, 401)),
    ("PATCH", COMPANIES + "/{other_tenant}", {"employee_count": 7}, (403, 403, 200, 403, 401)),
]
CASES = [
    pytest.param(method, path, body, role, statuses[i], id=f"{method} {path} {role}")
    for method, path, body, statuses in MATRIX
    for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
async def test_role_matrix(client, world, method, path, body, role, expected):
    url = path.format(
        tenant=world.tenant.id, other_tenant=world.other_tenant.id, platform=world.platform.id
    )
    r = await client.request(method, url, json=body, headers=world.as_role(role))
    if expected >= 400:
        assert_problem(r, expected)
    else:
        assert r.status_code == expected, r.text


async def test_forbidden_writes_change_nothing(client, world, db):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}", json={"name": "Hijacked"}, headers=world.auth(world.chro)
    )
    assert_problem(r, 403)
    r = await client.post(COMPANIES, json=NEW_COMPANY, headers=world.auth(world.chro))
    assert_problem(r, 403)
    names = set((await db.execute(select(Company.name))).scalars())
    assert "Hijacked" not in names
    assert "Initech" not in names


# --- reads ------------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_list_is_the_whole_catalogue_in_a_page_envelope(client, world):
    r = await client.get(COMPANIES, params={"page_size": 2}, headers=world.auth(world.outsider))
    assert r.status_code == 200, r.text
    page = r.json()
    assert set(page) == {"items", "total", "page", "page_size", "pages"}
    assert page["total"] >= 3
    assert page["page"] == 1
    assert page["page_size"] == 2
    assert len(page["items"]) == 2
    assert page["pages"] == -(-page["total"] // 2)
    everyone = await client.get(
        COMPANIES, params={"page_size": 100}, headers=world.auth(world.outsider)
    )
    names = [c["name"] for c in everyone.json()["items"]]
    assert {"Tenant A", "Tenant B", "Etter Platform Test"} <= set(names)
    assert names == sorted(names)


@pytest.mark.embedded
async def test_list_pages_do_not_overlap_and_past_the_end_is_empty(client, world):
    headers = world.auth(world.member)
    total = (await client.get(COMPANIES, headers=headers)).json()["total"]
    seen = []
    for page in (1, 2, 3):
        r = await client.get(COMPANIES, params={"page": page, "page_size": 1}, headers=headers)
        seen += [c["id"] for c in r.json()["items"]]
    assert len(seen) == len(set(seen)) == min(3, total)
    beyond = await client.get(COMPANIES, params={"page": 1000}, headers=headers)
    assert beyond.status_code == 200
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] == total


@pytest.mark.parametrize("page_size", [0, 101, -1])
async def test_page_size_out_of_range_is_422(client, world, page_size):
    r = await client.get(
        COMPANIES, params={"page_size": page_size}, headers=world.auth(world.member)
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "query.page_size"


@pytest.mark.embedded
async def test_list_filters(client, world, db):
    await create_company(db, name="Zeta Logistics GmbH", industry="Logistics", country="DE")
    await create_company(db, name="Zeta Retail", industry="Retail", country="FR")
    await create_company(db, name="50% Off_Deals", industry="Retail", country="US")
    await db.commit()
    headers = world.auth(world.member)

    async def names(**params: str) -> list[str]:
        r = await client.get(COMPANIES, params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [c["name"] for c in r.json()["items"]]

    assert await names(q="zeta") == ["Zeta Logistics GmbH", "Zeta Retail"]
    assert await names(q="LOGISTICS") == ["Zeta Logistics GmbH"]
    assert await names(q="zeta", country="de") == ["Zeta Logistics GmbH"]
    assert await names(industry="Retail") == ["50% Off_Deals", "Zeta Retail"]
    assert await names(country="FR") == ["Zeta Retail"]
    # LIKE wildcards in q are literal characters.
    assert await names(q="50%") == ["50% Off_Deals"]
    assert await names(q="%") == ["50% Off_Deals"]
    assert await names(q="f_d") == ["50% Off_Deals"]
    assert await names(q="_") == ["50% Off_Deals"]
    assert await names(q="nothing-like-this") == []


async def test_get_unknown_company_is_404(client, world):
    body = assert_problem(
        await client.get(f"{COMPANIES}/2147483647", headers=world.auth(world.member)), 404
    )
    assert body["type"].endswith("not-found")


# --- writes -----------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_admin_creates_a_company(client, world, db):
    r = await client.post(COMPANIES, json=NEW_COMPANY, headers=world.auth(world.admin))
    assert r.status_code == 201, r.text
    company = r.json()
    assert company["name"] == "Initech"
    assert company["slug"] == "initech"
    assert company["country"] == "US"
    assert company["is_active"] is True
    assert company["created_at"].endswith(("Z", "+00:00"))
    assert r.headers["location"] == f"{COMPANIES}/{company['id']}"
    fetched = await client.get(r.headers["location"], headers=world.auth(world.member))
    assert fetched.json() == company
    stored = await db.get(Company, company["id"])
    assert stored is not None
    assert stored.employee_count == 120


@pytest.mark.embedded
async def test_slugs_stay_unique_when_names_differ_only_in_case(client, world):
    headers = world.auth(world.admin)
    first = await client.post(COMPANIES, json={"name": "Hooli", "country": "US"}, headers=headers)
    second = await client.post(COMPANIES, json={"name": "HOOLI", "country": "US"}, headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert {first.json()["slug"], second.json()["slug"]} == {"hooli", "hooli-2"}


@pytest.mark.embedded
async def test_duplicate_name_is_409_and_writes_nothing(client, world, db):
    r = await client.post(
        COMPANIES, json={"name": "Tenant A", "country": "GB"}, headers=world.auth(world.admin)
    )
    body = assert_problem(r, 409)
    assert "already exists" in body["detail"]
    count = (await db.execute(select(func.count()).where(Company.name == "Tenant A"))).scalar_one()
    assert count == 1


async def test_admin_updates_a_company_partially(client, world):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}",
        json={"industry": "Retail", "country": "gb"},
        headers=world.auth(world.admin),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["industry"], body["country"]) == ("Retail", "GB")
    assert body["name"] == "Tenant A"  # untouched
    assert body["updated_at"] >= body["created_at"]


@pytest.mark.embedded
async def test_renaming_onto_another_company_is_409(client, world, db):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}", json={"name": "Tenant B"}, headers=world.auth(world.admin)
    )
    assert_problem(r, 409)
    await db.refresh(world.tenant)
    assert world.tenant.name == "Tenant A"


async def test_update_unknown_company_is_404(client, world):
    r = await client.patch(
        f"{COMPANIES}/2147483647", json={"industry": "X"}, headers=world.auth(world.admin)
    )
    assert_problem(r, 404)


BAD_UPDATES = [
    {},
    {"name": None},
    {"country": None},
    {"employee_count": None},
    {"is_active": None},
    {"name": "   "},
    {"country": "USA"},
    {"country": "1A"},
    {"employee_count": -1},
    {"slug": "hand-made"},
    {"id": 1},
    {"created_at": "2020-01-01T00:00:00Z"},
]


async def test_bad_updates_are_422_and_change_nothing(client, world, db):
    for body in BAD_UPDATES:
        r = await client.patch(
            f"{COMPANIES}/{world.tenant.id}", json=body, headers=world.auth(world.admin)
        )
        assert r.status_code == 422, (body, r.text)
        assert_problem(r, 422)
    await db.refresh(world.tenant)
    assert (world.tenant.name, world.tenant.slug, world.tenant.country) == (
        "Tenant A",
        "tenant-a",
        "US",
    )


@pytest.mark.embedded
async def test_industry_may_be_cleared(client, world):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}", json={"industry": None}, headers=world.auth(world.admin)
    )
    assert r.status_code == 200, r.text
    assert r.json()["industry"] is None


BAD_CREATES = [
    {"country": "US"},
    {"name": "X"},
    {"name": "", "country": "US"},
    {"name": "X" * 201, "country": "US"},
    {"name": "X", "country": "US", "employee_count": 10_000_001},
    {"name": "X", "country": "US", "slug": "x"},
    {"name": "X", "country": "US", "id": 99},
]


async def test_bad_creates_are_422(client, world, db):
    for body in BAD_CREATES:
        r = await client.post(COMPANIES, json=body, headers=world.auth(world.admin))
        assert r.status_code == 422, (body, r.text)
        assert_problem(r, 422)
    assert await db.scalar(select(Company).where(Company.name == "X")) is None
