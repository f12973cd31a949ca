"""Rate limits per route class, with the IETF draft's headers, shared through Redis, failing
open to an in-process limiter when Redis is gone.

The small test quotas are per hour: the sliding-window counter is an approximation that may
let one extra hit through when a window boundary passes (the in-memory windows are aligned on
the clock), and an hour makes that a one-in-thousands event during a test rather than a
one-in-a-hundred one.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY

from tests.fixtures.apps import add_test_route, client_for, running_app
from tests.fixtures.factories import PASSWORD
from tests.fixtures.logs import captured_logs
from tests.fixtures.problems import assert_problem
from tests.servers import free_port

LOGIN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
RATE_LIMIT = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def state(response) -> tuple[str, int, int]:
    match = RATE_LIMIT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return match["name"], int(match["r"]), int(match["t"])


async def ping() -> dict[str, bool]:
    return {"ok": True}


@pytest.mark.embedded
async def test_reads_carry_the_policy_and_the_remaining_quota(client, world, redis):
    response = await client.get(ME, headers=world.auth(world.member))
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"read";q=600;w=60'
    name, remaining, reset = state(response)
    assert (name, remaining) == ("read", 599)
    if redis is not None:  # Redis windows start at the first hit: the draft's own example
        assert response.headers["ratelimit"] == '"read";r=599;t=60'
    else:  # the in-memory windows are aligned on the clock
        assert 1 <= reset <= 60


@pytest.mark.embedded
async def test_an_exhausted_quota_is_a_429_problem_with_retry_after(settings, connection, world):
    refused_before = sample("etter_rate_limited_total", policy="read")
    async with (
        running_app(settings, connection, rate_limit_read="3/hour") as app,
        client_for(app) as client,
    ):
        answers = [await client.get(ME, headers=world.auth(world.member)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [state(a)[1] for a in answers] == [2, 1, 0, 0]
    refused = answers[-1]
    body = assert_problem(refused, 429)
    assert body["type"] == "urn:etter:problem:rate-limited"
    assert "'read' limit (3 per 3600 s)" in body["detail"]
    assert refused.headers["ratelimit-policy"] == '"read";q=3;w=3600'
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 3600
    assert state(refused)[2] == retry_after
    assert sample("etter_rate_limited_total", policy="read") == refused_before + 1


@pytest.mark.embedded
async def test_writes_and_reads_have_separate_quotas_per_user(settings, connection, world):
    async with (
        running_app(
            settings, connection, rate_limit_write="2/hour", rate_limit_read="2/hour"
        ) as app,
        client_for(app) as client,
    ):
        member = world.auth(world.member)
        writes = [await client.post("/api/v1/workflows", headers=member, json={}) for _ in range(3)]
        read = await client.get(ME, headers=member)
        other = await client.post(
            "/api/v1/workflows", headers=world.auth(world.other_member), json={}
        )
    assert [w.status_code for w in writes][-1] == 429
    assert all(w.status_code != 429 for w in writes[:2])
    assert writes[-1].headers["ratelimit-policy"] == '"write";q=2;w=3600'
    assert read.status_code == 200
    assert state(read)[:2] == ("read", 1)
    assert other.status_code != 429
    assert state(other)[:2] == ("write", 1)


@pytest.mark.embedded
async def test_anonymous_traffic_is_limited_per_client_address(settings, connection, world):
    async with (
        running_app(settings, connection, rate_limit_anonymous="2/hour") as app,
        client_for(app, ip="198.51.100.1") as first,
        client_for(app, ip="198.51.100.2") as second,
    ):
        bad_token = {"Authorization": "Bearer not.a.valid-token"}
        answers = [
            await first.get(ME),
            await first.get(ME, headers=bad_token),
            await first.get(ME),
        ]
        elsewhere = await second.get(ME)
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[1].headers["ratelimit-policy"] == '"anonymous";q=2;w=3600'
    assert elsewhere.status_code == 401
    assert state(elsewhere)[:2] == ("anonymous", 1)


@pytest.mark.embedded
async def test_health_and_metrics_are_never_limited(settings, connection):
    async with (
        running_app(settings, connection, rate_limit_anonymous="1/hour") as app,
        client_for(app) as client,
    ):
        answers = [await client.get("/health/live") for _ in range(3)]
        metrics = [await client.get("/metrics") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.status_code != 429 for a in metrics)
    assert all("ratelimit" not in a.headers for a in answers + metrics)


@pytest.mark.embedded
async def test_logins_are_limited_per_client_address(settings, connection, world):
    async with (
        running_app(settings, connection, rate_limit_login="3/hour") as app,
        client_for(app, ip="198.51.100.7") as attacker,
        client_for(app, ip="198.51.100.8") as other,
    ):
        tries = [
            await attacker.post(LOGIN, data={"username": f"guess{n}@x.example", "password": "x"})
            for n in range(4)
        ]
        elsewhere = await other.post(
            LOGIN, data={"username": world.member.email, "password": PASSWORD}
        )
    assert [t.status_code for t in tries] == [401, 401, 401, 429]
    assert tries[-1].headers["ratelimit-policy"] == '"login";q=3;w=3600'
    assert elsewhere.status_code == 200


@pytest.mark.embedded
async def test_failed_logins_are_limited_per_account_whatever_the_address(
    settings, connection, world
):
    email = world.member.email
    async with running_app(
        settings, connection, rate_limit_login="100/hour", rate_limit_login_account="2/hour"
    ) as app:
        clients = [client_for(app, ip=f"203.0.113.{n}") for n in range(1, 5)]
        try:
            guesses = [
                await clients[0].post(LOGIN, data={"username": email, "password": "guess-1"}),
                await clients[1].post(
                    LOGIN, data={"username": f" {email.upper()}", "password": "g2"}
                ),
                await clients[2].post(LOGIN, data={"username": email, "password": "guess-3"}),
            ]
            other_account = await clients[3].post(
                LOGIN, data={"username": world.chro.email, "password": PASSWORD}
            )
        finally:
            for c in clients:
                await c.aclose()
    assert [g.status_code for g in guesses] == [401, 401, 429]
    assert guesses[0].headers["ratelimit-policy"] == '"login";q=100;w=3600'
    refused = assert_problem(guesses[2], 429)
    assert "'login-account' limit" in refused["detail"]
    assert int(guesses[2].headers["retry-after"]) >= 1
    assert other_account.status_code == 200


@pytest.mark.embedded
async def test_the_owner_logs_in_past_the_account_limit_and_successes_do_not_count(
    settings, connection, world
):
    """Security defect 6: the account limit counted every attempt, so ten wrong passwords from
    anywhere locked the owner out (429 on the right password)."""
    email = world.member.email
    async with (
        running_app(
            settings, connection, rate_limit_login="100/hour", rate_limit_login_account="2/hour"
        ) as app,
        client_for(app, ip="203.0.113.50") as attacker,
        client_for(app, ip="198.51.100.50") as owner,
    ):
        owner_logins = [
            await owner.post(LOGIN, data={"username": email, "password": PASSWORD})
            for _ in range(3)
        ]
        wrong = [
            await attacker.post(LOGIN, data={"username": email, "password": f"guess-{n}"})
            for n in range(3)
        ]
        after_the_attack = await owner.post(LOGIN, data={"username": email, "password": PASSWORD})
    assert [r.status_code for r in owner_logins] == [200, 200, 200]  # successes are not counted
    assert [r.status_code for r in wrong] == [401, 401, 429]
    assert after_the_attack.status_code == 200, after_the_attack.text


@pytest.mark.embedded
async def test_a_multipart_login_counts_against_the_account_too(settings, connection, world):
    async with (
        running_app(settings, connection, rate_limit_login_account="1/hour") as app,
        client_for(app) as client,
    ):
        form = {"username": (None, world.member.email), "password": (None, "wrong")}
        first = await client.post(LOGIN, files=form)
        second = await client.post(LOGIN, files=form)
    assert first.status_code == 401
    assert_problem(second, 429)


@pytest.mark.embedded
async def test_an_oversized_login_form_is_refused(client):
    padded = {"username": "a@b.example", "password": "x", "padding": "p" * 20_000}
    response = await client.post(LOGIN, data=padded)
    assert assert_problem(response, 413)["type"] == "urn:etter:problem:payload-too-large"


@pytest.mark.embedded
async def test_x_forwarded_for_counts_only_from_trusted_proxies(settings, connection):
    def forwarded(ip: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"{ip}, 10.1.2.3"}

    async with (
        running_app(
            settings,
            connection,
            rate_limit_anonymous="1/hour",
            trusted_proxies="127.0.0.1,10.0.0.0/8",
        ) as app,
        client_for(app) as proxy,
    ):
        behind_proxy = [
            await proxy.get(ME, headers=forwarded("192.0.2.1")),
            await proxy.get(ME, headers=forwarded("192.0.2.2")),
            await proxy.get(ME, headers=forwarded("192.0.2.1")),
        ]
    async with (
        running_app(settings, connection, rate_limit_anonymous="1/hour") as app,
        client_for(app) as direct,
    ):
        spoofing = [
            await direct.get(ME, headers=forwarded("192.0.2.1")),
            await direct.get(ME, headers=forwarded("192.0.2.2")),
        ]
    assert [r.status_code for r in behind_proxy] == [401, 401, 429]
    assert [r.status_code for r in spoofing] == [401, 429]


@pytest.mark.embedded
async def test_rate_limiting_can_be_switched_off(settings, connection):
    async with (
        running_app(
            settings, connection, rate_limit_enabled=False, rate_limit_anonymous="1/hour"
        ) as app,
        client_for(app) as client,
    ):
        answers = [await client.get(ME) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all("ratelimit" not in a.headers for a in answers)


# --- Redis: shared across processes, fails open ---------------------------------------------


async def test_two_app_instances_share_the_limit_through_redis(settings, connection, world, redis):
    assert settings.redis_url
    member = world.auth(world.member)
    async with (
        running_app(settings, connection, rate_limit_read="4/hour") as first_app,
        running_app(settings, connection, rate_limit_read="4/hour") as second_app,
        client_for(first_app) as first,
        client_for(second_app) as second,
    ):
        answers = []
        for _ in range(3):
            answers.append(await first.get(ME, headers=member))
            answers.append(await second.get(ME, headers=member))
    # Each instance served at most 2 of its 3, yet the quota of 4 ran out: one count.
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    assert [state(a)[1] for a in answers[:4]] == [3, 2, 1, 0]
    assert await redis.keys("etter:ratelimit*")


async def test_an_unreachable_redis_fails_open_to_an_in_process_limiter(settings, connection):
    fallback_before = sample("etter_rate_limit_fallback_total")
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with running_app(
        settings,
        connection,
        redis_url=dead_redis,
        rate_limit_anonymous="3/hour",
        rate_limit_redis_retry_seconds=300,
    ) as app:
        add_test_route(app, "/test-only/ping", ping)
        async with client_for(app) as client:
            with captured_logs("INFO") as logs:
                answers = [await client.get("/test-only/ping") for _ in range(4)]
        assert app.state.rate_limits.degraded
    # Still served, still limited (per process), Redis outage logged once and counted.
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [state(a)[1] for a in answers] == [2, 1, 0, 0]
    [outage] = logs.named("rate_limit_storage_unavailable")
    assert outage["level"] == "error"
    assert outage["fallback"] == "in-process"
    assert outage["request_id"] == answers[0].headers["x-request-id"]
    assert sample("etter_rate_limit_fallback_total") == fallback_before + 4
