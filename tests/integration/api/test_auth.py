"""POST /auth/token and GET /auth/me: logins, bearer tokens and what makes them invalid."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from common.security import JWT_ALGORITHM
from models import User
from tests.fixtures.factories import PASSWORD
from tests.fixtures.problems import assert_problem, use_cheap_hashing, without_request

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"


def login(client, username: str, password: str = PASSWORD):
    return client.post(TOKEN, data={"username": username, "password": password})


def token_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- role matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "chro", "admin", "outsider"])
async def test_every_role_logs_in_and_reads_itself(client, world, role):
    user = getattr(world, role)
    r = await login(client, user.email)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == world.settings.access_token_expire_minutes * 60
    me = await client.get(ME, headers=token_headers(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user.id
    assert me.json()["role"] == user.role
    assert me.json()["last_login_at"] is not None
    assert "hashed_password" not in me.json()


async def test_me_anonymous_is_401_with_bearer_challenge(client, world):
    assert_problem(await client.get(ME), 401)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "bearer a.b.c", "Token x"],
)
async def test_garbage_authorization_is_401(client, world, authorization):
    assert_problem(await client.get(ME, headers={"Authorization": authorization}), 401)


# --- logins -----------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_login_is_case_insensitive_on_email(client, world):
    r = await login(client, f"  {world.chro.email.upper()} ")
    assert r.status_code == 200, r.text
    me = await client.get(ME, headers=token_headers(r.json()["access_token"]))
    assert me.json()["id"] == world.chro.id


async def test_failed_logins_are_indistinguishable(client, world, db):
    world.other_member.is_active = False
    await db.commit()
    answers = [
        await login(client, world.member.email, "wrong-password"),
        await login(client, "nobody@nowhere.example"),
        await login(client, world.other_member.email),  # right password, deactivated
        await login(client, world.member.email.upper(), "wrong-password"),
    ]
    bodies = [without_request(assert_problem(r, 401)) for r in answers]
    assert bodies[0]["detail"] == "Incorrect email or password."
    # Byte for byte, once the request id (the one part that must differ) is blanked out.
    raw = {r.content.replace(r.headers["x-request-id"].encode(), b"<id>") for r in answers}
    assert len(raw) == 1, raw
    # Same headers too (the rate-limit countdown aside): nothing tells the causes apart.
    varying = {"x-request-id", "date", "ratelimit"}
    headers = {
        tuple(sorted((k, v) for k, v in r.headers.items() if k not in varying)) for r in answers
    }
    assert len(headers) == 1, headers
    assert len({r.headers["x-request-id"] for r in answers}) == len(answers)


async def test_failed_login_records_nothing(client, world, db):
    await login(client, world.member.email, "wrong-password")
    last_login = (
        await db.execute(select(User.last_login_at).where(User.id == world.member.id))
    ).scalar_one()
    assert last_login is None


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"username": "a@b.example"},
        {"password": PASSWORD},
        {"username": "a@b.example", "password": PASSWORD, "grant_type": "client_credentials"},
    ],
)
async def test_incomplete_login_form_is_422(client, world, form):
    assert_problem(await client.post(TOKEN, data=form), 422)


async def test_login_with_json_instead_of_form_is_422(client, world):
    r = await client.post(TOKEN, json={"username": world.member.email, "password": PASSWORD})
    assert_problem(r, 422)


@pytest.mark.embedded
async def test_deactivated_users_token_stops_working(client, world):
    token = (await login(client, world.member.email)).json()["access_token"]
    assert (await client.get(ME, headers=token_headers(token))).status_code == 200
    r = await client.delete(f"/api/v1/users/{world.member.id}", headers=world.auth(world.chro))
    assert r.status_code == 204, r.text
    assert_problem(await client.get(ME, headers=token_headers(token)), 401)
    assert_problem(await login(client, world.member.email), 401)


@pytest.mark.embedded
async def test_deleted_users_token_stops_working(client, world, db):
    headers = world.auth(world.outsider)
    await db.delete(await db.get(User, world.outsider.id))
    await db.commit()
    assert_problem(await client.get(ME, headers=headers), 401)


# --- tokens -----------------------------------------------------------------------------------


def claims_for(world, user: User, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "iss": world.settings.jwt_issuer,
        "aud": world.settings.jwt_audience,
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    return claims


def secret(world) -> str:
    return world.settings.secret_key.get_secret_value()


BAD_CLAIMS: dict[str, dict[str, Any]] = {
    "expired": {
        "iat": datetime.now(UTC) - timedelta(hours=2),
        "exp": datetime.now(UTC) - timedelta(hours=1),
    },
    "issued in the future": {"iat": datetime.now(UTC) + timedelta(hours=1)},
    "wrong audience": {"aud": "someone-else"},
    "wrong issuer": {"iss": "not-etter"},
    "no jti": {"jti": None},
    "no sub": {"sub": None},
    "no iat": {"iat": None},
    "no exp": {"exp": None},
    "no aud": {"aud": None},
    "no iss": {"iss": None},
    "non-numeric sub": {"sub": "abc"},
    "integer sub": {"sub": 1},
    "unknown user": {"sub": "2147483647"},
    "sub beyond the id range": {"sub": str(2**40)},
    "negative sub": {"sub": "-1"},
}


async def test_invalid_token_claims_are_401_with_one_body(client, world):
    reference = without_request(assert_problem(await client.get(ME), 401))
    for case, changes in BAD_CLAIMS.items():
        if case == "integer sub":
            changes = {"sub": world.member.id}
        claims = claims_for(world, world.member, **changes)
        token = jwt.encode(claims, secret(world), JWT_ALGORITHM)
        r = await client.get(ME, headers=token_headers(token))
        assert r.status_code == 401, (case, r.text)
        assert without_request(assert_problem(r, 401)) == reference, case


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", ["wrong signature", "alg none", "HS512", "tampered payload"])
async def test_forged_tokens_are_401(client, world, case):
    claims = claims_for(world, world.member)
    if case == "wrong signature":
        token = jwt.encode(claims, "another-secret-that-is-also-long-enough-0123", JWT_ALGORITHM)
    elif case == "alg none":
        token = jwt.encode(claims, None, algorithm="none")
    elif case == "HS512":
        token = jwt.encode(claims, secret(world), algorithm="HS512")
    else:  # the admin's id in a payload signed for the member
        good = jwt.encode(claims, secret(world), JWT_ALGORITHM).split(".")
        evil = jwt.encode(claims_for(world, world.admin), "x" * 32, JWT_ALGORITHM).split(".")
        token = ".".join([good[0], evil[1], good[2]])
    reference = assert_problem(await client.get(ME), 401)
    body = assert_problem(await client.get(ME, headers=token_headers(token)), 401)
    assert without_request(body) == without_request(reference)


@pytest.mark.embedded
async def test_a_valid_handmade_token_is_accepted(client, world):
    """The negative cases above fail for their one reason, not because the token is off."""
    token = jwt.encode(claims_for(world, world.member), secret(world), JWT_ALGORITHM)
    r = await client.get(ME, headers=token_headers(token))
    assert r.status_code == 200, r.text


# --- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("a" * 7, 422),
        ("a" * 8, 201),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + "b", 201),  # 64
        ("Zz9 " * 32, 201),  # 128, spaces allowed, no composition rules
        ("a" * 129, 422),
        ("pass\x00word", 422),
    ],
    ids=["7", "8", "64", "128", "129", "nul"],
)
async def test_password_length_rules(client, world, monkeypatch, password, status):
    use_cheap_hashing(monkeypatch)
    email = f"pw-{len(password)}@tenant-a.example"
    r = await client.post(
        "/api/v1/users",
        json={"email": email, "full_name": "Pat Password", "password": password},
        headers=world.auth(world.chro),
    )
    if status == 422:
        body = assert_problem(r, 422)
        assert any(e["field"].endswith("password") for e in body["errors"]) or "NUL" in str(body)
        return
    assert r.status_code == 201, r.text
    logged_in = await login(client, email, password)
    assert logged_in.status_code == 200, logged_in.text
    assert_problem(await login(client, email, password[:-1]), 401)
