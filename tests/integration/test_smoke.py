import pytest

pytestmark = pytest.mark.embedded


async def test_me(client, world):
    r = await client.get("/api/v1/auth/me", headers=world.auth(world.member))
    assert r.status_code == 200, r.text
    assert r.json()["email"] == world.member.email


async def test_login(client, world):
    from tests.factories import PASSWORD

    r = await client.post(
        "/api/v1/auth/token", data={"username": world.chro.email, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["id"] == world.chro.id
