"""`make bench-middleware`: what Etter's middleware stack costs, measured against the bare app.

In one run, on loopback, with the same trivial endpoint (tests/performance/bench_apps.py):
- `bare`: a FastAPI app with only that route;
- `full (memory)`: Etter's app as the embedded default runs it, rate-limit counters in memory;
- `full (Redis)`: Etter's app as production runs it, rate-limit counters in Redis (only when a
  `redis-server` binary is available; the benchmark starts its own).

Each app is served by one uvicorn worker (uvloop, httptools) pinned to one core; a load
generator in another process, pinned to the other core, keeps `--connections` keep-alive
connections busy for `--duration` seconds after a warm-up, in `--rounds` interleaved rounds.
The full stack runs as in production: JSON access log on (to a file), a bearer token on every
request (checked by the rate limiter), gzip negotiated. The figures, with the machine's
description, replace this benchmark's section of tests/performance_report.md. The exit status
is 1 when the stack keeps less than (1 - `--max-overhead`) of the bare app's throughput (as
derived from the server's CPU time per request, which other work on the machine disturbs far
less than the request rate).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from common.security import create_access_token
from settings.config import Settings
from tests import servers
from tests.performance.bench_apps import PING_PATH
from tests.performance.layer_costs import measure as measure_layers
from tests.performance.loadgen import LoadResult, run_load_in_process
from tests.performance.report import cpu_model, memory_total, write_section

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "performance_report.md"
START_MARK = "<!-- bench-middleware:start -->"
END_MARK = "<!-- bench-middleware:end -->"
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    name: str
    factory: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine() -> dict[str, str]:
    model, memory = cpu_model(), memory_total()
    return {
        "nproc": str(os.cpu_count()),
        "CPU": model,
        "memory": memory,
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
        "packages": ", ".join(
            f"{name} {version(name)}"
            for name in ("fastapi", "starlette", "uvicorn", "structlog", "limits", "redis")
        ),
    }


def machine_lines(info: dict[str, str], also: str = "", packages_also: str = "") -> list[str]:
    """The report's two lines naming the machine and the packages measured."""
    described = "; ".join(f"{key} {value}" for key, value in info.items() if key != "packages")
    return [
        f"Machine: {described}{'; ' + also if also else ''}.",
        f"Packages: {info['packages']}{', ' + packages_also if packages_also else ''}.",
    ]


def variant_row(variant: Variant, base: Variant, percent: str = ".0%") -> str:
    """One table row: a variant's median req/s, each round's, CPU per request, and both
    ratios against `base`."""
    return (
        f"| {variant.name} | {statistics.median(variant.rps):,.0f} | "
        f"{', '.join(f'{r:,.0f}' for r in variant.rps)} | "
        f"{statistics.median(variant.cpu_us):,.0f} | "
        f"{rps_ratio(variant, base):{percent}} | {cpu_ratio(variant, base):{percent}} |"
    )


def pin(pid: int, cpu: int) -> None:
    if (os.cpu_count() or 1) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def start(variant: Variant, logs: Path) -> None:
    variant.port = servers.free_port()
    variant.log_path = logs / f"{variant.name.split()[0]}-{variant.port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"tests.performance.bench_apps:{variant.factory}",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(variant.port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with variant.log_path.open("wb") as log:
        variant.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **variant.env}, stdout=log, stderr=log
        )
    pin(variant.process.pid, 0)
    servers._wait_for_port(variant.port, 30, f"uvicorn ({variant.name})")


def check(variant: Variant, headers: dict[str, str]) -> None:
    """One request before measuring: 200, and the full stack's headers where expected."""
    connection = http.client.HTTPConnection(HOST, variant.port, timeout=10)
    connection.request("GET", PING_PATH, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"{variant.name}: {PING_PATH} answered {response.status}")
    stacked = response.getheader("x-request-id") and response.getheader("ratelimit")
    if variant.factory == "full_app" and not stacked:
        raise SystemExit(f"{variant.name}: the middleware stack's headers are missing")


def stop(variant: Variant) -> None:
    if variant.process is not None and variant.process.poll() is None:
        variant.process.terminate()
        try:
            variant.process.wait(15)
        except subprocess.TimeoutExpired:
            variant.process.kill()


def access_log_lines(variant: Variant) -> int:
    if variant.log_path is None or not variant.log_path.exists():
        return 0
    with variant.log_path.open("rb") as log:
        return sum(1 for line in log if b'"event":"request"' in line)


@contextlib.contextmanager
def redis_if_available() -> Iterator[servers.RedisServer | None]:
    if shutil.which("redis-server") is None:
        yield None
        return
    with servers.redis_server() as server:
        yield server


def measure(
    variant: Variant,
    pool: ProcessPoolExecutor,
    headers: dict[str, str],
    args: argparse.Namespace,
    path: str = PING_PATH,
) -> None:
    assert variant.process is not None
    pid = variant.process.pid
    future = pool.submit(
        run_load_in_process,
        HOST,
        variant.port,
        path,
        headers,
        args.connections,
        args.duration,
        args.warmup,
    )
    # Server CPU over the measured window only (the load generator warms up first).
    time.sleep(args.warmup)
    cpu_before = cpu_seconds(pid)
    result: LoadResult = future.result(timeout=args.warmup + args.duration + 60)
    cpu_used = cpu_seconds(pid) - cpu_before
    if result.errors or set(result.statuses) != {200}:
        raise SystemExit(f"{variant.name}: unexpected answers {dict(result.statuses)}")
    variant.rps.append(result.rps)
    variant.cpu_us.append(cpu_used / result.requests * 1e6 if result.requests else 0.0)
    variant.requests += result.requests
    for status, count in result.statuses.items():
        variant.statuses[status] = variant.statuses.get(status, 0) + count
    print(f"  {variant.name:<14} {result.rps:>9.0f} req/s", flush=True)


