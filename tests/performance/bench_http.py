"""`make bench-http`: Etter's hot endpoints against a bare ASGI app doing the same work.

A benchmark, not a test: it measures and reports, it asserts nothing about time in the suite.

1. Starts a throwaway PostgreSQL and Redis (tests/servers.py) and loads the `medium` data set:
   from a pg_dump cached under `.data/` (keyed by the bulk seeder's and the migrations' source
   and the PostgreSQL version), or, the first time, with the real tools (`manage.py migrate`,
   `manage.py seed --scale medium`), then dumped for the next run.
2. Serves, on the same database and Redis, each with 2 uvicorn workers (uvloop, httptools):
   - Etter as production runs it (`ENVIRONMENT=production`, JSON access log on, rate limits on
     with the read quota raised above what the generator sends, security headers, gzip,
     the pool settings' defaults);
   - the bare app (tests/performance/bench_http_app.py): pure ASGI, asyncpg, PyJWT.
3. Drives both with `wrk` (1 thread, `--connections` keep-alive connections, `--duration`
   seconds) as the chro of the biggest tenant, endpoint by endpoint, in `--rounds` interleaved
   rounds (the app that goes first alternates), after a short warm-up of each.
4. Writes req/s, p50/p99, Etter/bare per endpoint and the servers' CPU per request (from
   /proc, every process of each server) with the machine's description into its section of
   tests/performance_report.md, and the raw figures to `.data/bench-http-last.json`.

The exit status is 1 when an endpoint stays under its target share of the bare app's
throughput (issue 9: 50% for /auth/me and the cached reads, 40% for the pages of 20).

    python -m tests.performance.bench_http [--rounds 2] [--duration 8] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis

from common.security import create_access_token
from seeding import bulk as bulk_seeding
from services import simulation_model
from settings.config import Settings
from tests import servers
from tests.performance.bench_middleware import cpu_seconds, machine, machine_lines
from tests.performance.report import write_section

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "performance_report.md"
DATA_DIR = ROOT / ".data"
START_MARK = "<!-- bench-http:start -->"
END_MARK = "<!-- bench-http:end -->"
SECRET = "bench-http-secret-key-that-is-long-enough-0123456789abcdef"
HOST = "127.0.0.1"
BARE_PREFIX = "bench:bare:"
RATE_LIMIT_ABOVE_GENERATOR = "1000000000/minute"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    target: float  # the share of the bare app's throughput Etter must keep
    cached: bool = False


@dataclass
class Run:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: int


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    runs: dict[str, list[Run]] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[bench-http {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the data -------------------------------------------------------------------------------


def dump_key(pg_version: str) -> str:
    """What the cached dump depends on: the loader's code, the migrations, the server."""
    digest = hashlib.sha256(pg_version.encode())
    sources = [Path(bulk_seeding.__file__), Path(simulation_model.__file__)]
    sources += sorted((ROOT / "alembic" / "versions").glob("*.py"))
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def run_logged(
    command: list[str], logs: Path, name: str, env: dict[str, str] | None = None
) -> None:
    with (logs / f"{name}.log").open("wb") as output:
        subprocess.run(
            command, cwd=ROOT, env=env, stdout=output, stderr=output, check=True, timeout=900
        )


def load_medium(url: str, logs: Path) -> str:
    """The medium data set in `url`'s database; how it got there."""
    bindir = servers.postgres_bin_dir()
    pg_version = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dump = DATA_DIR / f"bench-http-medium-{dump_key(pg_version)}.dump"
    began = time.perf_counter()
    if dump.exists():
        log(f"restoring {dump.relative_to(ROOT)}")
        run_logged(
            [str(bindir / "pg_restore"), "--no-owner", "-j", "2", "-d", url, str(dump)],
            logs,
            "pg_restore",
        )
        run_logged([str(bindir / "vacuumdb"), "--analyze-only", "-q", url], logs, "analyze")
        return f"restored from the cached dump in {time.perf_counter() - began:.0f} s"
    log("no cached dump: migrating and seeding the medium scale (about a minute)")
    env = {**os.environ, "DATABASE_URL": url, "ENVIRONMENT": "development"}
    env.pop("REDIS_URL", None)
    run_logged([sys.executable, "manage.py", "migrate"], logs, "migrate", env)
    run_logged([sys.executable, "manage.py", "seed", "--scale", "medium"], logs, "seed", env)
    DATA_DIR.mkdir(exist_ok=True)
    for stale in DATA_DIR.glob("bench-http-medium-*.dump"):
        stale.unlink()
    partial = dump.with_suffix(".partial")
    run_logged([str(bindir / "pg_dump"), "-Fc", "-f", str(partial), url], logs, "pg_dump")
    partial.rename(dump)
    return (
        f"loaded with `manage.py seed --scale medium` and dumped to .data/ in "
        f"{time.perf_counter() - began:.0f} s"
    )


