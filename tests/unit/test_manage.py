"""manage.py, run as ops run it: subprocesses on a SQLite file, then the API on that same file.

Each command is a real process (imports, settings from the environment, exit codes, stderr).
Starting Python and importing the app is most of their cost, so after the file is migrated and
seeded the independent commands run side by side, and each test checks the one it is about.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from models import Company, User
from settings.server import create_app
from tests.conftest import ROOT, make_settings
from tests.fixtures import manage_tool
from tests.fixtures.manage_tool import Result, finish

# Seconds of a dozen manage.py processes: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.long_running

CHRO_EMAIL = "chro@umbrella.example"
CHRO_PASSWORD = "umbrella-secret-password"
REFUSED_PASSWORD = "sh0rt"


def start(database: Path | None, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.Popen:
    """The tool on the SQLite file `database` (None: no DATABASE_URL at all)."""
    if database is not None:
        env = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", **env}
    return manage_tool.start(*args, cwd=cwd, **env)


def run(database: Path | None, *args: str, **kwargs: object) -> Result:
    return finish(start(database, *args, **kwargs))  # type: ignore[arg-type]


def scalar(database: Path, sql: str, *params: object) -> object:
    with sqlite3.connect(database) as connection:
        row = connection.execute(sql, params).fetchone()
    return row[0] if row else None


def assert_clean_failure(result: Result, message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A SQLite file migrated (from another working directory) and seeded once by the tool."""
    directory = tmp_path_factory.mktemp("manage")
    database = directory / "etter.db"
    migrated = run(database, "migrate", cwd=directory)
    assert migrated.returncode == 0, migrated.stderr
    seeded = run(database, "seed", "--scale", "demo", STORAGE_DIR=str(directory / "storage"))
    assert seeded.returncode == 0, seeded.stderr
    return database, seeded


