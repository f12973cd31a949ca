"""Issue 10, defect 4: deactivating a company locks its users out (logins and tokens: 401);
the platform admin still reads it, and reactivating lets the users log in again.

Before the fix an inactive company's users still logged in, read and wrote.
"""

from __future__ import annotations

import pytest

from tests.fixtures.factories import PASSWORD
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.embedded

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
COMPANIES = "/api/v1/companies"


async def login(client, email: str):
    return await client.post(TOKEN, data={"username": email, "password": PASSWORD})


async def set_active(client, world, company_id: int, active: bool):
    return await client.patch(
        f"{COMPANIES}/{company_id}", json={"is_active": active}, headers=world.auth(world.admin)
    )


async def test_deactivated_company_locks_its_users_out(client, world):
    token = (await login(client, world.member.email)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    # Warm the principal cache: the deactivation must drop the cached entry, not wait for a TTL.
    assert (await client.get(ME, headers=headers)).status_code == 200
    with captured_logs("INFO") as logs:
        r = await set_active(client, world, world.tenant.id, False)
    assert r.status_code == 200, r.text
    assert r.json()["is_active"] is False
    assert logs.named("company_deactivated")[0]["target_company_id"] == world.tenant.id

    assert_problem(await client.get(ME, headers=headers), 401)
    assert_problem(await client.get("/api/v1/workflows", headers=world.auth(world.chro)), 401)
    write = await client.post(
        "/api/v1/workflows",
        json={"name": "x", "steps": [{"name": "a", "minutes": 1, "automation_score": 0.5}]},
        headers=world.auth(world.chro),
    )
    assert_problem(write, 401)
    for user in (world.member, world.chro):
        assert_problem(await login(client, user.email), 401)

    # The admin still reads it; the other tenant is untouched.
    admin_read = await client.get(f"{COMPANIES}/{world.tenant.id}", headers=world.auth(world.admin))
    assert admin_read.status_code == 200
    assert admin_read.json()["is_active"] is False
    assert (await client.get(ME, headers=world.auth(world.outsider))).status_code == 200

    assert (await set_active(client, world, world.tenant.id, True)).status_code == 200
    assert (await login(client, world.member.email)).status_code == 200
    assert (await client.get(ME, headers=headers)).status_code == 200


async def test_the_failed_login_looks_like_any_other(client, world):
    wrong = await client.post(TOKEN, data={"username": world.chro.email, "password": "nope-nope"})
    await set_active(client, world, world.tenant.id, False)
    locked = await login(client, world.chro.email)
    assert assert_problem(locked, 401)["detail"] == assert_problem(wrong, 401)["detail"]


async def test_the_admin_cannot_lock_out_its_own_company(client, world):
    assert_problem(await set_active(client, world, world.platform.id, False), 403)


async def test_only_the_admin_changes_the_flag(client, world):
    r = await client.patch(
        f"{COMPANIES}/{world.tenant.id}", json={"is_active": False}, headers=world.auth(world.chro)
    )
    assert_problem(r, 403)
    assert (await client.get(ME, headers=world.auth(world.member))).status_code == 200
