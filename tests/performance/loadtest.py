"""`make loadtest` / `make loadtest-smoke`: the Etter mix (tests/load_test.py) against a real
deployment shape, with the server-side figures. A benchmark, not a test: it measures and
reports; only the smoke asserts, and never on time.

Everything runs on this machine:
1. a throwaway PostgreSQL (with pg_stat_statements) and Redis (tests/servers.py), the data set
   restored from the cached dump (tests/performance/dataset.py), a data file for the mix
   (accounts with pre-minted tokens, ids and names weighted by real use) read from it;
2. Etter under gunicorn with uvicorn workers, production settings, rate limits at their
   defaults (each simulated user is its own account), JSON access log to a file, Prometheus
   multiprocess counters;
3. Locust, headless, one process, as a subprocess; the statistics are reset once every user is
   spawned, so the figures are the hold, and the server-side snapshots (CPU per process group
   from /proc, pg_stat_statements, pg_stat_database, the cache counters from /metrics, the
   access log) bracket the same window.

Parts (`python -m tests.performance.loadtest PART`):
- main: the mix at LOADTEST_USERS (1000) with 1-2 s think time, ramp then hold; py-spy samples
  the workers during the hold;
- sweep: the offered load stepped up (constant_throughput per user: each user paces itself, so
  the offered rate is users x rate, not what the server lets through) until p95 > 100 ms; the
  capacity point is cross-checked with wrk pacing the dominant endpoint at the same rate;
- phases: the mix at a fixed load with each phase's work off and on in turn: indexes of
  migration 0002 dropped (its own downgrade, then its upgrade), CACHE_ENABLED=false, gzip off
  (GZIP_MIN_SIZE above any body), 1 worker against LOADTEST_WORKERS;
- all (make loadtest): the three above, then the report;
- report: tests/performance_report.md's load-test sections and the charts, from results.json;
- smoke (make loadtest-smoke): `small` data, 50 users, 20 s; fails unless every task of the mix
  ran and nothing failed.

Results go to tests/performance/loadtest/ (Locust CSV/HTML, results.json, logs/, the profile).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests import servers
from tests.performance import dataset
from tests.performance.report import cpu_model, memory_total

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "performance" / "loadtest"
RESULTS = OUT / "results.json"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
P95_TARGET_MS = 100.0
# The deployment's gunicorn settings when the repository has them; the flags below override.
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
METRICS_TOKEN = secrets.token_urlsafe(24)
# Above any response: gzip off without a setting of its own.
GZIP_OFF = str(2**31)


def log(message: str) -> None:
    print(f"[loadtest {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


# --- /proc: CPU per process group ----------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu s, reaped children's cpu s) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return ppid, own, children


def process_table() -> dict[int, tuple[int, float, float]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree_cpu(table: dict[int, tuple[int, float, float]], root: int) -> float:
    """CPU seconds of `root` and its descendants, including children they already reaped."""
    children = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1] + table[pid][2]
        stack.extend(children.get(pid, []))
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def postmaster_pid(port: int) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"postgres") and f"-p {port}".encode() in b" ".join(argv):
                return int(entry.name)
    raise RuntimeError(f"no postmaster on port {port}")


# --- the servers ---------------------------------------------------------------------------------


@dataclass
class Stack:
    database_url: str
    redis: servers.RedisServer
    pg_pid: int
    logs: Path
    secret: str
    scale: str


@contextlib.contextmanager
def stack(scale: str, logs: Path) -> Iterator[Stack]:
    pg_settings = {
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.max": "10000",
    }
    with servers.postgres_server(pg_settings) as pg_url, servers.redis_server() as redis:
        port = int(re.search(r":(\d+)/", pg_url).group(1))  # type: ignore[union-attr]
        began = time.perf_counter()
        info = dataset.load_dataset(pg_url, scale, logs)
        log(
            f"{scale}: {'restored from' if info.restored else 'seeded, dumped to'} "
            f"{info.dump.name} in {time.perf_counter() - began:.0f} s"
        )
        dataset.psql(pg_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        yield Stack(pg_url, redis, postmaster_pid(port), logs, secrets.token_urlsafe(48), scale)


@dataclass
class Etter:
    url: str
    pid: int
    access_log: Path
    workers: int
    env: dict[str, str]


def etter_env(st: Stack, overrides: dict[str, str], multiproc: Path) -> dict[str, str]:
    # Etter's other settings (DB_POOL_SIZE, ...) pass through from this environment.
    replaced = (
        "DATABASE_URL",
        "DATABASE_REPLICA_URL",
        "REDIS_URL",
        "CACHE_ENABLED",
        "GZIP_MIN_SIZE",
    )
    inherited = {k: v for k, v in os.environ.items() if k not in replaced}
    return {
        **inherited,
        "ENVIRONMENT": "production",
        "SECRET_KEY": st.secret,
        "DATABASE_URL": st.database_url,
        "REDIS_URL": st.redis.url,
        "LOG_LEVEL": "INFO",
        "FORWARDED_ALLOW_IPS": "",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_TOKEN": METRICS_TOKEN,  # where /metrics takes one; sent by `metrics()`
        "STORAGE_DIR": str(st.logs / "storage"),
        **overrides,
    }


@contextlib.contextmanager
def etter(st: Stack, workers: int, overrides: dict[str, str], name: str) -> Iterator[Etter]:
    port = servers.free_port()
    multiproc = Path(tempfile.mkdtemp(prefix="etter-prom-"))
    env = etter_env(st, overrides, multiproc)
    access_log = st.logs / f"etter-{name}.log"
    with access_log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *(["-c", str(GUNICORN_CONF)] if GUNICORN_CONF.exists() else []),
                "settings.server:app",
                "-k",
                "uvicorn.workers.UvicornWorker",
                "-w",
                str(workers),
                "-b",
                f"{HOST}:{port}",
                "--backlog",
                "4096",
                "--graceful-timeout",
                "10",
                # gunicorn's default keep-alive is 2 s, which UvicornWorker passes on: a user
                # thinking 1-2 s then finds its connection closed under it, and a POST is not
                # retried (status 0). Browsers and load balancers keep connections far longer.
                "--keep-alive",
                "75",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
    try:
        servers._wait_for_port(port, 60, "gunicorn")
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every worker up: /health/ready on each of them
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health/ready", timeout=5).status == 200:  # noqa: S310
                    break
            time.sleep(0.2)
        time.sleep(1.0)
        yield Etter(url, process.pid, access_log, workers, env)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(multiproc, ignore_errors=True)


# --- the mix's data file -------------------------------------------------------------------------

DATA_SQL = r"""
WITH
active AS (
  SELECT id, company_id, role, email FROM users
  WHERE is_active AND full_name <> 'Integration Bot'
),
wf AS (
  SELECT w.company_id, w.id, count(h.id) + 1 AS weight
  FROM workflows w LEFT JOIN user_workflow_history h
    ON h.workflow_id = w.id AND h.started_at > now() - interval '30 days'
  WHERE w.status = 'active' GROUP BY w.company_id, w.id
),
sims AS (
  SELECT company_id, id,
    row_number() OVER (PARTITION BY company_id ORDER BY created_at DESC, id DESC) AS n
  FROM simulations
),
names AS (
  SELECT company_id, full_name,
    row_number() OVER (PARTITION BY company_id ORDER BY md5(id::text)) AS n
  FROM users WHERE is_active
)
SELECT json_build_object(
  'accounts', (
    SELECT json_agg(json_build_object(
      'id', id, 'company_id', company_id, 'role', role, 'email', email))
    FROM active),
  'companies', (SELECT json_object_agg(c.id, json_build_object(
      'name', c.name,
      'workflows', COALESCE(
        (SELECT json_agg(json_build_array(id, weight)) FROM wf WHERE wf.company_id = c.id),
        '[]'),
      'simulations', COALESCE(
        (SELECT json_agg(id) FROM sims WHERE sims.company_id = c.id AND n <= 5), '[]'),
      'departments', COALESCE(
        (SELECT json_agg(DISTINCT department) FROM users u
         WHERE u.company_id = c.id AND department IS NOT NULL),
        '[]'),
      'names', COALESCE(
        (SELECT json_agg(full_name) FROM names WHERE names.company_id = c.id AND n <= 300),
        '[]')
    )) FROM companies c),
  'company_ids', (SELECT json_agg(id) FROM companies),
  'tenant_ids', (SELECT json_agg(DISTINCT company_id) FROM users WHERE role = 'chro'),
  'company_words', (SELECT json_agg(DISTINCT split_part(name, ' ', 1)) FROM companies)
)
"""


def mint_tokens(st: Stack, user_ids: list[int]) -> list[str]:
    """Access tokens signed with the server's key, by the app's own function, in a child
    process with the server's settings (so this process never imports the app's settings)."""
    code = (
        "import json, sys\n"
        "from common.security import create_access_token\n"
        "from settings.config import get_settings\n"
        "s = get_settings()\n"
        "ids = json.load(sys.stdin)\n"
        "json.dump([create_access_token(s, i).token for i in ids], sys.stdout)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))},
        "ENVIRONMENT": "production",
        "SECRET_KEY": st.secret,
        "DATABASE_URL": st.database_url,
        "ACCESS_TOKEN_EXPIRE_MINUTES": "1440",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(user_ids),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return json.loads(result.stdout)


def prepare_data(st: Stack, users: int, path: Path) -> dict[str, Any]:
    """The mix's data file: accounts drawn uniformly from active users (a company's share is
    its headcount's), every chro for the CHRO users, the admin; tokens minted for them."""
    data = json.loads(dataset.psql(st.database_url, DATA_SQL))
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for account in data["accounts"]:
        by_role[account["role"]].append(account)
    rng = random.Random(20261129)
    tenants = {str(c) for c in data["tenant_ids"]}
    with_work = [
        a for a in by_role["member"] if data["companies"][str(a["company_id"])]["workflows"]
    ]
    members = rng.sample(with_work, min(len(with_work), users))
    chros = [a for a in by_role["chro"] if str(a["company_id"]) in tenants]
    rng.shuffle(chros)
    chros = chros[: max(1, users // 10)]
    admins = by_role["admin"][:1]
    chosen = {"member": members, "chro": chros, "admin": admins}
    flat = [a for role in ("member", "chro", "admin") for a in chosen[role]]
    for account, token in zip(flat, mint_tokens(st, [a["id"] for a in flat]), strict=True):
        account["token"] = token
    data["accounts"] = chosen
    data["company_ids"] = sorted(data["company_ids"])
    path.write_text(json.dumps(data))
    return data


# --- snapshots -----------------------------------------------------------------------------------

STATEMENTS_SQL = """
SELECT json_agg(json_build_array(
  queryid, calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)))
FROM pg_stat_statements
WHERE query NOT LIKE '%pg_stat%'
  AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
DATABASE_SQL = """
SELECT json_build_array(
  xact_commit, xact_rollback, tup_returned, tup_fetched, blks_hit, blks_read, sessions)
FROM pg_stat_database WHERE datname = current_database()
"""


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    machine: tuple[float, float]
    statements: dict[str, tuple[int, float, str]]
    database: list[int]
    cache: dict[str, dict[str, float]]


def metrics(url: str) -> dict[str, dict[str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(  # noqa: S310 - our own server on loopback
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    body = urllib.request.urlopen(request, timeout=10).read().decode()  # noqa: S310
    out: dict[str, dict[str, float]] = {"hits": {}, "misses": {}}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name in ("etter_cache_hits_total", "etter_cache_misses_total"):
                kind = "hits" if "hits" in sample.name else "misses"
                cache = sample.labels.get("cache", "?")
                out[kind][cache] = out[kind].get(cache, 0.0) + sample.value
    return out


def snapshot(st: Stack, app: Etter, generator_pid: int | None) -> Snapshot:
    table = process_table()
    cpu = {
        "app": tree_cpu(table, app.pid),
        "postgres": tree_cpu(table, st.pg_pid),
        "redis": tree_cpu(table, st.redis.process.pid if st.redis.process else -1),
        "generator": tree_cpu(table, generator_pid) if generator_pid else 0.0,
    }
    rows = json.loads(dataset.psql(st.database_url, STATEMENTS_SQL) or "null") or []
    return Snapshot(
        at=time.time(),
        cpu=cpu,
        machine=machine_cpu(),
        statements={str(r[0]): (int(r[1]), float(r[2]), r[3]) for r in rows},
        database=json.loads(dataset.psql(st.database_url, DATABASE_SQL)),
        cache=metrics(app.url),
    )


def statement_kind(query: str) -> str:
    head = query.strip().split(" ", 1)[0].upper()
    if head in ("BEGIN", "COMMIT", "ROLLBACK", "START", "SAVEPOINT", "RELEASE"):
        return "transaction control"
    if head in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
        return "query" if query.strip().upper() not in ("SELECT 1", "SELECT $1", ";") else "ping"
    if head in ("SET", "RESET", "SHOW", "DISCARD"):
        return "session"
    return "other"


def server_figures(a: Snapshot, b: Snapshot, requests: int) -> dict[str, Any]:
    wall = b.at - a.at
    cpu = {k: (b.cpu[k] - a.cpu[k]) / wall for k in a.cpu}
    busy = (b.machine[0] - a.machine[0]) / wall
    cores = os.cpu_count() or 1
    cpu["other"] = max(0.0, busy - sum(cpu.values()))
    cpu["idle"] = max(0.0, cores - busy)
    kinds: Counter[str] = Counter()
    top: list[tuple[int, float, str]] = []
    for qid, (calls, total_ms, query) in b.statements.items():
        before = a.statements.get(qid, (0, 0.0, query))
        delta = calls - before[0]
        if delta > 0:
            kinds[statement_kind(query)] += delta
            top.append((delta, total_ms - before[1], query))
    top.sort(reverse=True)
    xacts = (b.database[0] + b.database[1]) - (a.database[0] + a.database[1])
    hits = {c: b.cache["hits"].get(c, 0) - a.cache["hits"].get(c, 0) for c in b.cache["hits"]}
    misses = {
        c: b.cache["misses"].get(c, 0) - a.cache["misses"].get(c, 0) for c in b.cache["misses"]
    }
    caches = sorted(set(hits) | set(misses))
    per_cache = {
        c: {"hits": hits.get(c, 0), "misses": misses.get(c, 0)}
        for c in caches
        if c != "invalidation"
    }
    total_hits = sum(v["hits"] for v in per_cache.values())
    total_lookups = total_hits + sum(v["misses"] for v in per_cache.values())
    per = max(requests, 1)
    return {
        "window_s": wall,
        "requests": requests,
        "cpu_cores": cpu,
        "cpu_ms_per_request": {k: cpu[k] * wall * 1000 / per for k in ("app", "postgres", "redis")},
        "statements_per_request": {k: v / per for k, v in kinds.items()},
        "queries_per_request": kinds["query"] / per,
        "all_statements_per_request": sum(kinds.values()) / per,
        "transactions_per_request": xacts / per,
        # Connections PostgreSQL accepted in the window (pool churn), per 1,000 requests.
        "connections_per_1000_requests": 1000 * (b.database[6] - a.database[6]) / per,
        "cache": per_cache,
        "cache_hit_rate": total_hits / total_lookups if total_lookups else None,
        "top_statements": [
            {"calls": c, "per_request": c / per, "mean_ms": t / c if c else 0, "query": q}
            for c, t, q in top[:12]
        ],
    }


def access_log_figures(path: Path, start: float, end: float) -> dict[str, Any]:
    """Requests the server logged in [start, end]: count, statuses, bytes sent per route."""
    count, statuses = 0, Counter()
    sizes: dict[str, list[int]] = defaultdict(list)
    lo = datetime.fromtimestamp(start, UTC).isoformat()
    hi = datetime.fromtimestamp(end, UTC).isoformat()
    with path.open("rb") as lines:
        for raw in lines:
            if b'"event":"request"' not in raw.replace(b" ", b""):
                continue
            with contextlib.suppress(ValueError):
                event = json.loads(raw)
                stamp = str(event.get("timestamp", "")).replace("Z", "+00:00")
                if not lo <= stamp <= hi:
                    continue
                count += 1
                statuses[int(event["status"])] += 1
                route = re.sub(r"\{[^}]+\}", "{id}", event.get("route") or event["path"])
                name = f"{event['method']} {route}"
                sizes[name].append(int(event.get("response_bytes", 0)))
    every = [s for values in sizes.values() for s in values]
    return {
        "requests": count,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "bytes_per_response": sum(every) / len(every) if every else 0,
        "bytes_by_route": {k: sum(v) / len(v) for k, v in sorted(sizes.items())},
    }


# --- Locust --------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    users: int
    rate_per_user: float  # 0: think time 1-2 s
    hold_s: float
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    access: dict[str, Any] = field(default_factory=dict)
    generator_limited: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> dict[str, float]:
        return self.stats.get("Aggregated", {})


def read_stats(prefix: Path) -> dict[str, dict[str, float]]:
    rows = {}
    with Path(f"{prefix}_stats.csv").open() as handle:
        for row in csv.DictReader(handle):
            name = row["Name"] if row["Name"] == "Aggregated" else f"{row['Name']}"
            values = {}
            for key, value in row.items():
                if key in ("Type", "Name"):
                    continue
                with contextlib.suppress(ValueError, TypeError):
                    values[key] = float(value)
            rows[name] = values
    return rows


def read_history(prefix: Path) -> list[list[float]]:
    """Locust's per-second rows of the whole run, ramp included: [t, users, req/s, p50, p95,
    p99] (the percentiles of Locust's sliding window of the last seconds)."""
    rows = []
    with Path(f"{prefix}_stats_history.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated" or row["50%"] == "N/A":
                continue
            rows.append(
                [float(row[k]) for k in ("Timestamp", "User Count", "Requests/s", "50%", "95%")]
                + [float(row["99%"])]
            )
    return rows


def history_count(prefix: Path, at: float) -> int:
    """Locust's cumulative request count (since its reset) at wall time `at`."""
    best = 0
    with Path(f"{prefix}_stats_history.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated" and float(row["Timestamp"]) <= at:
                best = int(float(row["Total Request Count"]))
    return best


def run_locust(
    st: Stack,
    app: Etter,
    run: Run,
    data_path: Path,
    spawn_rate: float,
    html: bool = False,
    profile: Path | None = None,
) -> Run:
    prefix = OUT / run.name
    logfile = st.logs / f"locust-{run.name}.log"
    logfile.unlink(missing_ok=True)
    ramp = run.users / spawn_rate
    run_time = int(ramp + run.hold_s + 3)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "tests" / "load_test.py"),
        "--headless",
        "--host",
        app.url,
        "-u",
        str(run.users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{run_time}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--logfile",
        str(logfile),
        "--loglevel",
        "INFO",
        "--stop-timeout",
        "5",
    ]
    if run.name != "smoke":  # the figures are the hold; the smoke counts every request
        cmd.append("--reset-stats")
    if html:
        cmd += ["--html", str(OUT / f"{run.name}.html")]
    processes = env_int("LOADTEST_PROCESSES", 1)
    if processes > 1:
        cmd += ["--processes", str(processes)]
    env = {
        **os.environ,
        "LOADTEST_DATA": str(data_path),
        "LOADTEST_RATE_PER_USER": str(run.rate_per_user or ""),
        "LOADTEST_PROCESSES": str(processes),
        "LOADTEST_REQUIRE_ALL_TASKS": "1" if run.name == "smoke" else "",
    }
    log(
        f"{run.name}: {run.users} users, "
        + (f"{run.rate_per_user:.3g}/s each" if run.rate_per_user else "think 1-2 s")
        + f", hold {run.hold_s:.0f} s"
    )
    with (st.logs / f"locust-{run.name}.out").open("wb") as output:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + ramp + 120
        while time.monotonic() < deadline:
            if logfile.exists() and "All users spawned" in logfile.read_text(errors="replace"):
                break
            if process.poll() is not None:
                raise RuntimeError(f"locust exited early; see {logfile}")
            time.sleep(0.25)
        time.sleep(2.0)
        first = snapshot(st, app, process.pid)
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(app.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",  # only the thread holding the GIL: where the CPU goes
                    "--duration",
                    str(int(max(5, run.hold_s - 8))),
                    "--rate",
                    "99",
                    "--format",
                    "raw",
                    "--output",
                    str(profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(st.logs / "py-spy.log").open("wb"),
            )
        time.sleep(max(1.0, run.hold_s - 3.0))
        second = snapshot(st, app, process.pid)
        if spy is not None:
            spy.wait(60)
        process.wait(run_time + 60)
    finally:
        if process.poll() is None:
            process.kill()
    run.extra["exit_code"] = process.returncode
    run.extra["locust_errors"] = [
        line for line in logfile.read_text(errors="replace").splitlines() if "ERROR" in line
    ][-5:]
    run.stats = read_stats(prefix)
    run.extra["history"] = read_history(prefix)
    counted = history_count(prefix, second.at) - history_count(prefix, first.at)
    run.access = access_log_figures(app.access_log, first.at, second.at)
    # Per request: the server's own count of the window (its access log, timestamped to the
    # microsecond) rather than Locust's, whose history has a one-second grain.
    run.server = server_figures(first, second, run.access["requests"] or counted)
    run.server["locust_requests"] = counted
    # One Locust process is one core at most (gevent): near it, the generator is the limit.
    run.generator_limited = run.server["cpu_cores"]["generator"] >= 0.85 * processes
    run.extra["processes"] = processes
    t = run.total
    log(
        f"{run.name}: {t.get('Requests/s', 0):.0f} req/s, p50 {t.get('50%', 0):.0f} ms, "
        f"p95 {t.get('95%', 0):.0f} ms, failures {t.get('Failure Count', 0):.0f}/"
        f"{t.get('Request Count', 0):.0f}; app {run.server['cpu_cores']['app']:.2f} cores, "
        f"generator {run.server['cpu_cores']['generator']:.2f}; "
        f"hit rate {run.server['cache_hit_rate'] or 0:.1%}; "
        f"queries/request {run.server['queries_per_request']:.2f}"
    )
    return run


# --- parts ---------------------------------------------------------------------------------------


def workers_default() -> int:
    return env_int("LOADTEST_WORKERS", 2)


def main_run(st: Stack, data_path: Path, users: int, hold: float) -> Run:
    with etter(st, workers_default(), {}, "main") as app:
        run = Run("main", users, 0.0, hold)
        run_locust(st, app, run, data_path, spawn_rate=max(10, users / 40), html=True,
                   profile=OUT / "profile.txt")  # fmt: skip
        run.extra["profile"] = summarize_profile(OUT / "profile.txt")
        return run


def sweep(st: Stack, data_path: Path, users: int, hold: float) -> dict[str, Any]:
    """Offered load stepped up by `constant_throughput` per user until p95 > target twice."""
    rates = [
        int(r)
        for r in os.environ.get(
            "LOADTEST_SWEEP_RATES", "100,200,300,400,600,800,1000,1250,1500,2000"
        ).split(",")
    ]
    points: list[Run] = []
    over = 0
    with etter(st, workers_default(), {}, "sweep") as app:
        for rate in rates:
            run = Run(f"sweep-{rate}", users, rate / users, hold)
            run_locust(st, app, run, data_path, spawn_rate=max(10, users / 10))
            run.extra["offered"] = rate
            points.append(run)
            ok = (
                run.total.get("95%", 1e9) <= P95_TARGET_MS
                and run.total.get("Failure Count", 1) == 0
            )
            over = 0 if ok else over + 1
            if over >= 2:
                break
        good = [
            p
            for p in points
            if p.total.get("95%", 1e9) <= P95_TARGET_MS
            and p.total.get("Failure Count", 1) == 0
            and p.total.get("Requests/s", 0) >= 0.9 * p.extra["offered"]
        ]
        best = max(good, key=lambda p: p.total["Requests/s"]) if good else None
        cross = wrk_crosscheck(st, app, data_path, best.extra["offered"] if best else rates[0])
    return {
        "users": users,
        "points": [asdict(p) for p in points],
        "capacity_rps": best.total["Requests/s"] if best else None,
        "capacity_offered": best.extra["offered"] if best else None,
        "crosscheck": cross,
    }


WRK_SCRIPT = """
local paths = {%(paths)s}
local tokens = {%(tokens)s}
local i = 0
request = function()
  i = i + 1
  local k = (i %% #paths) + 1
  return wrk.format("GET", paths[k],
    {["Authorization"] = "Bearer " .. tokens[k], ["Accept-Encoding"] = "gzip"})
end
delay = function() return %(delay)d end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_JSON [%%d, %%f, %%d, %%d, %%f, %%f, %%f, %%f]\\n",
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


def wrk_crosscheck(st: Stack, app: Etter, data_path: Path, rate: int) -> dict[str, Any]:
    """wrk pacing GET /workflows/{id} (the mix's most frequent request) at `rate` req/s: each
    connection waits rate-derived ms after every response. Tokens rotate over the mix's member
    accounts so no account exceeds its read quota; workflows drawn as in the mix."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk not installed (apt-get install wrk; make loadtest-deps)"}
    data = json.loads(data_path.read_text())
    rng = random.Random(7)
    members = data["accounts"]["member"]
    pairs = []
    for _ in range(4000):
        account = rng.choice(members)
        workflows = data["companies"][str(account["company_id"])]["workflows"]
        ids, weights = zip(*workflows, strict=True)
        pairs.append((f"/api/v1/workflows/{rng.choices(ids, weights)[0]}", account["token"]))
    # About 150 ms between a connection's requests: paced, not a closed loop at full speed.
    connections = max(2, min(400, int(rate * 0.15)))
    delay_ms = int(connections * 1000 / max(rate, 1))
    script = st.logs / "wrk-pacing.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "paths": ",".join(f'"{p}"' for p, _ in pairs),
            "tokens": ",".join(f'"{t}"' for _, t in pairs),
            "delay": delay_ms,
        }
    )
    duration = env_int("LOADTEST_WRK_SECONDS", 20)
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            app.url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    for line in result.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            keys = ("requests", "seconds", "errors", "non2xx", "p50", "p95", "p99", "mean")
            figures = dict(zip(keys, json.loads(line.removeprefix("WRK_JSON ")), strict=True))
            figures["rps"] = figures["requests"] / figures["seconds"]
            figures["offered"] = rate
            figures["connections"] = connections
            figures["delay_ms"] = delay_ms
            return figures
    return {"skipped": f"wrk gave no result: {result.stderr[-300:]}"}


def migration_0002(st: Stack, direction: str) -> float:
    """Run migration 0002's own downgrade or upgrade (the indexes only; the version table and
    any later migration stay as they are), in a child process; its wall time."""
    code = (
        "import asyncio, importlib.util, sys, pathlib\n"
        "from alembic.operations import Operations\n"
        "from alembic.runtime.migration import MigrationContext\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        "path = next(pathlib.Path('alembic/versions').glob('0002_*.py'))\n"
        "spec = importlib.util.spec_from_file_location('m0002', path)\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "def work(conn):\n"
        "    ctx = MigrationContext.configure(conn)\n"
        "    with Operations.context(ctx):\n"
        f"        m.{direction}()\n"
        "async def main():\n"
        f"    engine = create_async_engine({st.database_url.replace('postgresql://', 'postgresql+asyncpg://')!r})\n"
        "    async with engine.connect() as conn:\n"
        "        await conn.run_sync(work)\n"
        "        await conn.commit()\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    began = time.perf_counter()
    with (st.logs / "migration-0002.log").open("ab") as output:
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            check=True,
            stdout=output,
            stderr=output,
            timeout=1800,
        )
    dataset.psql(st.database_url, "ANALYZE")
    return time.perf_counter() - began


def phases(st: Stack, data_path: Path, users: int, hold: float) -> list[dict[str, Any]]:
    n = workers_default()
    variants: list[tuple[str, str, int, dict[str, str]]] = [
        ("all phases on", "baseline", n, {}),
        ("no performance indexes (0002 downgraded)", "no-indexes", n, {}),
        ("cache off (CACHE_ENABLED=false)", "no-cache", n, {"CACHE_ENABLED": "false"}),
        ("gzip off (GZIP_MIN_SIZE above any body)", "no-gzip", n, {"GZIP_MIN_SIZE": GZIP_OFF}),
        ("1 worker", "one-worker", 1, {}),
    ]
    if n == 1:
        variants.pop()
    out = []
    for label, key, workers, overrides in variants:
        if key == "no-indexes":
            seconds = migration_0002(st, "downgrade")
            log(f"migration 0002 downgraded in {seconds:.0f} s")
        # Every variant starts from a cold cache.
        subprocess.run(
            ["redis-cli", "-p", str(st.redis.port), "FLUSHALL"], capture_output=True, check=False
        )
        try:
            with etter(st, workers, overrides, f"phase-{key}") as app:
                run = Run(f"phase-{key}", users, 0.0, hold)
                run_locust(st, app, run, data_path, spawn_rate=max(10, users / 10))
        finally:
            if key == "no-indexes":
                seconds = migration_0002(st, "upgrade")
                log(f"migration 0002 upgraded again in {seconds:.0f} s")
        item = asdict(run)
        item.update(label=label, key=key, workers=workers)
        out.append(item)
    return out


# --- the profile ---------------------------------------------------------------------------------

PACKAGES = [
    ("sqlalchemy", "SQLAlchemy"),
    ("asyncpg", "asyncpg"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("pydantic", "pydantic"),
    ("redis", "redis-py"),
    ("jwt", "PyJWT"),
    ("structlog", "structlog"),
    ("uvicorn", "uvicorn"),
    ("h11", "uvicorn"),
    ("httptools", "uvicorn"),
    ("limits", "limits"),
    ("prometheus_client", "prometheus_client"),
    ("orjson", "orjson"),
    ("json", "json"),
    ("gzip", "gzip/zlib"),
    ("zlib", "gzip/zlib"),
    ("asyncio", "asyncio"),
    ("uvloop", "asyncio"),
    ("anyio", "anyio"),
    ("logging", "logging"),
]
PROJECT = ("api/", "common/", "middleware/", "services/", "settings/", "schemas/", "models/")


def _frame_owner(frame: str) -> str:
    location = frame[frame.rfind("(") + 1 :] if "(" in frame else frame
    for project in PROJECT:  # py-spy names the project's files relative to its root
        if location.startswith(project):
            return "Etter (" + project.rstrip("/") + ")"
    for key, label in PACKAGES:
        if f"/{key}/" in location or f"{key}.py" in location or location.startswith(key):
            return label
    return "other (Python, stdlib)"


def summarize_profile(path: Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: self time by package, the top functions by self time,
    and the Etter frames by inclusive time."""
    if not path.exists():
        return {}
    samples = 0
    by_package: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages_inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += n
        top = frames[-1]
        by_package[_frame_owner(top)] += n
        leaf[top] += n
        for owner in {_frame_owner(frame) for frame in frames[1:]}:
            packages_inclusive[owner] += n
        seen = set()
        for frame in frames:
            owner = _frame_owner(frame)
            name = frame.split(" (", 1)[0] + " (" + owner + ")"
            if owner.startswith("Etter") and name not in seen:
                inclusive[name] += n
                seen.add(name)
    if not samples:
        return {}
    pct = lambda n: round(100 * n / samples, 1)  # noqa: E731
    return {
        "samples": samples,
        "self_by_package": [(k, pct(v)) for k, v in by_package.most_common(14)],
        "inclusive_by_package": [
            (k, pct(v))
            for k, v in packages_inclusive.most_common(20)
            if not k.startswith(("Etter (middleware)", "asyncio", "uvicorn", "other"))
        ][:12],
        "top_self": [(k, pct(v)) for k, v in leaf.most_common(15)],
        "etter_inclusive": [(k, pct(v)) for k, v in inclusive.most_common(15)],
    }


# --- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    def version(cmd: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        return "unknown"

    return {
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model(),
        "memory": memory_total(),
        "PostgreSQL": version([str(servers.postgres_bin_dir() / "postgres"), "--version"]),
        "Redis": version(["redis-server", "--version"]).split(" sha=")[0],
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
        "load average at the start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


# --- entry ---------------------------------------------------------------------------------------


def smoke() -> int:
    """50 users for 20 s on `small`: every task of the mix ran, and nothing failed (the mix
    itself checks the tasks when LOADTEST_REQUIRE_ALL_TASKS is set, and exits non-zero)."""
    users, hold = env_int("LOADTEST_USERS", 50), env_int("LOADTEST_HOLD", 20)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="etter-smoke-") as tmp:
        logs = Path(tmp)
        with stack(os.environ.get("LOADTEST_SCALE", "small"), logs) as st:
            data_path = logs / "data.json"
            prepare_data(st, users, data_path)
            with etter(st, workers_default(), {}, "smoke") as app:
                # Faster pacing than a person, so every task (the rare writes too) runs in 20 s.
                run = Run("smoke", users, 2.0, hold)
                run_locust(st, app, run, data_path, spawn_rate=25)
            problems = []
            failures = int(run.total.get("Failure Count", 0))
            if failures:
                problems.append(f"{failures} failed requests: see {OUT / 'smoke_failures.csv'}")
                with contextlib.suppress(OSError):
                    sys.stderr.write(Path(f"{OUT / 'smoke'}_failures.csv").read_text())
            if run.extra["exit_code"] != 0:
                problems.append(
                    f"locust exited {run.extra['exit_code']}: {run.extra.get('locust_errors')}"
                )
            server_errors = {k: v for k, v in run.access.get("statuses", {}).items() if k >= "500"}
            if server_errors:
                problems.append(f"server logged 5xx: {server_errors}")
            if problems:
                for problem in problems:
                    log(f"SMOKE FAILED: {problem}")
                shutil.copytree(logs, OUT / "smoke-logs", dirs_exist_ok=True)
                return 1
            log(
                f"smoke passed: {int(run.total['Request Count'])} requests, "
                "every task of the mix, 0 failures"
            )
            return 0


def full(parts: list[str]) -> int:
    from tests.performance.loadtest_report import write_report

    users = env_int("LOADTEST_USERS", 1000)
    hold = env_int("LOADTEST_HOLD", 60)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    results["machine"] = machine()
    results["started"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["workers"] = workers_default()
    for part in parts:  # a part's files of an earlier run (sweep steps differ between runs)
        prefix = "phase-" if part == "phases" else part
        for stale in [*OUT.glob(f"{prefix}*.csv"), *OUT.glob(f"{prefix}*.html")]:
            stale.unlink()
    with stack(os.environ.get("LOADTEST_SCALE", "medium"), logs) as st:
        data_path = OUT / "data.json"
        data = prepare_data(st, max(users, env_int("LOADTEST_SWEEP_USERS", 400)), data_path)
        results["scale"] = st.scale
        results["accounts"] = {k: len(v) for k, v in data["accounts"].items()}
        if "main" in parts:
            results["main"] = asdict(main_run(st, data_path, users, hold))
        if "sweep" in parts:
            results["sweep"] = sweep(st, data_path, env_int("LOADTEST_SWEEP_USERS", 400),
                                     env_int("LOADTEST_SWEEP_HOLD", 30))  # fmt: skip
        if "phases" in parts:
            results["phases"] = phases(st, data_path, env_int("LOADTEST_PHASE_USERS", 500),
                                       env_int("LOADTEST_PHASE_HOLD", 30))  # fmt: skip
    results["machine"]["load average at the end"] = " ".join(
        Path("/proc/loadavg").read_text().split()[:3]
    )
    data_path.unlink(missing_ok=True)  # holds live tokens
    RESULTS.write_text(json.dumps(results, indent=1, default=str))
    write_report(results)
    log(f"results: {RESULTS}; report: tests/performance_report.md")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", default="all",
                        choices=["all", "main", "sweep", "phases", "report", "smoke"])  # fmt: skip
    args = parser.parse_args()
    if args.part == "smoke":
        return smoke()
    if args.part == "report":
        from tests.performance.loadtest_report import write_report

        write_report(json.loads(RESULTS.read_text()))
        return 0
    parts = ["main", "sweep", "phases"] if args.part == "all" else [args.part]
    return full(parts)


if __name__ == "__main__":
    sys.exit(main())
