"""Users: the role and tenancy matrix, chro/admin writes, listing and autocomplete."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from common.enums import Role
from models import User
from tests.fixtures.factories import PASSWORD, create_user
from tests.fixtures.problems import assert_problem, use_cheap_hashing

USERS = "/api/v1/users"
AUTOCOMPLETE = USERS + "/autocomplete"


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_cheap_hashing(monkeypatch)


def new_user(**values: object) -> dict[str, object]:
    return {
        "email": "new.person@example.com",
        "full_name": "New Person",
        "password": "a-long-enough-password",
        **values,
    }


# --- role and tenancy matrix ------------------------------------------------------------------

ROLES = ["member", "chro", "admin", "outsider", "anonymous"]
MATRIX = [
    # method, path template ({name} = that world user's id), json body, status per role
    ("GET", USERS, None, (200, 200, 200, 200, 401)),
    ("GET", AUTOCOMPLETE + "?q=us", None, (200, 200, 200, 200, 401)),
    ("GET", USERS + "/{member}", None, (200, 200, 200, 404, 401)),
    ("GET", USERS + "/{other_member}", None, (200, 200, 200, 404, 401)),
    ("GET", USERS + "/{outsider}", None, (404, 404, 200, 200, 401)),
    ("GET", USERS + "/{admin}", None, (404, 404, 200, 404, 401)),
    ("POST", USERS, new_user(), (403, 201, 201, 403, 401)),
    ("PATCH", USERS + "/{other_member}", {"job_title": "Lead"}, (403, 200, 200, 404, 401)),
    ("PATCH", USERS + "/{member}", {"job_title": "Lead"}, (403, 200, 200, 404, 401)),
    ("PATCH", USERS + "/{other_chro}", {"job_title": "Lead"}, (404, 404, 200, 403, 401)),
    ("DELETE", USERS + "/{other_member}", None, (403, 204, 204, 404, 401)),
    ("DELETE", USERS + "/{outsider}", None, (404, 404, 204, 403, 401)),
    ("DELETE", USERS + "/{admin}", None, (404, 404, 403, 404, 401)),
]
CASES = [
    pytest.param(method, path, body, role, statuses[i], id=f"{method} {path} {role}")
    for method, path, body, statuses in MATRIX
    for i, role in enumerate(ROLES)
]


def user_url(world, template: str) -> str:
    names = ("member", "other_member", "outsider", "other_chro", "admin", "chro")
    return template.format(**{name: getattr(world, name).id for name in names})


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
async def test_role_matrix(client, world, db, method, path, body, role, expected):
    r = await client.request(method, user_url(world, path), json=body, headers=world.as_role(role))
    if expected >= 400:
        body = assert_problem(r, expected)
        if expected == 404:  # another tenant's user does not exist; nothing of it shows
            assert body["detail"].startswith("User ")
        return
    assert r.status_code == expected, r.text
    if method == "POST":
        created = r.json()
        caller = getattr(world, role)
        assert created["company_id"] == caller.company_id
        assert r.headers["location"] == f"{USERS}/{created['id']}"


async def test_other_tenants_chro_cannot_manage_our_users(client, world, db):
    headers = world.auth(world.other_chro)
    for method, body in (("GET", None), ("PATCH", {"full_name": "Pwned"}), ("DELETE", None)):
        r = await client.request(method, f"{USERS}/{world.member.id}", json=body, headers=headers)
        assert_problem(r, 404)
    await db.refresh(world.member)
    assert (world.member.full_name, world.member.is_active) == ("Mia Member", True)


# --- listing ----------------------------------------------------------------------------------


async def ids_of(client, headers, url: str = USERS, **params: object) -> list[int]:
    r = await client.get(url, params=params, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    return [item["id"] for item in (body["items"] if isinstance(body, dict) else body)]


async def test_list_shows_only_the_callers_company(client, world):
    tenant = {world.chro.id, world.member.id, world.other_member.id}
    other = {world.other_chro.id, world.outsider.id}
    assert set(await ids_of(client, world.auth(world.member))) == tenant
    assert set(await ids_of(client, world.auth(world.chro))) == tenant
    assert set(await ids_of(client, world.auth(world.outsider))) == other
    # A non-admin's company_id does not widen the scope.
    assert set(
        await ids_of(client, world.auth(world.member), company_id=world.other_tenant.id)
    ) == (tenant)


async def test_admin_lists_all_or_one_company(client, world):
    everyone = set(await ids_of(client, world.auth(world.admin), page_size=100))
    assert {world.admin.id, world.member.id, world.outsider.id} <= everyone
    only_b = await ids_of(client, world.auth(world.admin), company_id=world.other_tenant.id)
    assert set(only_b) == {world.other_chro.id, world.outsider.id}


@pytest.mark.embedded
async def test_list_envelope_and_pages(client, world):
    headers = world.auth(world.chro)
    r = await client.get(USERS, params={"page_size": 2}, headers=headers)
    page = r.json()
    assert set(page) == {"items", "total", "page", "page_size", "pages"}
    assert (page["total"], page["page"], page["page_size"], page["pages"]) == (3, 1, 2, 2)
    names = [u["full_name"] for u in page["items"]]
    assert names == ["Chris Chro", "Max Member"]
    second = (await client.get(USERS, params={"page": 2, "page_size": 2}, headers=headers)).json()
    assert [u["full_name"] for u in second["items"]] == ["Mia Member"]
    user = second["items"][0]
    assert "hashed_password" not in user
    assert user["last_login_at"] is None
    assert user["created_at"].endswith(("Z", "+00:00"))


@pytest.mark.parametrize(
    "params",
    [{"page_size": 0}, {"page_size": 101}, {"page": 0}, {"page": -1}, {"role": "owner"}],
    ids=repr,
)
async def test_bad_list_parameters_are_422(client, world, params):
    assert_problem(await client.get(USERS, params=params, headers=world.auth(world.chro)), 422)


@pytest.mark.embedded
async def test_list_filters(client, world, db):
    await create_user(
        db, world.tenant, Role.MEMBER, full_name="Zoe 100%_Real", email="zoe@tenant-a.example"
    )
    await create_user(
        db, world.tenant, Role.CHRO, full_name="Quentin", department="Finance", email="q@x.example"
    )
    await db.commit()
    headers = world.auth(world.member)

    async def names(**params: object) -> list[str]:
        r = await client.get(USERS, params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [u["full_name"] for u in r.json()["items"]]

    assert await names(department="HR") == ["Chris Chro"]
    assert await names(department="Finance") == ["Quentin"]
    assert await names(role="chro") == ["Chris Chro", "Quentin"]
    assert await names(role="chro", department="HR") == ["Chris Chro"]
    assert await names(q="m") == ["Max Member", "Mia Member"]
    assert await names(q="MIA") == ["Mia Member"]
    assert await names(q="zoe@") == ["Zoe 100%_Real"]  # start of the email
    assert await names(q="member") == []  # a prefix, not a substring
    assert await names(q="Oscar") == []  # the other tenant's user
    assert await names(q="zoe 100%") == ["Zoe 100%_Real"]
    assert await names(q="%") == []
    assert await names(q="_") == []


# --- autocomplete -----------------------------------------------------------------------------


@pytest.mark.embedded
async def test_autocomplete_prefix_of_name_or_email_case_insensitive(client, world, db):
    await create_user(db, world.tenant, full_name="Bob Builder", email="mason@tenant-a.example")
    await create_user(db, world.tenant, full_name="Mallory", email="mal@tenant-a.example")
    inactive = await create_user(db, world.tenant, full_name="Ma Gone", is_active=False)
    await create_user(db, world.other_tenant, full_name="Marta Elsewhere")
    await db.commit()
    headers = world.auth(world.member)

    r = await client.get(AUTOCOMPLETE, params={"q": "MA"}, headers=headers)
    assert r.status_code == 200, r.text
    hits = r.json()
    assert [h["full_name"] for h in hits] == ["Bob Builder", "Mallory", "Max Member"]
    assert set(hits[0]) == {"id", "full_name", "email", "department", "job_title"}
    assert inactive.id not in {h["id"] for h in hits}
    assert await ids_of(client, headers, AUTOCOMPLETE, q="mas") == [
        h["id"] for h in hits if h["full_name"] == "Bob Builder"
    ]
    assert await ids_of(client, headers, AUTOCOMPLETE, q="ma", limit=1) == [hits[0]["id"]]
    assert await ids_of(client, world.auth(world.outsider), AUTOCOMPLETE, q="ma") != []
    assert hits[0]["id"] not in await ids_of(
        client, world.auth(world.outsider), AUTOCOMPLETE, q="ma"
    )


async def test_autocomplete_limit_caps_at_20(client, world, db):
    for n in range(22):
        await create_user(db, world.tenant, full_name=f"Limit {n:02d}")
    await db.commit()
    headers = world.auth(world.chro)
    assert len(await ids_of(client, headers, AUTOCOMPLETE, q="limit", limit=20)) == 20
    assert len(await ids_of(client, headers, AUTOCOMPLETE, q="limit")) == 10  # the default
    r = await client.get(AUTOCOMPLETE, params={"q": "limit", "limit": 21}, headers=headers)
    assert_problem(r, 422)


@pytest.mark.embedded
async def test_autocomplete_wildcards_are_literal(client, world, db):
    await create_user(db, world.tenant, full_name="50%_Percent", email="pct@tenant-a.example")
    await create_user(db, world.tenant, full_name="5000 Other", email="five@tenant-a.example")
    await db.commit()
    headers = world.auth(world.member)
    names = {
        "%%": [],
        "__": [],
        "5%": [],
        "50_": [],
        "50%": ["50%_Percent"],
        "50%_": ["50%_Percent"],
    }
    for q, expected in names.items():
        r = await client.get(AUTOCOMPLETE, params={"q": q}, headers=headers)
        assert [h["full_name"] for h in r.json()] == expected, q
    backslash = await client.get(AUTOCOMPLETE, params={"q": "\\\\"}, headers=headers)
    assert backslash.status_code == 200
    assert backslash.json() == []


@pytest.mark.parametrize(
    "params",
    [{}, {"q": ""}, {"q": "a"}, {"q": " a "}, {"q": "ab", "limit": 0}, {"q": "x" * 101}],
    ids=repr,
)
async def test_autocomplete_bad_parameters_are_422(client, world, params):
    r = await client.get(AUTOCOMPLETE, params=params, headers=world.auth(world.member))
    assert_problem(r, 422)


# --- create -----------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_chro_creates_a_user_in_its_company(client, world, db):
    body = new_user(
        email="New.Person@Tenant-A.EXAMPLE", department="Sales", job_title="Rep", role="chro"
    )
    r = await client.post(USERS, json=body, headers=world.auth(world.chro))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "new.person@tenant-a.example"
    assert (created["company_id"], created["role"]) == (world.tenant.id, "chro")
    assert (created["department"], created["job_title"]) == ("Sales", "Rep")
    assert created["is_active"] is True
    assert "password" not in created
    assert "hashed_password" not in created
    stored = await db.get(User, created["id"])
    assert stored.email == "new.person@tenant-a.example"
    assert stored.hashed_password.startswith("$argon2id$")
    login = await client.post(
        "/api/v1/auth/token",
        data={"username": "NEW.person@tenant-a.example", "password": body["password"]},
    )
    assert login.status_code == 200, login.text


@pytest.mark.parametrize("email", ["mia@x.example", "MIA@X.EXAMPLE", "Mia@x.example"])
@pytest.mark.embedded
async def test_duplicate_email_in_any_case_is_409(client, world, db, email):
    await create_user(db, world.other_tenant, email="mia@x.example")
    await db.commit()
    r = await client.post(USERS, json=new_user(email=email), headers=world.auth(world.chro))
    body = assert_problem(r, 409)
    assert body["detail"] == "A user with this email already exists."
    count = await db.execute(select(func.count()).where(User.email == "mia@x.example"))
    assert count.scalar_one() == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"hashed_password": "$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA"},
        {"is_admin": True},
        {"roles": ["admin"]},
        {"is_active": False},
        {"id": 1},
        {"last_login_at": "2020-01-01T00:00:00Z"},
    ],
    ids=repr,
)
async def test_unknown_fields_are_422(client, world, db, extra):
    r = await client.post(USERS, json=new_user(**extra), headers=world.auth(world.chro))
    body = assert_problem(r, 422)
    assert any(e["field"].startswith("body.") for e in body["errors"])
    assert await db.scalar(select(User).where(User.email == "new.person@example.com")) is None


async def test_a_chro_names_only_its_own_company(client, world, db):
    headers = world.auth(world.chro)
    r = await client.post(USERS, json=new_user(company_id=world.other_tenant.id), headers=headers)
    assert_problem(r, 403)
    assert await db.scalar(select(User).where(User.email == "new.person@example.com")) is None
    r = await client.post(USERS, json=new_user(company_id=world.tenant.id), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.tenant.id


async def test_admin_places_a_user_in_any_company(client, world):
    headers = world.auth(world.admin)
    r = await client.post(USERS, json=new_user(company_id=world.other_tenant.id), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["company_id"] == world.other_tenant.id
    visible = await ids_of(client, world.auth(world.other_chro))
    assert r.json()["id"] in visible
    r = await client.post(USERS, json=new_user(email="n2@example.com"), headers=headers)
    assert r.json()["company_id"] == world.platform.id


async def test_admin_with_unknown_company_id_is_422(client, world):
    r = await client.post(
        USERS, json=new_user(company_id=2_147_483_647), headers=world.auth(world.admin)
    )
    assert assert_problem(r, 422)["errors"][0]["field"] == "body.company_id"


async def test_only_admin_grants_admin(client, world):
    r = await client.post(USERS, json=new_user(role="admin"), headers=world.auth(world.chro))
    assert_problem(r, 403)
    r = await client.patch(
        f"{USERS}/{world.member.id}", json={"role": "admin"}, headers=world.auth(world.chro)
    )
    assert_problem(r, 403)
    r = await client.post(USERS, json=new_user(role="admin"), headers=world.auth(world.admin))
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "admin"


INVALID_CREATES = {
    "bad email": new_user(email="not-an-email"),
    "no dot in domain": new_user(email="a@b"),
    "long email": new_user(email="x" * 320 + "@example.com"),
    "empty name": new_user(full_name=""),
    "blank name": new_user(full_name="   "),
    "long name": new_user(full_name="x" * 201),
    "long department": new_user(department="x" * 101),
    "unknown role": new_user(role="owner"),
    "upper-case role": new_user(role="ADMIN"),
    "null password": new_user(password=None),
    "no password": {"email": "a@example.com", "full_name": "A"},
    "a list": [new_user()],
}


async def test_invalid_create_is_422(client, world, db):
    for case, body in INVALID_CREATES.items():
        r = await client.post(USERS, json=body, headers=world.auth(world.chro))
        assert r.status_code == 422, (case, r.text)
        assert_problem(r, 422)
    emails = {"new.person@example.com", "a@example.com"}
    assert await db.scalar(select(User).where(User.email.in_(emails))) is None


# --- update and deactivate ----------------------------------------------------------------------


async def test_chro_updates_a_user_partially(client, world, db):
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"email": "Mia.New@Tenant-A.example", "role": "chro", "department": None},
        headers=world.auth(world.chro),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["email"] == "mia.new@tenant-a.example"
    assert (body["role"], body["department"]) == ("chro", None)
    assert body["full_name"] == "Mia Member"


@pytest.mark.embedded
async def test_chro_changes_a_password(client, world):
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"password": "brand-new-password"},
        headers=world.auth(world.chro),
    )
    assert r.status_code == 200, r.text
    form = {"username": world.member.email, "password": PASSWORD}
    assert_problem(await client.post("/api/v1/auth/token", data=form), 401)
    form["password"] = "brand-new-password"
    assert (await client.post("/api/v1/auth/token", data=form)).status_code == 200


@pytest.mark.embedded
async def test_email_taken_by_another_user_is_409(client, world, db):
    r = await client.patch(
        f"{USERS}/{world.member.id}",
        json={"email": world.outsider.email.upper(), "full_name": "Changed"},
        headers=world.auth(world.chro),
    )
    assert_problem(r, 409)
    await db.refresh(world.member)
    assert world.member.full_name == "Mia Member"


INVALID_UPDATES = [
    {},
    {"email": None},
    {"full_name": None},
    {"role": None},
    {"is_active": None},
    {"password": None},
    {"password": "short"},
    {"company_id": 1},
    {"hashed_password": "x"},
    {"email": "nope"},
    {"role": "root"},
]


async def test_invalid_update_is_422_and_changes_nothing(client, world, db):
    before = (world.member.email, world.member.role, world.member.hashed_password)
    for body in INVALID_UPDATES:
        r = await client.patch(
            f"{USERS}/{world.member.id}", json=body, headers=world.auth(world.chro)
        )
        assert r.status_code == 422, (body, r.text)
        assert_problem(r, 422)
    await db.refresh(world.member)
    assert (world.member.email, world.member.role, world.member.hashed_password) == before


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("DELETE", None),
        ("PATCH", {"is_active": False}),
        ("PATCH", {"role": "member"}),
    ],
    ids=["delete", "deactivate", "demote"],
)
async def test_chro_cannot_deactivate_or_demote_itself(client, world, db, method, body):
    r = await client.request(
        method, f"{USERS}/{world.chro.id}", json=body, headers=world.auth(world.chro)
    )
    assert_problem(r, 403)
    await db.refresh(world.chro)
    assert (world.chro.is_active, world.chro.role) == (True, "chro")


async def test_admin_cannot_deactivate_itself(client, world):
    r = await client.delete(f"{USERS}/{world.admin.id}", headers=world.auth(world.admin))
    assert_problem(r, 403)


async def test_chro_may_update_itself_otherwise(client, world):
    r = await client.patch(
        f"{USERS}/{world.chro.id}",
        json={"job_title": "CHRO", "role": "chro", "is_active": True},
        headers=world.auth(world.chro),
    )
    assert r.status_code == 200, r.text


@pytest.mark.embedded
async def test_delete_deactivates_and_the_user_can_no_longer_log_in(client, world, db):
    r = await client.delete(f"{USERS}/{world.other_member.id}", headers=world.auth(world.chro))
    assert r.status_code == 204
    assert r.content == b""
    await db.refresh(world.other_member)
    assert world.other_member.is_active is False  # deactivated, not removed
    fetched = await client.get(f"{USERS}/{world.other_member.id}", headers=world.auth(world.chro))
    assert fetched.json()["is_active"] is False
    login = await client.post(
        "/api/v1/auth/token", data={"username": world.other_member.email, "password": PASSWORD}
    )
    assert_problem(login, 401)
    # Reactivation is an update.
    r = await client.patch(
        f"{USERS}/{world.other_member.id}", json={"is_active": True}, headers=world.auth(world.chro)
    )
    assert r.json()["is_active"] is True


async def test_unknown_user_is_404(client, world):
    for method, body in (("GET", None), ("PATCH", {"job_title": "x"}), ("DELETE", None)):
        r = await client.request(
            method, f"{USERS}/2147483647", json=body, headers=world.auth(world.admin)
        )
        assert_problem(r, 404)
