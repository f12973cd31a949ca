"""`make bench-cache`: what the cache buys each cached endpoint, on the medium data set. A
benchmark, not a test: it measures and reports, it asserts nothing about time.

1. Starts a throwaway PostgreSQL and Redis (tests/servers.py), then migrates and loads the
   `medium` scale with the real tool (`manage.py migrate`, `manage.py seed --scale medium`).
2. Serves Etter from two real uvicorn processes on loopback (one worker each, rate limits off):
   one with the cache on Redis, one with CACHE_ENABLED=false as the baseline.
3. Per cached endpoint, one client sends one request at a time, interleaved round by round:
   - cache off: the baseline server;
   - miss: the endpoint's tags are first invalidated from this process through the cache's own
     `Cache.invalidate()`, exactly what a committed write does, so the request pays the whole
     miss path (the read that finds the entry stale, the stampede lock, the computation, the
     store) and nothing else is cold (the caller's principal stays cached);
   - hit: the same request again.
   Every miss and hit is checked against the server's own counters (etter_cache_*_total).
4. The same miss/hit pairs inside this process, on the cached service call alone (no HTTP),
   to show where a hit's time goes.
5. A mixed run from a cold cache: sessions of users of every company (the dashboard for
   chros, workflow details weighted by how much each workflow is run, autocomplete prefixes of
   real names, a few recorded runs that invalidate); hit rate per cache from the counters.
6. Writes the section "Cache: hit vs miss (medium scale)" of tests/performance_report.md
   (only that section, between its markers).

    python -m tests.performance.bench_cache [--requests 150] [--mixed 3000] [--no-report]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from common.cache.backends import RedisBackend
from common.cache.cache import Cache
from common.enums import Role
from common.pagination import PaginationParams
from common.principal import Principal
from common.security import create_access_token
from seeding.bulk import BULK_SIZES, INTEGRATION_ACCOUNT, MARKER_COMPANY
from services.auth import AuthService
from services.cache_invalidation import Tags
from services.cache_service import CacheName, RequestCache, create_cache
from services.companies import CompanyService
from services.dashboard import DashboardService
from services.simulations import SimulationService
from services.users import UserService
from services.workflows import WorkflowService
from settings.config import Settings
from settings.database import Database
from settings.server import create_app
from tests import servers
from tests.performance.report import cpu_model, memory_total, write_section

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "performance_report.md"
START_MARK = "<!-- bench-cache:start -->"
END_MARK = "<!-- bench-cache:end -->"
SECRET = "bench-cache-secret-key-that-is-long-enough-0123456789abcdef"
HOST = "127.0.0.1"
API = "/api/v1"
METRICS_PATH = "/bench/metrics"
TARGET = 0.90  # the bar: a hit at least 90 % faster than a miss
MIXED_SEED = 20261128


def log(message: str) -> None:
    print(f"[bench-cache {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the served app -----------------------------------------------------------------------------


def metrics_app() -> FastAPI:
    """Etter's app (settings from the environment) plus GET /bench/metrics, the process's
    Prometheus registry: the counters are read from the very process that served the requests."""
    app = create_app()

    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.insert(0, APIRoute(METRICS_PATH, metrics, methods=["GET"]))
    return app


def child_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment without its own database and Redis, plus `overrides`."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**inherited, **overrides}


@contextlib.contextmanager
def uvicorn(env: dict[str, str], logs: Path, name: str) -> Iterator[str]:
    port = servers.free_port()
    with (logs / f"uvicorn-{name}-{port}.log").open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.performance.bench_cache:metrics_app",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=child_env(env),
            stdout=output,
            stderr=output,
        )
    try:
        servers._wait_for_port(port, 60, f"uvicorn ({name})")
        yield f"http://{HOST}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def manage(env: dict[str, str], logs: Path, *arguments: str, timeout: float) -> float:
    """`python manage.py <arguments>` against the benchmark's database; its wall time."""
    began = time.perf_counter()
    with (logs / f"manage-{arguments[0]}.log").open("wb") as output:
        subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=ROOT,
            env=child_env(env),
            stdout=output,
            stderr=output,
            check=True,
            timeout=timeout,
        )
    return time.perf_counter() - began


# --- the data -------------------------------------------------------------------------------


@dataclass
class Person:
    id: int
    company_id: int
    role: str
    email: str
    first_name: str


