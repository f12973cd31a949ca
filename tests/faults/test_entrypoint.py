"""The image's entrypoint, run outside the container: the Dockerfile's CMD (gunicorn with
deploy/gunicorn.conf.py and two uvicorn workers) with the environment the image sets, against
the suite's PostgreSQL and Redis. It must come up live and ready, serve the summed metrics,
and exit cleanly (status 0) on SIGTERM, as `docker stop` sends it. In `make test-faults`: two
workers importing the app take 20-30 s to boot on this shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60


def dockerfile_cmd() -> list[str]:
    lines = (ROOT / "deploy/Dockerfile").read_text().splitlines()
    (cmd,) = [line.removeprefix("CMD ") for line in lines if line.startswith("CMD ")]
    return json.loads(cmd)


@pytest.fixture
def entrypoint(migrated_postgres: str, redis_url: str | None, tmp_path: Path) -> Iterator[tuple]:
    if redis_url is None:
        pytest.skip("needs the suite's Redis")
    port = free_port()
    command = dockerfile_cmd()
    assert command[0] == "gunicorn"
    command[0] = str(Path(sys.executable).parent / "gunicorn")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        # What deploy/Dockerfile sets ...
        "PYTHONUNBUFFERED": "1",
        "ENVIRONMENT": "production",
        "WEB_CONCURRENCY": "2",
        "STORAGE_DIR": str(tmp_path / "storage"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # ... and what a deployment adds (on loopback here, not 0.0.0.0).
        "BIND": f"127.0.0.1:{port}",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": migrated_postgres,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "INFO",  # gunicorn logs its workers booting and the shutdown
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_until_live(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"not live after {STARTUP_SECONDS} s:\n{log.read_text()}")


def test_the_image_command_serves_and_stops_cleanly_on_sigterm(entrypoint):
    process, url, log = entrypoint
    wait_until_live(process, url, log)

    with httpx.Client(base_url=url, timeout=10) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}
        assert client.get("/metrics").status_code == 200
        problem = client.get("/api/v1/auth/me")
        assert problem.status_code == 401
        assert problem.headers["content-type"].startswith("application/problem+json")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()
    output = log.read_text()
    assert output.count("Booting worker") == 2, output  # WEB_CONCURRENCY
    assert "Shutting down: Master" in output, output
    assert "Traceback" not in output, output