def cpu_ratio(variant: Variant, bare: Variant) -> float:
    """Throughput the variant keeps, from server CPU per request: what a CPU-bound server
    achieves, unaffected by other processes taking the core for a while."""
    return statistics.median(bare.cpu_us) / statistics.median(variant.cpu_us)


def rps_ratio(variant: Variant, bare: Variant) -> float:
    return statistics.median(v / b for v, b in zip(variant.rps, bare.rps, strict=True))


def report(
    variants: list[Variant], args: argparse.Namespace, passed: bool, layers: dict[str, float]
) -> str:
    bare = variants[0]
    rows = [variant_row(variant, bare) for variant in variants]
    info = machine()
    full = [v for v in variants if v is not bare]
    logged = ", ".join(f"{v.name}: {access_log_lines(v):,} for {v.requests:,}" for v in full)
    worst = min(full, key=lambda v: cpu_ratio(v, bare))
    kept = cpu_ratio(worst, bare)
    extra = statistics.median(worst.cpu_us) - statistics.median(bare.cpu_us)
    lines = [
        START_MARK,
        "## Middleware stack overhead (`make bench-middleware`)",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        *machine_lines(info),
        "",
        f"`GET {PING_PATH}` (a trivial JSON endpoint) served by one uvicorn worker (uvloop, "
        "httptools) pinned to one core; a closed-loop load generator "
        "(tests/performance/loadgen.py) on the other core keeps "
        f"{args.connections} keep-alive connections busy for {args.duration:g} s after a "
        f"{args.warmup:g} s warm-up; {args.rounds} interleaved rounds, medians reported. "
        "The full stack is Etter's `create_app()` with the route inserted first (so routing "
        "costs the same): security headers, request id and JSON access log (written to a "
        "file), rate limiting with the bearer token's signature checked on every request, "
        "gzip negotiation, and the problem handlers. The bare app is FastAPI with that one "
        "route. Besides requests per second, the server process's CPU time per request is "
        "measured over the same window: on a machine shared with other work the throughput "
        "of a round swings with what else runs, the CPU per request much less, and for a "
        "CPU-bound server it is the throughput (kept = bare CPU / variant CPU).",
        "",
        "| variant | req/s (median) | req/s per round | server CPU µs/request | "
        "throughput vs bare (measured) | throughput kept (from CPU) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"The stack adds {extra:,.0f} µs of CPU per request to the bare app's "
        f"{statistics.median(bare.cpu_us):,.0f} µs ({worst.name}): it keeps {kept:.0%} of the "
        f"bare throughput, costs {1 - kept:.0%} (budget: at most {args.max_overhead:.0%}) — "
        f"**{'within budget' if passed else 'OVER BUDGET'}**.",
        f"Access-log events written (one per request, warm-up included): {logged}.",
        "",
        "CPU per request that each layer adds on its own, in-process around a minimal ASGI app "
        "(tests/performance/layer_costs.py, embedded settings, JSON access log): "
        + ", ".join(f"{name} {cost:.1f} µs" for name, cost in layers.items())
        + ".",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def write_report(section: str) -> None:
    write_section(REPORT, START_MARK, END_MARK, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-overhead", type=float, default=0.30)
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()

    secret = secrets.token_urlsafe(48)
    token = create_access_token(Settings(_env_file=None, secret_key=secret), 1).token
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "etter-bench",
    }
    with tempfile.TemporaryDirectory(prefix="etter-bench-") as tmp, redis_if_available() as redis:
        logs = Path(tmp)
        etter_env = {
            "ENVIRONMENT": "production",
            "SECRET_KEY": secret,
            "DATABASE_URL": f"sqlite+aiosqlite:///{logs / 'bench.db'}",
            "LOG_LEVEL": "INFO",
            "LOG_JSON": "true",
            "SEED_DEMO_DATA": "false",
            # Never refuse during the benchmark: the check costs the same whatever the quota.
            "RATE_LIMIT_READ": "1000000000/minute",
            "REDIS_URL": "",
        }
        variants = [
            Variant("bare", "bare_app", {}),
            Variant("full (memory)", "full_app", etter_env),
        ]
        if redis is not None:
            variants.append(
                Variant("full (Redis)", "full_app", {**etter_env, "REDIS_URL": redis.url})
            )
        spawn = multiprocessing.get_context("spawn")
        try:
            for variant in variants:
                start(variant, logs)
                check(variant, headers)
            with ProcessPoolExecutor(1, mp_context=spawn, initializer=_pin_self) as pool:
                for number in range(1, args.rounds + 1):
                    print(f"round {number}/{args.rounds}", flush=True)
                    for variant in variants:
                        measure(variant, pool, headers, args)
        finally:
            for variant in variants:
                stop(variant)
        worst = min(cpu_ratio(f, variants[0]) for f in variants[1:])
        passed = worst >= 1 - args.max_overhead
        with ProcessPoolExecutor(1, mp_context=spawn, initializer=_pin_self) as pool:
            layers = pool.submit(measure_layers, {**etter_env, "REDIS_URL": ""}, token).result()
        section = report(variants, args, passed, layers)
    print(section)
    if not args.no_report:
        write_report(section)
        print(f"written to {REPORT.relative_to(ROOT)}")
    return 0 if passed else 1


def _pin_self() -> None:
    pin(0, 1)


if __name__ == "__main__":
    sys.exit(main())
