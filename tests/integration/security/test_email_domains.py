"""Issue 10, defect 5: companies have `email_domains`, set by the admin; a CHRO creates users
only with addresses in its own company's domains (422 otherwise, also when none are set), so
addresses can neither be squatted in another tenant's domain nor probed for with a 409.
"""

from __future__ import annotations

import pytest

from common.enums import Role
from tests.fixtures.factories import create_company, create_user
from tests.fixtures.problems import assert_problem, use_cheap_hashing

pytestmark = pytest.mark.embedded

USERS = "/api/v1/users"
COMPANIES = "/api/v1/companies"


def new_user(email: str) -> dict[str, str]:
    return {"email": email, "full_name": "New Person", "password": "a-long-enough-password"}


@pytest.fixture(autouse=True)
def _cheap(monkeypatch):
    use_cheap_hashing(monkeypatch)


async def test_a_chro_cannot_probe_another_tenants_addresses(client, world):
    """Before: 409 for an address that exists in another tenant (a probe); now the same 422 as
    for any address outside the CHRO's domains, whether it exists or not."""
    taken = await client.post(
        USERS, json=new_user(world.outsider.email), headers=world.auth(world.chro)
    )
    free = await client.post(
        USERS, json=new_user("nobody@tenant-b.example"), headers=world.auth(world.chro)
    )
    first, second = assert_problem(taken, 422), assert_problem(free, 422)
    assert first["errors"] == second["errors"]
    assert first["errors"][0]["field"] == "body.email"


async def test_a_chro_cannot_squat_another_companys_domain(client, world):
    r = await client.post(
        USERS, json=new_user("ceo@tenant-b.example"), headers=world.auth(world.chro)
    )
    assert_problem(r, 422)
    # ...nor move an existing user there.
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"email": "ceo@tenant-b.example"},
        headers=world.auth(world.chro),
    )
    assert_problem(r, 422)


async def test_a_chro_creates_within_its_domains(client, world):
    r = await client.post(
        USERS, json=new_user("New.Hire@Tenant-A.example"), headers=world.auth(world.chro)
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "new.hire@tenant-a.example"


async def test_no_domains_means_no_creation_by_the_chro(client, world, db):
    bare = await create_company(db, name="No Domains Inc", email_domains=[])
    chro = await create_user(db, bare, role=Role.CHRO)
    await db.commit()
    r = await client.post(
        USERS, json=new_user("someone@no-domains-inc.example"), headers=world.auth(chro)
    )
    body = assert_problem(r, 422)
    assert "ask the platform admin" in body["errors"][0]["message"]


async def test_the_admin_creates_anywhere(client, world):
    r = await client.post(
        USERS,
        json={**new_user("anyone@elsewhere.example"), "company_id": world.tenant.id},
        headers=world.auth(world.admin),
    )
    assert r.status_code == 201, r.text


async def test_the_admin_sets_domains_normalised(client, world):
    admin = world.auth(world.admin)
    r = await client.post(
        COMPANIES,
        json={
            "name": "Initech",
            "country": "US",
            "email_domains": ["Initech.example", "initech.example", "mail.initech.example"],
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json()["email_domains"] == ["initech.example", "mail.initech.example"]
    company_id = r.json()["id"]
    r = await client.patch(
        f"{COMPANIES}/{company_id}", json={"email_domains": ["initrode.example"]}, headers=admin
    )
    assert r.json()["email_domains"] == ["initrode.example"]
    got = await client.get(f"{COMPANIES}/{company_id}", headers=admin)
    assert got.json()["email_domains"] == ["initrode.example"]


@pytest.mark.parametrize(
    "domains",
    [["not a domain"], ["@acme.example"], ["acme"], ["-acme.example"], [""], None, ["x" * 300]],
    ids=["space", "at", "single label", "leading hyphen", "empty", "null", "too long"],
)
async def test_invalid_domains_are_422(client, world, domains):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}",
        json={"email_domains": domains},
        headers=world.auth(world.admin),
    )
    assert_problem(r, 422)


async def test_only_the_admin_sets_domains(client, world):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}",
        json={"email_domains": ["evil.example"]},
        headers=world.auth(world.chro),
    )
    assert_problem(r, 403)