@dataclass
class Caller:
    user_id: int
    company_id: int
    token: str


async def read_caller(url: str) -> tuple[Caller, str]:
    """The chro of the biggest tenant (the bulk seeder's marker company), and the server."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT u.id, u.company_id FROM users u JOIN companies c ON c.id = u.company_id "
            "WHERE c.name = $1 AND u.role = 'chro' AND u.is_active ORDER BY u.id LIMIT 1",
            bulk_seeding.MARKER_COMPANY,
        )
        server = await connection.fetchval("SELECT version()")
    finally:
        await connection.close()
    token = create_access_token(Settings(_env_file=None, secret_key=SECRET), row["id"]).token
    return Caller(row["id"], row["company_id"], token), server.split(" on ")[0]


# --- the servers ----------------------------------------------------------------------------


def uvicorn_command(target: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--log-level",
        "warning",
    ]


def start(server: Server, logs: Path) -> None:
    server.port = servers.free_port()
    command = uvicorn_command(server.command[0], server.port)
    with (logs / f"{server.name}.log").open("wb") as output:
        server.process = subprocess.Popen(
            command, cwd=ROOT, env=server.env, stdout=output, stderr=output
        )
    servers._wait_for_port(server.port, 60, f"uvicorn ({server.name})")


def stop(server: Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's supervisor and its workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                pending += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def get(port: int, path: str, token: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- wrk ------------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def milliseconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def parse_wrk(output: str) -> tuple[float, int, float, float, int]:
    """req/s, requests, p50 ms, p99 ms, errors (non-2xx answers and socket errors)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p50 = milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(found.group(1))
    if found := re.search(r"Socket errors: (.*)", output):
        errors += sum(int(n) for n in re.findall(r"\d+", found.group(1)))
    return rps, requests, p50, p99, errors


def wrk(server: Server, endpoint: Endpoint, token: str, args: argparse.Namespace, seconds: float):
    assert server.process is not None
    command = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {token}",
        f"http://{HOST}:{server.port}{endpoint.path}",
    ]
    before = tree_cpu_seconds(server.process.pid)
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    used = tree_cpu_seconds(server.process.pid) - before
    rps, requests, p50, p99, errors = parse_wrk(output)
    return Run(rps, requests, p50, p99, used / requests * 1e6 if requests else 0.0, errors)


# --- the profile ----------------------------------------------------------------------------

ROUTE_FRAME = "request_response.<locals>.app (fastapi/routing.py)"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = FRAME.match(frame)
    if match is None:
        return frame
    where = match["file"]
    for marker in ("site-packages/", str(ROOT) + "/"):
        where = where.split(marker, 1)[-1]
    return f"{match['function']} ({where})"


