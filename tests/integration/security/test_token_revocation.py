"""Issue 10, defect 3: tokens die with a password change, a deactivation and "log out
everywhere" (users.credentials_version, carried by each token as `cv`).

Before the fix a CHRO set a user's password and that user's old token still got 200 on
/auth/me; deactivating and reactivating a user brought its old tokens back to life.
"""

from __future__ import annotations

import pytest

from tests.fixtures.factories import PASSWORD
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem, use_cheap_hashing

pytestmark = pytest.mark.embedded

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
PASSWORD_URL = "/api/v1/auth/password"
LOGOUT_ALL = "/api/v1/auth/logout-all"
USERS = "/api/v1/users"
NEW_PASSWORD = "a-brand-new-passphrase"


async def login(client, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post(TOKEN, data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_password_set_by_the_chro_revokes_the_users_tokens(client, world, monkeypatch):
    use_cheap_hashing(monkeypatch)
    old = await login(client, world.member.email)
    assert (await client.get(ME, headers=old)).status_code == 200
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"password": NEW_PASSWORD},
        headers=world.auth(world.chro),
    )
    assert r.status_code == 200, r.text
    assert_problem(await client.get(ME, headers=old), 401)
    fresh = await login(client, world.member.email, NEW_PASSWORD)
    assert (await client.get(ME, headers=fresh)).status_code == 200


async def test_deactivate_then_reactivate_does_not_revive_old_tokens(client, world):
    old = await login(client, world.member.email)
    chro = world.auth(world.chro)
    assert (await client.delete(f"{USERS}/{world.member.id}", headers=chro)).status_code == 204
    r = await client.patch(f"{USERS}/{world.member.id}", json={"is_active": True}, headers=chro)
    assert r.status_code == 200, r.text
    assert_problem(await client.get(ME, headers=old), 401)
    fresh = await login(client, world.member.email)
    assert (await client.get(ME, headers=fresh)).status_code == 200


async def test_deactivation_by_patch_revokes_too(client, world):
    old = await login(client, world.member.email)
    chro = world.auth(world.chro)
    r = await client.patch(f"{USERS}/{world.member.id}", json={"is_active": False}, headers=chro)
    assert r.status_code == 200, r.text
    await client.patch(f"{USERS}/{world.member.id}", json={"is_active": True}, headers=chro)
    assert_problem(await client.get(ME, headers=old), 401)


async def test_changing_ones_own_password(client, world, monkeypatch):
    use_cheap_hashing(monkeypatch)
    first = await login(client, world.member.email)
    second = await login(client, world.member.email)  # another device
    with captured_logs("INFO") as logs:
        r = await client.post(
            PASSWORD_URL,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=first,
        )
    assert r.status_code == 200, r.text
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert_problem(await client.get(ME, headers=first), 401)
    assert_problem(await client.get(ME, headers=second), 401)
    assert (await client.get(ME, headers=fresh)).json()["id"] == world.member.id
    assert_problem(
        await client.post(TOKEN, data={"username": world.member.email, "password": PASSWORD}), 401
    )
    await login(client, world.member.email, NEW_PASSWORD)
    (event,) = logs.named("password_changed")
    assert event["user_id"] == world.member.id
    assert NEW_PASSWORD not in logs.text
    assert PASSWORD not in logs.text


async def test_a_wrong_current_password_changes_nothing(client, world):
    headers = await login(client, world.member.email)
    r = await client.post(
        PASSWORD_URL,
        json={"current_password": "not-the-password", "new_password": NEW_PASSWORD},
        headers=headers,
    )
    body = assert_problem(r, 422)
    assert body["errors"][0]["field"] == "body.current_password"
    assert (await client.get(ME, headers=headers)).status_code == 200
    await login(client, world.member.email)


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": PASSWORD},
        {"new_password": NEW_PASSWORD},
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "user_id": 1},
    ],
    ids=["no new", "no current", "too short", "unchanged", "extra field"],
)
async def test_password_change_bodies_are_validated(client, world, body):
    assert_problem(
        await client.post(PASSWORD_URL, json=body, headers=world.auth(world.member)), 422
    )


async def test_password_change_needs_a_token(client, world):
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert_problem(await client.post(PASSWORD_URL, json=body), 401)


async def test_logout_everywhere(client, world):
    first = await login(client, world.chro.email)
    second = await login(client, world.chro.email)
    with captured_logs("INFO") as logs:
        r = await client.post(LOGOUT_ALL, headers=first)
    assert r.status_code == 204, r.text
    assert_problem(await client.get(ME, headers=first), 401)
    assert_problem(await client.get(ME, headers=second), 401)
    assert_problem(await client.post(LOGOUT_ALL, headers=first), 401)
    fresh = await login(client, world.chro.email)
    assert (await client.get(ME, headers=fresh)).status_code == 200
    assert logs.named("tokens_revoked")[0]["user_id"] == world.chro.id


async def test_other_users_tokens_are_untouched(client, world):
    mine = await login(client, world.member.email)
    theirs = await login(client, world.other_member.email)
    assert (await client.post(LOGOUT_ALL, headers=mine)).status_code == 204
    assert (await client.get(ME, headers=theirs)).status_code == 200
