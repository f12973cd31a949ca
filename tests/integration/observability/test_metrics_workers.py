"""Two real uvicorn worker processes on the real PostgreSQL and Redis, in prometheus_client's
multiprocess mode: whichever worker answers the scrape, /metrics shows the sum of both."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from settings.config import Settings
from tests import servers
from tests.conftest import ROOT, TEST_SECRET
from tests.fixtures.observability import parse_samples, value

# Seconds of two uvicorn workers: scheduled first (tests/conftest.py).
pytestmark = pytest.mark.long_running

REQUESTS = 60
# Rounds of REQUESTS probes at most, until both workers have served.
ROUNDS = 10
READY = {"method": "GET", "route": "/health/ready", "status_class": "2xx"}


@pytest.fixture
def two_workers(migrated_postgres: str, redis_url: str, tmp_path: Path) -> Iterator[tuple]:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = servers.free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": migrated_postgres,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "SEED_DEMO_DATA": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "settings.server:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        servers._wait_for_port(port, 60, "uvicorn --workers 2")
        yield f"http://127.0.0.1:{port}", multiproc
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def get(url: str) -> tuple[int, str]:
    # A new connection per request: the kernel spreads them over both workers' accept calls.
    response = httpx.get(url, headers={"Connection": "close"}, timeout=30)
    return response.status_code, response.text


def counts_per_process(multiproc: Path) -> dict[str, float]:
    """The /health/ready count each worker wrote to its own file."""
    counts = {}
    for path in multiproc.glob("counter_*.db"):
        metrics = MultiProcessCollector.merge([str(path)], accumulate=True)
        counts[path.stem.split("_")[-1]] = sum(
            sample.value
            for metric in metrics
            for sample in metric.samples
            if sample.name == "etter_http_requests_total"
            and set(READY.items()) <= set(sample.labels.items())
        )
    return counts


def serve_until_both_workers_answered(base: str, multiproc: Path) -> tuple[int, dict]:
    """Batches of probes until each worker has served some: the port opens before both workers
    have imported the app, and on a busy machine one of them may take every early request."""
    sent = 0
    per_process: dict[str, float] = {}
    for _ in range(ROUNDS):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: get(f"{base}/health/ready"), range(REQUESTS)))
        assert {status for status, _ in results} == {200}
        sent += REQUESTS
        per_process = {pid: n for pid, n in counts_per_process(multiproc).items() if n}
        if len(per_process) == 2:
            break
    return sent, per_process


def test_counts_add_up_across_two_worker_processes(two_workers):
    base, multiproc = two_workers
    sent, per_process = serve_until_both_workers_answered(base, multiproc)
    assert len(per_process) == 2, f"both workers should have served: {per_process}"
    assert sum(per_process.values()) == sent

    # Whichever worker serves the scrape, it reports the sum over both.
    scrapes = [parse_samples(get(f"{base}/metrics")[1]) for _ in range(6)]
    for samples in scrapes:
        assert value(samples, "etter_http_requests_total", **READY) == sent
        assert (
            value(
                samples,
                "etter_http_request_duration_seconds_count",
                method="GET",
                route="/health/ready",
            )
            == sent
        )
        # Each probe ran SELECT 1 on its worker's pool.
        assert (
            value(samples, "etter_db_statements_per_request_count", route="/health/ready") == sent
        )
        assert value(samples, "etter_dependency_up", dependency="database") == 1
        assert value(samples, "etter_dependency_up", dependency="redis") == 1
        # Both pools, DB_POOL_SIZE connections each (the default).
        pool_size = Settings.model_fields["db_pool_size"].default
        assert value(samples, "etter_db_pool_size") == 2 * pool_size
        # process metrics of both live workers, one series each.
        pids = {
            dict(labels)["pid"]
            for name, labels in samples
            if name == "process_resident_memory_bytes"
        }
        assert pids == set(per_process)