def profile(server: Server, endpoint: Endpoint, token: str, args: argparse.Namespace) -> str:
    """py-spy on one worker while wrk drives the endpoint: the top frames, as a table."""
    assert server.process is not None
    worker = process_tree(server.process.pid)[1]
    DATA_DIR.mkdir(exist_ok=True)
    raw = DATA_DIR / f"bench-http-profile-{endpoint.name}.txt"  # collapsed stacks, kept
    spy = subprocess.Popen(
        [
            shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy",
            *("record", "--pid", str(worker), "--duration", f"{args.profile:g}"),
            *("--rate", "200", "--format", "raw", "--nonblocking", "--output", str(raw)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk(server, endpoint, token, args, args.profile)
    spy.wait(60)
    lines = raw.read_text().splitlines() if raw.exists() else []
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return f"(py-spy recorded nothing for {endpoint.path}: it needs root or ptrace rights)"
    # Only what runs inside the route's handler: the server, the middleware chain and the
    # router around it are on nearly every sample and say nothing.
    ceiling = inclusive.get(ROUTE_FRAME, total)
    rows = [
        f"| {name} | {count / total:.1%} | {own.get(name, 0) / total:.1%} |"
        for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if count < ceiling
    ][: args.profile_top]
    top_self = sorted(own.items(), key=lambda kv: -kv[1])[:8]
    rows.append(
        "| *most self time:* "
        + "; ".join(f"{name} {count / total:.1%}" for name, count in top_self)
        + " | | |"
    )
    return "\n".join(
        [
            f"`GET {endpoint.path}`, {total:,} samples of one worker, "
            f"{ceiling / total:.0%} of them in the route's handler:",
            "",
            "| frame | inclusive | self |",
            "| --- | ---: | ---: |",
            *rows,
        ]
    )


# --- the report -----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratio(etter: Server, bare: Server, endpoint: Endpoint) -> float:
    pairs = zip(etter.runs[endpoint.name], bare.runs[endpoint.name], strict=True)
    return statistics.median(e.rps / b.rps for e, b in pairs)


def report(
    endpoints: list[Endpoint],
    etter: Server,
    bare: Server,
    args: argparse.Namespace,
    context: dict[str, str],
) -> tuple[str, bool]:
    info = machine()
    rows, passed = [], True
    for endpoint in endpoints:
        e, b = etter.runs[endpoint.name], bare.runs[endpoint.name]
        share = ratio(etter, bare, endpoint)
        met = share >= endpoint.target
        passed &= met
        rows.append(
            f"| `GET {endpoint.path}` | {median([r.rps for r in e]):,.0f} | "
            f"{median([r.rps for r in b]):,.0f} | **{share:.0%}** (≥ {endpoint.target:.0%}: "
            f"{'yes' if met else 'no'}) | {median([r.p50_ms for r in e]):.1f} / "
            f"{median([r.p99_ms for r in e]):.1f} | {median([r.p50_ms for r in b]):.1f} / "
            f"{median([r.p99_ms for r in b]):.1f} | {median([r.cpu_us for r in e]):,.0f} | "
            f"{median([r.cpu_us for r in b]):,.0f} |"
        )
    lines = [
        START_MARK,
        "## Etter against a bare ASGI app (`make bench-http`)",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average at the start "
        f"{context['load_start']}, at the end {context['load_end']}.",
        "",
        *machine_lines(
            info, also=f"{context['postgres']}; {context['redis']}; wrk {context['wrk']}"
        ),
        "",
        f"Data: the `medium` scale ({context['data']}). Caller: the chro of the biggest tenant "
        "(Bulk Company 0001), one token for every request.",
        "",
        "**Method.** Both servers run on the same PostgreSQL and Redis (tests/servers.py: "
        "fsync off), each as `uvicorn --workers 2 --loop uvloop --http httptools`. Etter runs "
        "as production does (`ENVIRONMENT=production`, JSON access log to a file, rate "
        f"limiting on Redis with the read quota raised to {RATE_LIMIT_ABOVE_GENERATOR} so the "
        "generator is never refused, security headers, gzip negotiation, tenancy, the pool "
        "settings' defaults). The bare app (tests/performance/bench_http_app.py, pure ASGI, "
        "asyncpg pool, PyJWT, no framework) verifies the same token on every request, reads the "
        "caller's row for `/auth/me`, reads the caller's row then the count and the page of 20 "
        "for the two lists, and answers the cached details with one Redis GET of Etter's own "
        "body. `wrk -t1 -c"
        f"{args.connections} -d{args.duration:g}s --latency` per endpoint and server, "
        f"{args.rounds} interleaved rounds (which server goes first alternates), after a "
        f"{args.warmup:g} s warm-up of each; medians of the rounds. The ratio is the median of "
        "the per-round ratios Etter/bare of req/s. CPU per request is the user + system time of "
        "every process of the server (supervisor and workers, from /proc) over the wrk run, "
        "divided by the requests answered. wrk sends no `Accept-Encoding`, so neither body is "
        "compressed (Etter still runs its gzip middleware). The machine is shared: absolute "
        "req/s move with what else runs; the interleaved ratios and the CPU per request are "
        "the figures to compare.",
        "",
        "| endpoint | Etter req/s | bare req/s | Etter / bare | Etter p50 / p99 ms | "
        "bare p50 / p99 ms | Etter CPU µs/req | bare CPU µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Targets (issue 9) {'all met' if passed else '**not all met**'}. Errors (non-2xx "
        f"answers and socket errors): Etter {sum(r.errors for v in etter.runs.values() for r in v)}"
        f", bare {sum(r.errors for v in bare.runs.values() for r in v)}.",
    ]
    if context.get("profiles"):
        lines += [
            "",
            f"**Profile** (`--profile {args.profile:g}`): `py-spy record --rate 200 --nonblocking` "
            "on one Etter worker while wrk drives the endpoint; the frames on the most samples "
            "(inclusive: the frame anywhere on the stack; self: the frame running), the event "
            "loop's and the server's outer frames left out.",
            "",
            context["profiles"],
        ]
    lines.append(END_MARK)
    return "\n".join(lines) + "\n", passed


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running(group: list[Server], logs: Path) -> Iterator[None]:
    try:
        for server in group:
            start(server, logs)
        yield
    finally:
        for server in group:
            stop(server)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument(
        "--profile", type=float, default=0, help="seconds of py-spy per endpoint (root)"
    )
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--only", nargs="*", help="endpoint names (me, workflows, ...)")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `make bench-deps` installs it (apt-get install wrk)")

    context = {"load_start": load_average()}
    logs = Path(tempfile.mkdtemp(prefix="etter-bench-http-"))
    with servers.postgres_server() as pg_url, servers.redis_server() as redis_server:
        context["data"] = load_medium(pg_url, logs)
        import asyncio

        caller, context["postgres"] = asyncio.run(read_caller(pg_url))
        cache = redis.Redis.from_url(redis_server.url)
        context["redis"] = "Redis " + str(cache.info("server")["redis_version"])
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        context["wrk"] = (re.findall(r"wrk (\S+)", version.stdout + version.stderr) or ["?"])[0]
        endpoints = [
            Endpoint("me", "/api/v1/auth/me", 0.50),
            Endpoint("workflows", "/api/v1/workflows?page_size=20", 0.40),
            Endpoint("users", "/api/v1/users?page_size=20", 0.40),
            Endpoint("company", f"/api/v1/companies/{caller.company_id}", 0.50, cached=True),
            Endpoint("dashboard", "/api/v1/chro/dashboard", 0.50, cached=True),
        ]
        if args.only:
            endpoints = [e for e in endpoints if e.name in args.only]
        etter = Server(
            "etter",
            ["settings.server:app"],
            {
                **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "REDIS_"))},
                "ENVIRONMENT": "production",
                "SECRET_KEY": SECRET,
                "DATABASE_URL": pg_url,
                "REDIS_URL": redis_server.url,
                "LOG_JSON": "true",
                "LOG_LEVEL": "INFO",
                "SEED_DEMO_DATA": "false",
                "STORAGE_DIR": str(logs / "storage"),
                "RATE_LIMIT_READ": RATE_LIMIT_ABOVE_GENERATOR,
            },
        )
        bare = Server(
            "bare",
            ["tests.performance.bench_http_app:app"],
            {
                **os.environ,
                "SECRET_KEY": SECRET,
                "BARE_DATABASE_URL": pg_url,
                "BARE_REDIS_URL": redis_server.url,
            },
        )
        with running([etter, bare], logs):
            for endpoint in endpoints:
                status, body = get(etter.port, endpoint.path, caller.token)
                if status != 200:
                    raise SystemExit(f"Etter answered {status} to {endpoint.path}: {body[:300]!r}")
                if endpoint.cached:  # the bare app serves Etter's own cached body
                    path = endpoint.path.split("?")[0]
                    cache.set(BARE_PREFIX + path, get(etter.port, endpoint.path, caller.token)[1])
                status, body = get(bare.port, endpoint.path, caller.token)
                if status != 200:
                    raise SystemExit(f"bare answered {status} to {endpoint.path}: {body[:300]!r}")
            log("warming up")
            for endpoint in endpoints:
                for server in (etter, bare):
                    wrk(server, endpoint, caller.token, args, args.warmup)
            for number in range(args.rounds):
                order = (etter, bare) if number % 2 == 0 else (bare, etter)
                for endpoint in endpoints:
                    for server in order:
                        run = wrk(server, endpoint, caller.token, args, args.duration)
                        server.runs.setdefault(endpoint.name, []).append(run)
                        log(
                            f"round {number + 1}/{args.rounds} {server.name:<5} "
                            f"{endpoint.path:<40} {run.rps:>8,.0f} req/s "
                            f"p99 {run.p99_ms:6.1f} ms  {run.cpu_us:6,.0f} µs CPU/req"
                            + (f"  {run.errors} errors" if run.errors else "")
                        )
            if args.profile:
                log("profiling")
                context["profiles"] = "\n\n".join(
                    profile(etter, endpoint, caller.token, args) for endpoint in endpoints
                )
        cache.close()
    context["load_end"] = load_average()
    if not args.keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        log(f"logs kept in {logs}")
    section, passed = report(endpoints, etter, bare, args, context)
    DATA_DIR.mkdir(exist_ok=True)
    (DATA_DIR / "bench-http-last.json").write_text(
        json.dumps(
            {s.name: {k: [asdict(r) for r in v] for k, v in s.runs.items()} for s in (etter, bare)},
            indent=1,
        )
    )
    print(section)
    errors = any(r.errors for s in (etter, bare) for v in s.runs.values() for r in v)
    if not args.no_report:
        write_section(REPORT, START_MARK, END_MARK, section)
        log(f"written to {REPORT.relative_to(ROOT)}")
    return 0 if passed and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