@dataclass
class Data:
    """What the requests point at, read from the loaded database."""

    company: int  # the biggest tenant (Bulk Company 0001)
    chro: Person
    busiest_workflow: tuple[int, int]  # (id, runs in the last 30 days)
    median_workflow: tuple[int, int]
    simulation: int
    companies: dict[int, int] = field(default_factory=dict)  # id -> active users
    people: dict[int, list[Person]] = field(default_factory=dict)
    workflows: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # active, runs
    simulations: dict[int, list[int]] = field(default_factory=dict)  # newest first


async def read_data(url: str) -> Data:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            marker = (
                await conn.execute(
                    text("SELECT id FROM companies WHERE name = :n"), {"n": MARKER_COMPANY}
                )
            ).scalar_one()
            people: dict[int, list[Person]] = defaultdict(list)
            rows = await conn.execute(
                text(
                    "SELECT id, company_id, role, email, full_name FROM users "
                    "WHERE is_active AND full_name <> :bot ORDER BY id"
                ),
                {"bot": INTEGRATION_ACCOUNT},
            )
            for row in rows:
                people[row.company_id].append(
                    Person(row.id, row.company_id, row.role, row.email, row.full_name.split()[0])
                )
            workflows: dict[int, list[tuple[int, int]]] = defaultdict(list)
            rows = await conn.execute(
                text(
                    "SELECT w.id, w.company_id, count(h.id) AS runs FROM workflows w "
                    "LEFT JOIN user_workflow_history h ON h.workflow_id = w.id "
                    "AND h.company_id = w.company_id "
                    "AND h.started_at >= now() - interval '30 days' "
                    "WHERE w.status = 'active' GROUP BY w.id ORDER BY w.id"
                )
            )
            for row in rows:
                workflows[row.company_id].append((row.id, row.runs))
            simulations: dict[int, list[int]] = defaultdict(list)
            rows = await conn.execute(
                text("SELECT id, company_id FROM simulations ORDER BY created_at DESC, id DESC")
            )
            for row in rows:
                simulations[row.company_id].append(row.id)
    finally:
        await engine.dispose()
    ranked = sorted(workflows[marker], key=lambda w: w[1])
    return Data(
        company=marker,
        chro=next(p for p in people[marker] if p.role == Role.CHRO.value),
        busiest_workflow=ranked[-1],
        median_workflow=ranked[len(ranked) // 2],
        simulation=simulations[marker][0],
        companies={company: len(members) for company, members in people.items()},
        people=dict(people),
        workflows=dict(workflows),
        simulations=dict(simulations),
    )


# --- measuring ------------------------------------------------------------------------------


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[q - 1]


@dataclass
class Target:
    label: str
    path: str
    cache: CacheName
    tags: list[str]
    call: str  # the label of the same cached call in the in-process table
    baseline: bool = True  # False: the cache-off server would measure something else


@dataclass
class Result:
    target: Target
    off: list[float] = field(default_factory=list)
    miss: list[float] = field(default_factory=list)
    first_hit: list[float] = field(default_factory=list)  # right after the miss
    hit: list[float] = field(default_factory=list)  # after another hit: the steady state
    counted_misses: float = 0.0
    counted_hits: float = 0.0
    body_bytes: int = 0  # the JSON body, before gzip
    sent_bytes: int = 0  # what went over the wire (gzipped from 1 KiB)

    def speed_up(self, q: int) -> float:
        return 1 - percentile(self.hit, q) / percentile(self.miss, q)


class Counters:
    """The cache counters of one server process, from its /bench/metrics."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def read(self) -> dict[str, dict[str, float]]:
        response = await self.client.get(METRICS_PATH)
        response.raise_for_status()
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name in ("etter_cache_hits_total", "etter_cache_misses_total"):
                    kind = "hits" if "hits" in sample.name else "misses"
                    counts[sample.labels["cache"]][kind] += sample.value
        return counts


def delta(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        cache: {kind: after[cache][kind] - before.get(cache, {}).get(kind, 0.0) for kind in kinds}
        for cache, kinds in after.items()
    }


async def timed_get(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> float:
    began = time.perf_counter()
    response = await client.get(path, headers=headers)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed


async def measure_http(
    target: Target,
    cached: httpx.AsyncClient,
    off: httpx.AsyncClient,
    counters: Counters,
    cache: Cache,
    headers: dict[str, str],
    requests: int,
    warmup: int,
) -> Result:
    """Rounds of: the baseline; a miss (the target's tags invalidated first); a first hit; a
    timed hit. The first hit after a miss is kept apart: right after a heavy miss the same
    hit runs measurably slower (not because of the garbage collector: the gap stays with it
    off; its code and data are simply colder after a long computation), which says more about
    the miss than about what a hit costs among other hits."""
    result = Result(target)
    for _ in range(warmup):  # connections, plans and buffers warm on both servers
        await timed_get(off, target.path, headers)
        await cache.invalidate(target.tags)
        await timed_get(cached, target.path, headers)
        await timed_get(cached, target.path, headers)
    sample = await cached.get(target.path, headers=headers)
    result.body_bytes = len(sample.content)
    result.sent_bytes = len(sample.content)
    if sample.headers.get("content-encoding") == "gzip":
        result.sent_bytes = int(sample.headers.get("content-length", 0))
    before = await counters.read()
    for _ in range(requests):
        if target.baseline:
            result.off.append(await timed_get(off, target.path, headers))
        await cache.invalidate(target.tags)
        result.miss.append(await timed_get(cached, target.path, headers))
        result.first_hit.append(await timed_get(cached, target.path, headers))
        result.hit.append(await timed_get(cached, target.path, headers))
    counted = delta(await counters.read(), before).get(target.cache.value, {})
    result.counted_misses = counted.get("misses", 0.0)
    result.counted_hits = counted.get("hits", 0.0)
    log(
        f"  {target.label}: miss p50 {percentile(result.miss, 50):.2f} ms, hit p50 "
        f"{percentile(result.hit, 50):.2f} ms ({result.speed_up(50):.0%} faster); counted "
        f"{result.counted_misses:.0f} misses, {result.counted_hits:.0f} hits"
    )
    return result


async def measure_floor(client: httpx.AsyncClient, requests: int) -> list[float]:
    """GET /health/live: the HTTP round trip and middleware, no auth, no database, no cache."""
    for _ in range(10):
        await timed_get(client, "/health/live", {})
    return [await timed_get(client, "/health/live", {}) for _ in range(requests)]


# --- the cached call alone, in this process -----------------------------------------------------

ServiceCall = Callable[[AsyncSession, RequestCache], Awaitable[Any]]


def service_calls(data: Data, settings: Settings) -> dict[str, tuple[list[str], ServiceCall]]:
    chro = Principal(data.chro.id, data.company, Role.CHRO, data.chro.email)
    workflow, _ = data.busiest_workflow
    median, _ = data.median_workflow
    return {
        "companies list": (
            [Tags.COMPANIES],
            lambda s, c: CompanyService(s, chro, c).catalogue(PaginationParams(1, 20)),
        ),
        "company detail": (
            [Tags.company(data.company)],
            lambda s, c: CompanyService(s, chro, c).detail(data.company),
        ),
        "user autocomplete": (
            [Tags.company_users(data.company)],
            lambda s, c: UserService(s, chro, c).suggestions("ma", 10),
        ),
        "workflow detail (busiest)": (
            [Tags.workflow_stats(workflow)],
            lambda s, c: WorkflowService(s, chro, c).detail(workflow),
        ),
        "workflow detail (median)": (
            [Tags.workflow_stats(median)],
            lambda s, c: WorkflowService(s, chro, c).detail(median),
        ),
        "simulation detail": (
            [Tags.simulation(data.simulation)],
            lambda s, c: SimulationService(s, chro, c).detail(data.simulation),
        ),
        "CHRO dashboard": (
            [Tags.dashboard(data.company)],
            lambda s, c: DashboardService(s, chro, c).build(),
        ),
        "principal": (
            [Tags.user(data.chro.id)],
            lambda s, c: AuthService(s, settings, c).active_principal(data.chro.id),
        ),
    }


@dataclass
class CallTimes:
    """One cached call inside this process, in ms: without the cache, missed, hit."""

    uncached: list[float] = field(default_factory=list)
    miss: list[float] = field(default_factory=list)
    hit: list[float] = field(default_factory=list)

    def speed_up(self) -> float:
        return 1 - percentile(self.hit, 50) / percentile(self.miss, 50)

    def overhead(self) -> float:
        """What the miss path adds to the computation: miss p50 - uncached p50."""
        return percentile(self.miss, 50) - percentile(self.uncached, 50)


async def measure_in_process(
    data: Data, settings: Settings, requests: int, warmup: int
) -> dict[str, CallTimes]:
    """Per cached call, round by round: the call with no cache (what CACHE_ENABLED=false
    runs), a miss (its tags invalidated first) and a hit; a fresh session and request cache
    per call, as a request has."""
    database = Database.from_settings(settings)
    redis = Redis.from_url(settings.redis_url)
    cache = create_cache(settings, redis)
    assert cache is not None
    results: dict[str, CallTimes] = {}

    async def timed(call: ServiceCall, request_cache: RequestCache) -> float:
        async with database.sessionmaker() as session:
            began = time.perf_counter()
            await call(session, request_cache)
            return (time.perf_counter() - began) * 1000

    try:
        for label, (tags, call) in service_calls(data, settings).items():
            times = results[label] = CallTimes()
            for n in range(warmup + requests):
                uncached = await timed(call, RequestCache(None))
                await cache.invalidate(tags)
                miss = await timed(call, RequestCache(cache))
                await timed(call, RequestCache(cache))  # the first hit: see measure_http
                hit = await timed(call, RequestCache(cache))
                if n >= warmup:
                    times.uncached.append(uncached)
                    times.miss.append(miss)
                    times.hit.append(hit)
            log(
                f"  in process, {label}: uncached {percentile(times.uncached, 50):.3f} ms, "
                f"miss {percentile(times.miss, 50):.3f} ms, hit {percentile(times.hit, 50):.3f} ms"
            )
    finally:
        await redis.aclose()
        await database.dispose()
    return results


# --- the mixed run ----------------------------------------------------------------------------


@dataclass
class MixedRun:
    requests: int = 0
    writes: int = 0
    sessions: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts: dict[str, dict[str, float]] = field(default_factory=dict)


MEMBER_ACTIONS = {  # what a member's session does, with weights (percent)
    "workflow detail": 48,
    "user autocomplete": 20,
    "simulation detail": 12,
    "companies list": 9,
    "company detail": 9,
    "record a run": 2,
}
CHRO_ACTIONS = {  # percent
    "CHRO dashboard": 35,
    "workflow detail": 25,
    "simulation detail": 15,
    "user autocomplete": 13,
    "companies list": 7,
    "company detail": 5,
}


async def mixed_run(
    client: httpx.AsyncClient,
    counters: Counters,
    cache: Cache,
    data: Data,
    settings: Settings,
    total: int,
) -> MixedRun:
    """`total` requests in user sessions of 3 to 10 requests, from a cold cache."""
    rng = random.Random(MIXED_SEED)
    tokens: dict[int, dict[str, str]] = {}
    companies = [c for c in data.companies if data.workflows.get(c)]
    weights = [data.companies[c] for c in companies]
    run = MixedRun()

    def headers(person: Person) -> dict[str, str]:
        if person.id not in tokens:
            token = create_access_token(settings, person.id).token
            tokens[person.id] = {"Authorization": f"Bearer {token}"}
        return tokens[person.id]

    async def request(method: str, path: str, person: Person, **kwargs: Any) -> None:
        response = await client.request(method, path, headers=headers(person), **kwargs)
        run.requests += 1
        run.statuses[response.status_code] += 1

    await cache.invalidate_all()
    before = await counters.read()
    began = time.perf_counter()
    while run.requests < total:
        company = rng.choices(companies, weights)[0]
        people = data.people[company]
        chros = [p for p in people if p.role == Role.CHRO.value]
        members = [p for p in people if p.role == Role.MEMBER.value]
        as_chro = chros and (not members or rng.random() < 0.1)
        person = rng.choice(chros) if as_chro else rng.choice(members)
        actions = CHRO_ACTIONS if person.role == Role.CHRO.value else MEMBER_ACTIONS
        run.sessions += 1
        for _ in range(rng.randint(3, 10)):
            action = rng.choices(list(actions), list(actions.values()))[0]
            run.by_kind[action] += 1
            workflows = data.workflows[company]
            if action == "companies list":
                page = rng.choices([1, 2, 3], [70, 20, 10])[0]
                await request("GET", f"{API}/companies?page={page}", person)
            elif action == "company detail":
                await request("GET", f"{API}/companies/{company}", person)
            elif action == "user autocomplete":
                name = rng.choice(people).first_name.lower()
                q = name[: rng.choice([2, 2, 3])]
                await request("GET", f"{API}/users/autocomplete", person, params={"q": q})
            elif action == "workflow detail":
                workflow = rng.choices(workflows, [runs + 1 for _, runs in workflows])[0][0]
                await request("GET", f"{API}/workflows/{workflow}", person)
            elif action == "simulation detail" and data.simulations.get(company):
                simulation = rng.choice(data.simulations[company][:5])
                await request("GET", f"{API}/simulations/{simulation}", person)
            elif action == "CHRO dashboard":
                await request("GET", f"{API}/chro/dashboard", person)
            elif action == "record a run":
                workflow = rng.choices(workflows, [runs + 1 for _, runs in workflows])[0][0]
                body = {"status": "completed", "duration_seconds": rng.randint(60, 3600)}
                await request("POST", f"{API}/workflows/{workflow}/history", person, json=body)
                run.writes += 1
            else:  # a company without simulations: the member looks at a workflow instead
                workflow = rng.choices(workflows, [runs + 1 for _, runs in workflows])[0][0]
                await request("GET", f"{API}/workflows/{workflow}", person)
            if run.requests >= total:
                break
    run.seconds = time.perf_counter() - began
    run.counts = delta(await counters.read(), before)
    unexpected = {s: n for s, n in run.statuses.items() if s not in (200, 201)}
    if unexpected:
        raise RuntimeError(f"the mixed run got unexpected answers: {unexpected}")
    return run


# --- the machine and the report ---------------------------------------------------------------


def machine(pg_version: str, redis_version: str) -> list[tuple[str, str]]:
    model, memory = cpu_model(), memory_total()
    return [
        ("nproc", str(os.cpu_count())),
        ("CPU", model),
        ("memory", memory),
        ("PostgreSQL", pg_version),
        ("Redis", redis_version),
        ("Python", platform.python_version()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("load average at the start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


async def versions(url: str, redis_url: str) -> tuple[str, str]:
    engine = create_async_engine(url)
    redis = Redis.from_url(redis_url)
    try:
        async with engine.connect() as conn:
            pg = (await conn.execute(text("SHOW server_version"))).scalar_one()
        info = await redis.info("server")
        return f"PostgreSQL {pg}", f"Redis {info['redis_version']}"
    finally:
        await redis.aclose()
        await engine.dispose()


def ms(value: float) -> str:
    return f"{value:.2f}"


def p50(samples: list[float]) -> float:
    return percentile(samples, 50)


def pct(value: float) -> str:
    return f"{value:.1%}"


def render(
    args: argparse.Namespace,
    info: list[tuple[str, str]],
    phases: dict[str, float],
    results: list[Result],
    floor: list[float],
    in_process: dict[str, CallTimes],
    mixed: MixedRun,
) -> str:
    sizes = BULK_SIZES[args.scale]
    lines = [
        START_MARK,
        f"## Cache: hit vs miss ({args.scale} scale)",
        "",
        f"Written by `make bench-cache` (tests/performance/bench_cache.py) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in info),
        f"| load average at the end | {' '.join(f'{x:.2f}' for x in os.getloadavg())} |",
        "",
        f"Data: the `{args.scale}` scale loaded with `manage.py seed --scale {args.scale}` "
        f"({sizes.companies:,} companies, {sizes.users:,} users, {sizes.workflows:,} workflows, "
        f"{sizes.history:,} history rows, {sizes.documents:,} documents, "
        f"{sizes.simulations:,} simulations) into a throwaway PostgreSQL (tests/servers.py: "
        "fsync off, shared_buffers 256MB) at the head migration ("
        + ", ".join(f"{name}: {seconds:.0f} s" for name, seconds in phases.items())
        + ").",
        "",
        "**Method.** Two uvicorn processes on loopback, one worker each, rate limits off (one "
        "client would exceed the per-user quota, and they cost a hit and a miss the same): the "
        "cache on Redis, and CACHE_ENABLED=false as the baseline. One client (httpx, keep-alive, "
        "gzip accepted as a browser does) sends one request at a time as the chro of the "
        f"biggest tenant (Bulk Company 0001), {args.requests} rounds per endpoint after "
        f"{args.warmup} warm-up rounds. A round is one request to the baseline, one **miss** "
        "(the endpoint's cache tags invalidated just before, from the benchmark through "
        "`Cache.invalidate()`, which is what a committed write does: the request finds its "
        "entry stale, takes the stampede lock, computes, stores and unlocks) and one **hit** "
        "(the same request again, timed the second time: right after a heavy miss the same "
        "hit runs measurably slower, so the *first hit* is shown apart, with its own "
        "speed-up). Only the endpoint's own entry is dropped: the caller's "
        "principal stays cached, except in the principal's own row. Times are the client's wall "
        "clock per request, in ms. Every miss and every hit was checked against the server's "
        "etter_cache_misses_total and etter_cache_hits_total (column *counted*: a miss and two "
        "hits a round). "
        "Speed-up = 1 - hit / miss.",
        "",
        "| endpoint | body KiB (sent) | cache off p50 | miss p50 | miss p95 | hit p50 | hit p95 "
        "| first hit p50 | speed-up p50 | speed-up p95 | speed-up p50, first hit "
        "| counted misses / hits | ≥ 90 % (p50) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| :---: |",
    ]
    for r in results:
        off = ms(p50(r.off)) if r.off else "—"
        lines.append(
            f"| {r.target.label} | {r.body_bytes / 1024:.1f} ({r.sent_bytes / 1024:.1f}) | {off} | "
            f"{ms(p50(r.miss))} | {ms(percentile(r.miss, 95))} | "
            f"{ms(p50(r.hit))} | {ms(percentile(r.hit, 95))} | {ms(p50(r.first_hit))} | "
            f"{pct(r.speed_up(50))} | "
            f"{pct(r.speed_up(95))} | {pct(1 - p50(r.first_hit) / p50(r.miss))} | "
            f"{r.counted_misses:.0f} / {r.counted_hits:.0f} | "
            f"{'yes' if r.speed_up(50) >= TARGET else '**no**'} |"
        )
    floor50 = p50(floor)
    lines += [
        "",
        "The baseline (cache off) also reads the caller from the users table on every request, "
        "which the cached server takes from Redis; the principal row has no baseline because "
        "with the cache off the company would be recomputed too. Floor: `GET /health/live` on "
        "the same server (HTTP, middleware, JSON; no token, no database, no cache): p50 "
        f"{ms(floor50)} ms, p95 {ms(percentile(floor, 95))} ms.",
        "",
        "The cached call alone, inside one process: the service method with no cache (what "
        "CACHE_ENABLED=false runs), missed and hit, a fresh session and request cache per call, "
        "in rounds as above; no HTTP, token, middleware or response serialisation. "
        "*Miss overhead* is what the cache adds to a miss (miss - no cache, p50).",
        "",
        "| cached call | no cache p50 | miss p50 | hit p50 | hit p95 | speed-up p50 "
        "| miss overhead |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, t in in_process.items():
        lines.append(
            f"| {label} | {p50(t.uncached):.3f} | {p50(t.miss):.3f} | {p50(t.hit):.3f} | "
            f"{percentile(t.hit, 95):.3f} | {pct(t.speed_up())} | {t.overhead():+.3f} |"
        )
    lines += ["", "### Reading the figures", ""]
    reached = [r for r in results if r.speed_up(50) >= TARGET]
    short = [r for r in results if r.speed_up(50) < TARGET]
    hits = sorted(results, key=lambda r: p50(r.hit))
    process_hits = sorted(p50(t.hit) for t in in_process.values())
    lines.append(
        "At or above the issue's 90 % at p50: "
        + (
            ", ".join(f"{r.target.label} ({pct(r.speed_up(50))})" for r in reached)
            if reached
            else "none"
        )
        + ". Below it:"
    )
    lines.append("")
    for r in short:
        call = in_process.get(r.target.call)
        computed = (
            f"; the computation itself costs {p50(call.uncached):.2f} ms with no cache (in process)"
            if call
            else ""
        )
        lines.append(
            f"- {r.target.label}: {pct(r.speed_up(50))} (miss {ms(p50(r.miss))} ms, hit "
            f"{ms(p50(r.hit))} ms); 90 % would need a miss of at least "
            f"{ms(p50(r.hit) / (1 - TARGET))} ms{computed}."
        )
    largest = max(results, key=lambda r: r.body_bytes)
    body_note = (
        f" The dearest hit, {hits[-1].target.label}'s, also has the largest body "
        f"({largest.body_bytes / 1024:.1f} KiB of JSON, against "
        f"{hits[0].body_bytes / 1024:.1f} KiB for the cheapest): a hit rebuilds, re-serialises, "
        "hashes and compresses its whole body every time."
        if largest is hits[-1]
        else ""
    )
    saved = [t.speed_up() for t in in_process.values()]
    lines += [
        "",
        "A hit is not slow; a request is not free. Over HTTP a hit costs "
        f"{ms(p50(hits[0].hit))} to {ms(p50(hits[-1].hit))} ms at p50, of which "
        f"{ms(floor50)} ms is the floor above (the loopback round trip, the client, uvicorn, "
        "the middleware); the rest is the route's own machinery (FastAPI's dependency "
        "resolution, the request's session and transaction wrapper), the bearer token's "
        "signature, two reads from Redis (the "
        "principal, then the entry with its tags' generations), the entry's JSON validated "
        "back into the response schema, serialised again and hashed for the ETag, and gzip "
        f"above 1 KiB. The cached call's own hit is only {process_hits[0]:.2f} to "
        f"{process_hits[-1]:.2f} ms (in process).{body_note} What a hit saves is the "
        "computation, and for most of these endpoints it costs no more than that fixed part "
        "of a request (the bullets: one or two indexed statements each since migration 0002). "
        "For 90 % a miss must cost ten times a hit; only the aggregates over the history "
        "table come near it. On the cached calls alone the cache saves "
        f"{pct(min(saved))} to {pct(max(saved))} at p50 and a hit sends no SQL at all (the "
        "integration tests count the statements); the rest of a request's time is outside "
        "its reach.",
        "",
    ]
    overheads = {label: t.overhead() for label, t in in_process.items()}
    lines.append(
        "The cache's own cost on a miss (in process, miss - no cache, p50): "
        + ", ".join(f"{label} {value:+.2f} ms" for label, value in overheads.items())
        + ". That is the read that finds no current entry, the lock, a second read under it, "
        "the store and the unlock: five Redis round trips on loopback, one after the other."
    )
    total_hits = sum(c.get("hits", 0) for c in mixed.counts.values())
    total_misses = sum(c.get("misses", 0) for c in mixed.counts.values())
    per_minute = mixed.writes / mixed.seconds * 60 if mixed.seconds else 0.0
    data_rate = sizes.history / 365 / 24 / 60
    lines += [
        "",
        "### Hit rate of a mixed run",
        "",
        f"{mixed.requests:,} requests in {mixed.sessions:,} user sessions of 3 to 10 requests, "
        f"one client, from a cold cache (everything invalidated first), in "
        f"{mixed.seconds:.0f} s, default TTLs. Users of every company, companies weighted by "
        "their headcount, a tenth of the sessions a chro's. A member's requests: "
        + ", ".join(f"{name} {weight} %" for name, weight in MEMBER_ACTIONS.items())
        + "; a chro's: "
        + ", ".join(f"{name} {weight} %" for name, weight in CHRO_ACTIONS.items())
        + ". Workflow details and runs go to a company's workflows in proportion to their runs "
        "in the last 30 days, autocomplete prefixes are the first 2 or 3 letters of colleagues' "
        "first names, simulation details one of the company's 5 newest. Each recorded run is "
        "a write that drops that workflow's stats and the company's dashboard: "
        f"{mixed.writes} of them, {per_minute:,.0f} a minute, against the data set's average "
        f"of {data_rate:.1f} a minute (a year of history), so invalidation is far more "
        "frequent here than in the data. Requests made: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(mixed.by_kind.items()))
        + ". From the server's etter_cache_hits_total and etter_cache_misses_total:",
        "",
        "| cache | hits | misses | hit rate |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in CacheName:
        counted = mixed.counts.get(name.value, {})
        h, m = counted.get("hits", 0), counted.get("misses", 0)
        rate = f"{h / (h + m):.1%}" if h + m else "—"
        lines.append(f"| {name.value} | {h:,.0f} | {m:,.0f} | {rate} |")
    overall = total_hits / (total_hits + total_misses) if total_hits + total_misses else 0.0
    lines += [
        f"| **all** | {total_hits:,.0f} | {total_misses:,.0f} | **{overall:.1%}** |",
        "",
        "A hit rate is the workload's as much as the cache's: it is bounded by how often the "
        "same value is asked for again within its TTL and before a write drops it. Every user's "
        "principal, the company catalogue and a company's dashboard are asked for again and "
        "again; a rare autocomplete prefix or a workflow nobody runs is asked for once and "
        "misses, and a popular workflow's stats are dropped by every run recorded on it.",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def write_report(section: str) -> None:
    """Replace this benchmark's section between its markers, or append it; nothing else."""
    write_section(REPORT, START_MARK, END_MARK, section)


# --- main -------------------------------------------------------------------------------------


def targets(data: Data) -> list[Target]:
    company, chro = data.company, data.chro.id
    (busiest, busiest_runs), (median, median_runs) = data.busiest_workflow, data.median_workflow
    return [
        Target("companies list", f"{API}/companies?page=1&page_size=20", CacheName.COMPANIES,
               [Tags.COMPANIES], "companies list"),
        Target("company detail", f"{API}/companies/{company}", CacheName.COMPANIES,
               [Tags.company(company)], "company detail"),
        Target("user autocomplete", f"{API}/users/autocomplete?q=ma", CacheName.AUTOCOMPLETE,
               [Tags.company_users(company)], "user autocomplete"),
        Target(f"workflow detail (busiest: {busiest_runs:,} runs in 30 days)",
               f"{API}/workflows/{busiest}", CacheName.WORKFLOWS,
               [Tags.workflow_stats(busiest)], "workflow detail (busiest)"),
        Target(f"workflow detail (median: {median_runs:,} runs in 30 days)",
               f"{API}/workflows/{median}", CacheName.WORKFLOWS,
               [Tags.workflow_stats(median)], "workflow detail (median)"),
        Target("simulation detail", f"{API}/simulations/{data.simulation}",
               CacheName.SIMULATIONS, [Tags.simulation(data.simulation)], "simulation detail"),
        Target("CHRO dashboard", f"{API}/chro/dashboard", CacheName.DASHBOARD,
               [Tags.dashboard(company)], "CHRO dashboard"),
        # The company entry stays warm: the principal is the only thing recomputed. With the
        # cache off both would be, so the baseline would measure something else.
        Target("principal (GET /companies/{id})", f"{API}/companies/{company}",
               CacheName.PRINCIPAL, [Tags.user(chro)], "principal", baseline=False),
    ]  # fmt: skip


async def measure_all(
    args: argparse.Namespace, url: str, redis_url: str, cached_base: str, off_base: str, data: Data
) -> tuple[list[Result], list[float], dict[str, CallTimes], MixedRun]:
    settings = Settings(database_url=url, redis_url=redis_url, secret_key=SECRET, _env_file=None)  # type: ignore[call-arg]
    headers = {"Authorization": f"Bearer {create_access_token(settings, data.chro.id).token}"}
    redis = Redis.from_url(redis_url)
    cache = Cache(RedisBackend(redis), ttls={})  # for invalidate() only
    limits = httpx.Limits(max_connections=1)
    try:
        async with (
            httpx.AsyncClient(base_url=cached_base, timeout=60, limits=limits) as cached,
            httpx.AsyncClient(base_url=off_base, timeout=60, limits=limits) as off,
        ):
            counters = Counters(cached)
            log("measuring hit against miss over HTTP")
            results = [
                await measure_http(
                    target, cached, off, counters, cache, headers, args.requests, args.warmup
                )
                for target in targets(data)
            ]
            floor = await measure_floor(cached, args.requests)
            log("measuring the cached calls in process")
            in_process = await measure_in_process(data, settings, args.requests, args.warmup)
            log(f"mixed run of {args.mixed} requests")
            mixed = await mixed_run(cached, counters, cache, data, settings, args.mixed)
    finally:
        await redis.aclose()
    return results, floor, in_process, mixed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(BULK_SIZES), default="medium")
    parser.add_argument("--requests", type=int, default=150, help="timed rounds per endpoint")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds per endpoint")
    parser.add_argument("--mixed", type=int, default=3000, help="requests of the mixed run")
    parser.add_argument("--no-report", action="store_true", help="print, do not write")
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="etter-bench-cache-"))
    phases: dict[str, float] = {}
    with servers.postgres_server() as plain_url, servers.redis_server() as redis:
        url = Settings(database_url=plain_url, _env_file=None).database_url  # type: ignore[call-arg]
        log(f"PostgreSQL at {plain_url}, Redis at {redis.url}; logs in {logs}")
        pg_version, redis_version = asyncio.run(versions(url, redis.url))
        info = machine(pg_version, redis_version)
        env = {
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET,
            "ENVIRONMENT": "development",
            "SEED_DEMO_DATA": "false",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_ENABLED": "false",
        }
        phases["migrate"] = manage(env, logs, "migrate", timeout=300)
        log(f"loading the {args.scale} scale (manage.py seed)")
        phases[f"seed --scale {args.scale}"] = manage(
            env, logs, "seed", "--scale", args.scale, timeout=1800
        )
        data = asyncio.run(read_data(url))
        log(
            f"biggest tenant {data.company}: busiest workflow {data.busiest_workflow}, "
            f"median {data.median_workflow}"
        )
        with (
            uvicorn(
                {**env, "REDIS_URL": redis.url, "CACHE_ENABLED": "true"}, logs, "cached"
            ) as cached_base,
            uvicorn(
                {**env, "REDIS_URL": redis.url, "CACHE_ENABLED": "false"}, logs, "off"
            ) as off_base,
        ):
            results, floor, in_process, mixed = asyncio.run(
                measure_all(args, url, redis.url, cached_base, off_base, data)
            )
    section = render(args, info, phases, results, floor, in_process, mixed)
    if args.no_report:
        print(section)
    else:
        write_report(section)
        log(f"written to {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
