"""`make bench-metrics`: what the Prometheus layer costs `GET /api/v1/auth/me`, on against off.

In one run, on loopback, the same Etter app three times (one uvicorn worker each, uvloop and
httptools, pinned to one core; the load generator of tests/performance/loadgen.py pinned to
the other), differing only in the metrics settings:
- `metrics off`: METRICS_ENABLED=false (no metrics middleware, no engine events, no /metrics);
- `metrics on`: the default, metrics in process memory (one worker per machine);
- `metrics on (multiprocess)`: PROMETHEUS_MULTIPROC_DIR set, as under several workers, where
  every write goes to a memory-mapped file.
Production-like otherwise: PostgreSQL is not needed for this route (the caller comes from the
principal cache), so the database is a seeded SQLite file and the cache and rate-limit
counters live in a real Redis that the benchmark starts; JSON access log to a file; a bearer
token on every request. Rounds are interleaved; the figures, with the machine's description,
replace this benchmark's section of tests/performance_report.md. The exit status is 1 when
metrics on keeps less than (1 - `--max-overhead`) of metrics off's throughput (from the
server's CPU time per request, as in bench_middleware).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from tests import servers
from tests.performance.bench_middleware import (
    HOST,
    Variant,
    _pin_self,
    cpu_ratio,
    machine,
    machine_lines,
    measure,
    start,
    stop,
    variant_row,
)
from tests.performance.layer_costs import measure as measure_layers
from tests.performance.report import write_section

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "performance_report.md"
START_MARK = "<!-- bench-metrics:start -->"
END_MARK = "<!-- bench-metrics:end -->"
ME_PATH = "/api/v1/auth/me"
LOGIN = {"username": "member@acme.example", "password": "etter-demo-2026"}


def seed(env: dict[str, str]) -> None:
    development = {**env, "ENVIRONMENT": "development"}
    for command in (["migrate"], ["seed", "--scale", "demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env={**os.environ, **development},
            check=True,
            capture_output=True,
        )


def request(port: int, method: str, path: str, body: bytes = b"", headers=None) -> tuple:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, dict(response.getheaders())


def log_in(port: int) -> str:
    status, body, _ = request(
        port,
        "POST",
        "/api/v1/auth/token",
        urllib.parse.urlencode(LOGIN).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    if status != 200:
        raise SystemExit(f"login answered {status}: {body[:200]!r}")
    return json.loads(body)["access_token"]


def check(variant: Variant, headers: dict[str, str], metrics_on: bool) -> None:
    status, body, _ = request(variant.port, "GET", ME_PATH, headers=headers)
    if status != 200:
        raise SystemExit(f"{variant.name}: {ME_PATH} answered {status}: {body[:200]!r}")
    status, body, _ = request(variant.port, "GET", "/metrics")
    expected = 200 if metrics_on else 404
    if status != expected:
        raise SystemExit(f"{variant.name}: /metrics answered {status}, expected {expected}")
    if metrics_on and b'route="/api/v1/auth/me"' not in body:
        raise SystemExit(f"{variant.name}: /metrics does not count {ME_PATH}")


def report(
    variants: list[Variant], args: argparse.Namespace, passed: bool, layers: dict[str, float]
) -> str:
    off = variants[0]
    rows = [variant_row(v, off, ".1%") for v in variants]
    info = machine()
    worst = min(variants[1:], key=lambda v: cpu_ratio(v, off))
    kept = cpu_ratio(worst, off)
    extra = statistics.median(worst.cpu_us) - statistics.median(off.cpu_us)
    lines = [
        START_MARK,
        "## Prometheus metrics overhead (`make bench-metrics`)",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        *machine_lines(info, packages_also="prometheus-client"),
        "",
        f"`GET {ME_PATH}` (the caller from the principal cache in Redis, no SQL) served by one "
        "uvicorn worker (uvloop, httptools) pinned to one core; the closed-loop load generator "
        f"(tests/performance/loadgen.py) on the other core keeps {args.connections} keep-alive "
        f"connections busy for {args.duration:g} s after a {args.warmup:g} s warm-up; "
        f"{args.rounds} interleaved rounds, medians reported. The same production-like app "
        "(ENVIRONMENT=production, JSON access log to a file, rate limits and cache in a real "
        "Redis) with METRICS_ENABLED=false, with the default (metrics in memory), and with "
        "PROMETHEUS_MULTIPROC_DIR set (every write to a memory-mapped file, as under several "
        "workers). Throughput kept is derived from the server's CPU time per request (see the "
        "middleware section: the request rate swings with the other work on the machine).",
        "",
        "| variant | req/s (median) | req/s per round | server CPU µs/request | "
        "throughput vs off (measured) | throughput kept (from CPU) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"Metrics change the CPU per request by {extra:+,.0f} µs against "
        f"{statistics.median(off.cpu_us):,.0f} µs ({worst.name}, the costlier variant): "
        f"{kept:.1%} of the throughput is kept, a cost of {1 - kept:.1%} "
        f"(budget: at most {args.max_overhead:.0%}) — "
        f"**{'within budget' if passed else 'OVER BUDGET'}**.",
        "",
        "In-process, around a minimal ASGI app (tests/performance/layer_costs.py, no route "
        "matched, no SQL), the metrics middleware alone costs "
        f"{layers['memory']:.1f} µs of CPU per request with metrics in memory and "
        f"{layers['multiprocess']:.1f} µs in multiprocess mode (the whole stack: "
        f"{layers['memory stack']:.1f} and {layers['multiprocess stack']:.1f} µs); against "
        f"metrics off's {statistics.median(off.cpu_us):,.0f} µs per request that is "
        f"{layers['multiprocess'] / statistics.median(off.cpu_us):.1%} at most. Database "
        "requests also run the statement timing and counting events, per statement.",
        END_MARK,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-overhead", type=float, default=0.05)
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="etter-bench-metrics-") as tmp,
        servers.redis_server() as redis,
    ):
        work = Path(tmp)
        multiproc = work / "multiproc"
        multiproc.mkdir()
        env = {
            "ENVIRONMENT": "production",
            "SECRET_KEY": "bench-metrics-" + "k" * 40,
            "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bench.db'}",
            "REDIS_URL": redis.url,
            "LOG_LEVEL": "INFO",
            "LOG_JSON": "true",
            "SEED_DEMO_DATA": "false",
            "RATE_LIMIT_READ": "1000000000/minute",
            "OTEL_SDK_DISABLED": "true",
        }
        seed(env)
        variants = [
            Variant("metrics off", "full_app", {**env, "METRICS_ENABLED": "false"}),
            Variant("metrics on", "full_app", {**env, "METRICS_ENABLED": "true"}),
            Variant(
                "metrics on (multiprocess)",
                "full_app",
                {**env, "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
            ),
        ]
        spawn = multiprocessing.get_context("spawn")
        try:
            for variant in variants:
                start(variant, work)
            token = log_in(variants[0].port)
            headers = {"Authorization": f"Bearer {token}", "User-Agent": "etter-bench"}
            for variant in variants:
                check(variant, headers, variant.env["METRICS_ENABLED"] == "true")
            with ProcessPoolExecutor(1, mp_context=spawn, initializer=_pin_self) as pool:
                for number in range(1, args.rounds + 1):
                    print(f"round {number}/{args.rounds}", flush=True)
                    for variant in variants:
                        measure(variant, pool, headers, args, path=ME_PATH)
        finally:
            for variant in variants:
                stop(variant)
        layers = {}
        memory_env = {**env, "REDIS_URL": "", "METRICS_ENABLED": "true"}
        for mode, multiproc_dir in (("memory", None), ("multiprocess", multiproc)):
            # prometheus_client picks its mode at import: the child gets the variable at start.
            if multiproc_dir is not None:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
            try:
                with ProcessPoolExecutor(1, mp_context=spawn, initializer=_pin_self) as pool:
                    costs = pool.submit(measure_layers, memory_env, token).result()
            finally:
                os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            layers[mode] = costs["MetricsMiddleware"]
            layers[f"{mode} stack"] = costs["whole stack"]
    worst = min(cpu_ratio(v, variants[0]) for v in variants[1:])
    passed = worst >= 1 - args.max_overhead
    section = report(variants, args, passed, layers)
    print(section)
    if not args.no_report:
        write_section(REPORT, START_MARK, END_MARK, section)
        print(f"written to {REPORT.relative_to(ROOT)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