@pytest.fixture(scope="module")
def results(seeded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """The commands the tests below are about, run side by side on the seeded file."""
    database, _ = seeded
    spare = tmp_path_factory.mktemp("production") / "prod.db"
    commands = {
        "seed again": (
            database,
            ["seed", "--scale", "demo"],
            {"STORAGE_DIR": str(database.parent / "storage")},
        ),
        "create chro": (
            database,
            ["create-user", "--email", CHRO_EMAIL.upper(), "--password", CHRO_PASSWORD,
             "--company-name", "Umbrella Corp", "--role", "chro", "--full-name", "Ulla Umbrella"],
            {},
        ),
        "duplicate email": (
            database,
            ["create-user", "--email", "CHRO@acme.example", "--password", "another-password",
             "--company-name", "Brand New Co"],
            {},
        ),
        "short password": (
            database,
            ["create-user", "--email", "short@pw.example", "--password", REFUSED_PASSWORD,
             "--company-name", "Invalid Co"],
            {},
        ),
        "bad country": (
            database,
            ["create-user", "--email", "c@country.example", "--password", "long-enough",
             "--company-name", "Invalid Co", "--country", "USA"],
            {},
        ),
        "slug taken": (
            database,
            ["create-user", "--email", "first@acme-two.example", "--password", "long-enough",
             "--company-name", "ACME CORP"],
            {},
        ),
        "production seed": (
            spare, ["seed"], {"ENVIRONMENT": "production", "SECRET_KEY": "p" * 48}
        ),
        "bad url": (None, ["migrate"], {"DATABASE_URL": "mysql://nope:hunter2@localhost/etter"}),
    }  # fmt: skip
    processes = {
        name: start(db, *args, **env)  # type: ignore[arg-type]
        for name, (db, args, env) in commands.items()
    }
    return {name: finish(process) for name, process in processes.items()}


def test_seed_is_idempotent(seeded, results):
    database, first = seeded
    assert "Seeded demo: 3 companies, 28 users" in first.stdout
    again = results["seed again"]
    assert again.returncode == 0, again.stderr
    assert "Seeded demo: 0 companies, 0 users" in again.stdout
    assert (
        scalar(database, "SELECT count(*) FROM users WHERE email LIKE '%@acme-corp.example'") == 12
    )


def test_seed_refuses_production(results, tmp_path):
    assert_clean_failure(
        results["production seed"], "Refusing to seed sample data with ENVIRONMENT=production"
    )


def test_a_bad_database_url_fails_cleanly(results):
    result = results["bad url"]
    assert_clean_failure(result, "DATABASE_URL must be a PostgreSQL or SQLite URL")
    assert "hunter2" not in result.stderr


def test_create_user_reports_what_it_made(results):
    result = results["create chro"]
    assert result.returncode == 0, result.stderr
    assert f"Created chro {CHRO_EMAIL}" in result.stdout  # stored lower-case
    assert "in Umbrella Corp" in result.stdout


async def test_a_created_chro_runs_its_own_tenant_through_the_api(seeded, results):
    database, _ = seeded
    assert results["create chro"].returncode == 0, results["create chro"].stderr
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{database}", redis_url=None)
    app = create_app(settings)
    async with LifespanManager(app):
        async with app.state.database.sessionmaker() as session:
            acme = await session.scalar(select(Company.id).where(Company.name == "Acme Corp"))
            demo_user = await session.scalar(select(User.id).where(User.company_id == acme))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            login = await client.post(
                "/api/v1/auth/token", data={"username": CHRO_EMAIL, "password": CHRO_PASSWORD}
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            me = (await client.get("/api/v1/auth/me", headers=headers)).json()
            assert (me["role"], me["full_name"]) == ("chro", "Ulla Umbrella")

            created = await client.post(
                "/api/v1/users",
                json={
                    "email": "ops@umbrella.example",
                    "full_name": "Otto Ops",
                    "password": "x" * 8,
                },
                headers=headers,
            )
            assert created.status_code == 201, created.text
            assert created.json()["company_id"] == me["company_id"]

            listed = (await client.get("/api/v1/users", headers=headers)).json()
            assert listed["total"] == 2
            assert {u["email"] for u in listed["items"]} == {CHRO_EMAIL, "ops@umbrella.example"}
            hidden = await client.get(f"/api/v1/users/{demo_user}", headers=headers)
            assert hidden.status_code == 404
            assert "acme" not in hidden.text.lower()
            suggestions = await client.get(
                "/api/v1/users/autocomplete", params={"q": "ch"}, headers=headers
            )
            assert [s["email"] for s in suggestions.json()] == [CHRO_EMAIL]


def test_duplicate_email_fails_cleanly(seeded, results):
    database, _ = seeded
    assert_clean_failure(results["duplicate email"], "A user with this email already exists.")
    # The whole command rolled back: not even its new company is left.
    assert scalar(database, "SELECT count(*) FROM companies WHERE name = 'Brand New Co'") == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [("short password", "Invalid user: password"), ("bad country", "Invalid --country")],
)
def test_invalid_create_user_fails_cleanly(seeded, results, name, message):
    database, _ = seeded
    result = results[name]
    assert result.returncode == 2
    assert_clean_failure(result, message)
    assert REFUSED_PASSWORD not in result.stderr  # a refused password is not echoed
    assert scalar(database, "SELECT count(*) FROM companies WHERE name = 'Invalid Co'") == 0


def test_create_user_in_a_company_whose_slug_is_taken(seeded, results):
    """'ACME CORP' is a new name, but its slug is Acme Corp's: the tool picks a free one."""
    database, _ = seeded
    assert results["slug taken"].returncode == 0, results["slug taken"].stderr
    slug = scalar(database, "SELECT slug FROM companies WHERE name = 'ACME CORP'")
    assert slug == "acme-corp-2"


def test_sweep_documents_removes_only_orphans(seeded, tmp_path):
    database, _ = seeded
    storage = tmp_path / "storage"
    known_key = scalar(database, "SELECT storage_key FROM documents ORDER BY id LIMIT 1")
    orphan_key = "999/" + "ab" * 16
    for key in (known_key, orphan_key):
        path = storage / str(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"bytes")
    result = run(database, "sweep-documents", "--grace-minutes", "0", STORAGE_DIR=str(storage))
    assert result.returncode == 0, result.stderr
    assert "removed 1 orphans" in result.stdout
    assert (storage / str(known_key)).exists()
    assert not (storage / orphan_key).exists()
