"""Etter as ops run it, for the fault and multi-instance tests: real uvicorn or gunicorn
processes in production settings on a throwaway PostgreSQL and Redis, and a small async client
that keeps steady traffic on them and counts every response.

`seeded_database(url)` migrates a database and commits the tests' World into it, so that the
processes' data is real (no rolled-back test transaction can reach another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from settings.database import create_engine, create_sessionmaker
from tests.conftest import TEST_SECRET, make_settings, migrate
from tests.factories import World, build_world
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


async def seeded_database(database_url: str) -> World:
    """Migrate `database_url` and commit two tenants with a user of every role into it."""
    settings = make_settings(database_url=database_url)
    migrate(settings.database_url)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            world = await build_world(session, settings)
            await session.commit()
    finally:
        await engine.dispose()
    return world


def production_env(database_url: str, redis_url: str | None, **overrides: Any) -> dict[str, str]:
    """The environment of a production process (ENVIRONMENT=production, JSON logs), with rate
    limits high enough for the tests' traffic unless a test sets its own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "REDIS_", "RATE_LIMIT_", "CACHE_"))
    }
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY=TEST_SECRET,
        DATABASE_URL=database_url,
        LOG_LEVEL="INFO",
        SEED_DEMO_DATA="false",
        STORAGE_DIR=tempfile.mkdtemp(prefix="etter-storage-"),
        RATE_LIMIT_READ="100000/minute",
        RATE_LIMIT_WRITE="100000/minute",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


class EtterProcess:
    """`uvicorn settings.server:app`, or gunicorn with `workers` uvicorn workers, on a free port.
    Its output goes to `log_path`, read by the tests for the logged events."""

    def __init__(self, env: dict[str, str], *, workers: int = 0, graceful_timeout: int = 20):
        self.env = env
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="etter-app-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.workers:
            return [
                str(BIN / "gunicorn"),
                "settings.server:app",
                "--worker-class",
                "uvicorn.workers.UvicornWorker",
                "--workers",
                str(self.workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                str(self.graceful_timeout),
                "--keep-alive",
                "5",
            ]
        return [
            str(BIN / "uvicorn"),
            "settings.server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-proxy-headers",
            "--timeout-graceful-shutdown",
            str(self.graceful_timeout),
        ]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"Etter did not become live:\n{self.log_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers' process ids (children of the master)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def etter_process(env: dict[str, str], **options: Any) -> Any:
    process = EtterProcess(env, **options)
    process.start()
    try:
        yield process
    finally:
        process.close()


@dataclass
class Outcome:
    """One response (or a transport failure: `status` 0 and `error`) of the steady traffic."""

    started: float
    elapsed: float
    status: int
    retry_after: str | None = None
    problem_type: str | None = None
    error: str | None = None


@dataclass
class Traffic:
    """`concurrency` loops, each sending `request(client)` every `interval` seconds until
    stopped; every outcome is kept, in order of start."""

    request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    base_url: str
    concurrency: int = 2
    interval: float = 0.02
    timeout: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _loop(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = await self.request(client)
                outcome = Outcome(
                    started,
                    time.monotonic() - started,
                    response.status_code,
                    response.headers.get("retry-after"),
                    response.json().get("type")
                    if response.headers.get("content-type", "").startswith(
                        "application/problem+json"
                    )
                    else None,
                )
            except httpx.HTTPError as error:
                outcome = Outcome(
                    started, time.monotonic() - started, 0, error=type(error).__name__
                )
            self.outcomes.append(outcome)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
            loops = [asyncio.create_task(self._loop(client)) for _ in range(self.concurrency)]
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*loops)

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= moment]

    def statuses(self, outcomes: list[Outcome] | None = None) -> Counter[int]:
        return Counter(o.status for o in (self.outcomes if outcomes is None else outcomes))

    async def until(self, predicate: Callable[[Traffic], bool], within: float) -> None:
        """Wait (keeping the traffic going) until `predicate(self)`; fail after `within` s."""
        deadline = time.monotonic() + within
        while not predicate(self):
            assert time.monotonic() < deadline, f"not reached in {within}s: {self.statuses()}"
            await asyncio.sleep(0.05)


def metric_value(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) in an exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            metric = line.split(" ")[0].split("{")[0]
            if metric == name:
                total += float(line.rsplit(" ", 1)[1])
    return total
