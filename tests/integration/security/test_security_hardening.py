"""Issue 10, item 8 (Info): HSTS in production, Cache-Control on API answers, hidden SQL
parameters, the development-secret warning, docs off in production, the metrics token, IPv6
clients limited by /64, and the security events in the log.
"""

from __future__ import annotations

import pytest

from middleware.client_ip import rate_limit_bucket
from services.auth import account_key
from settings.config import DEVELOPMENT_SECRET_KEY, Environment
from tests.fixtures.apps import client_for, running_app
from tests.fixtures.factories import PASSWORD
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem

pytestmark = pytest.mark.embedded

PRODUCTION = {"environment": Environment.PRODUCTION, "secret_key": "p" * 48}
ME = "/api/v1/auth/me"


# --- headers -----------------------------------------------------------------------------------


async def test_hsts_in_production_only(settings, connection, client):
    assert "strict-transport-security" not in (await client.get("/health/live")).headers
    async with running_app(settings, connection, **PRODUCTION) as app, client_for(app) as prod:
        for path in ("/health/live", ME, "/nowhere"):
            hsts = (await prod.get(path)).headers["strict-transport-security"]
            assert hsts.startswith("max-age=63072000")


async def test_api_answers_are_not_stored(client, world):
    for path, headers in (
        (ME, world.auth(world.member)),
        (ME, {}),  # a 401 problem
        ("/api/v1/workflows", world.auth(world.member)),
        ("/health/live", {}),
    ):
        response = await client.get(path, headers=headers)
        assert response.headers["cache-control"] == "no-store", path


async def test_etagged_answers_are_private_and_revalidated(client, world):
    response = await client.get(
        f"/api/v1/companies/{world.tenant.id}", headers=world.auth(world.member)
    )
    assert response.headers["etag"]
    assert response.headers["cache-control"] == "private, no-cache"
    # A route's own choice stands (the document download is never stored).
    document = await client.get(f"/api/v1/documents/{2**31 - 1}", headers=world.auth(world.member))
    assert document.headers["cache-control"] == "no-store"


# --- the engine, the secret, the docs ----------------------------------------------------------


async def test_sql_parameters_are_hidden_outside_development(app, settings, connection):
    assert app.state.database.engine.sync_engine.hide_parameters  # the test environment
    async with running_app(
        settings, connection, environment=Environment.DEVELOPMENT
    ) as development:
        assert not development.state.database.engine.sync_engine.hide_parameters


async def test_the_development_secret_is_announced_loudly(settings, connection, capsys):
    async with running_app(settings, connection, secret_key=DEVELOPMENT_SECRET_KEY):
        pass
    assert "development_secret_key_in_use" in capsys.readouterr().err
    async with running_app(settings, connection):
        pass
    assert "development_secret_key_in_use" not in capsys.readouterr().err


async def test_docs_are_off_in_production_unless_enabled(settings, connection):
    async with running_app(settings, connection, **PRODUCTION) as app, client_for(app) as prod:
        for path in ("/docs", "/openapi.json"):
            assert_problem(await prod.get(path), 404)
    async with (
        running_app(settings, connection, docs_enabled=True, **PRODUCTION) as app,
        client_for(app) as prod,
    ):
        for path in ("/docs", "/openapi.json"):
            assert (await prod.get(path)).status_code == 200


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_token(settings, connection, client):
    assert (await client.get("/metrics")).status_code == 200  # no token configured
    token = "scrape-me-" + "x" * 30
    async with (
        running_app(settings, connection, metrics_token=token) as app,
        client_for(app) as guarded,
    ):
        assert_problem(await guarded.get("/metrics"), 401)
        wrong = {"Authorization": "Bearer not-the-token"}
        assert_problem(await guarded.get("/metrics", headers=wrong), 401)
        right = await guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200
        assert "# HELP" in right.text


# --- IPv6 clients ------------------------------------------------------------------------------


def test_ipv6_addresses_are_bucketed_by_their_64():
    assert rate_limit_bucket("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert rate_limit_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert rate_limit_bucket("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert rate_limit_bucket("192.0.2.7") == "192.0.2.7"
    assert rate_limit_bucket("unknown") == "unknown"


async def test_one_ipv6_64_shares_one_anonymous_limit(settings, connection, world):
    async with running_app(settings, connection, rate_limit_anonymous="2/minute") as app:
        statuses = []
        for ip in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:dead:beef:1:2"):
            async with client_for(app, ip=ip) as c:  # three addresses of one /64
                statuses.append((await c.get(ME)).status_code)
        async with client_for(app, ip="2001:db8:0:2::1") as other_network:
            other = (await other_network.get(ME)).status_code
    assert statuses == [401, 401, 429]
    assert other == 401


# --- security events ---------------------------------------------------------------------------


async def test_logins_are_security_events(client, world):
    email = world.member.email
    with captured_logs("INFO") as logs:
        await client.post("/api/v1/auth/token", data={"username": email, "password": "wrong-pw"})
        await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    (failed,) = logs.named("login_failed")
    assert failed["account"] == account_key(world.settings, email)
    assert failed["client_ip"] == "127.0.0.1"
    assert failed["level"] == "warning"
    assert email not in logs.text
    assert "wrong-pw" not in logs.text
    (succeeded,) = logs.named("login_succeeded")
    assert succeeded["user_id"] == world.member.id
    assert succeeded["client_ip"] == "127.0.0.1"


async def test_access_changes_are_security_events(client, world):
    chro = world.auth(world.chro)
    users = "/api/v1/users"
    with captured_logs("INFO") as logs:
        await client.patch(f"{users}/{world.member.id}", json={"role": "chro"}, headers=chro)
        await client.delete(f"{users}/{world.other_member.id}", headers=chro)
        await client.patch(
            f"{users}/{world.member.id}", json={"password": "another-password"}, headers=chro
        )
    (role,) = logs.named("role_changed")
    assert (role["user_id"], role["by_user_id"]) == (world.member.id, world.chro.id)
    assert (role["old_role"], role["new_role"]) == ("member", "chro")
    (deactivated,) = logs.named("user_deactivated")
    assert deactivated["user_id"] == world.other_member.id
    (password,) = logs.named("password_changed")
    assert password["user_id"] == world.member.id
    assert "another-password" not in logs.text
