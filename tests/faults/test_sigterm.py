"""SIGTERM to one gunicorn worker (uvicorn workers, two of them) with requests in flight: slow
uploads the client is still streaming, and slow queries (held by a table lock the test takes).
Every in-flight request completes, new connections are served by the other worker meanwhile,
and the terminated worker exits within the graceful timeout (gunicorn then replaces it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import psutil

from tests.fixtures.factories import World
from tests.fixtures.processes import EtterProcess, Traffic, etter_process, production_env
from tests.servers import PostgresServer

WORKFLOWS = "/api/v1/workflows"
DOCUMENTS = "/api/v1/documents"
ME = "/api/v1/auth/me"
GRACEFUL_TIMEOUT = 20
BOUNDARY = "etter-slow-upload"
UPLOAD_CHUNKS = 40  # of 8 KiB, one every 0.1 s: about 4 s of upload


async def slow_multipart() -> AsyncIterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\nSlow upload\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"'
        "\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    for _ in range(UPLOAD_CHUNKS):
        await asyncio.sleep(0.1)
        yield b"slow upload line\n" * 480
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def waiting_on_locks(pg: PostgresServer) -> int:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'etter-api' AND wait_event_type = 'Lock'"
    )
    return int(await asyncio.to_thread(pg.psql, sql))


def in_flight_by_worker(app: EtterProcess) -> dict[int, int]:
    """Established connections to the app's port, per worker pid."""
    counts = {}
    for pid in app.worker_pids():
        connections = psutil.Process(pid).net_connections(kind="tcp")
        counts[pid] = sum(
            1 for c in connections if c.status == "ESTABLISHED" and c.laddr.port == app.port
        )
    return counts


async def test_sigterm_to_a_worker_lets_its_in_flight_requests_finish(
    pg: PostgresServer, world: World
) -> None:
    env = production_env(pg.url, None, cache_enabled="false")
    headers = world.auth(world.member)
    with etter_process(env, workers=2, graceful_timeout=GRACEFUL_TIMEOUT) as app:
        locker = await asyncpg.connect(pg.url)
        await locker.execute("BEGIN; LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
        # One connection per request, so that they spread over both workers.
        clients = [httpx.AsyncClient(base_url=app.url, timeout=60) for _ in range(6)]
        uploads = [
            asyncio.create_task(
                c.post(
                    DOCUMENTS,
                    content=slow_multipart(),
                    headers={
                        **headers,
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    },
                )
            )
            for c in clients[:3]
        ]
        queries = [asyncio.create_task(c.get(WORKFLOWS, headers=headers)) for c in clients[3:]]
        # In flight means being handled: the queries wait on the lock in PostgreSQL, and the
        # uploads' bodies are arriving (a connection whose request line a worker has not read
        # yet is merely closed on shutdown, which a client may retry).
        deadline = time.monotonic() + 20
        while sum(in_flight_by_worker(app).values()) < 6 or await waiting_on_locks(pg) < len(
            queries
        ):
            assert time.monotonic() < deadline, in_flight_by_worker(app)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few chunks into each upload
        busy = in_flight_by_worker(app)
        victim = max(busy, key=busy.__getitem__)  # at least 3 of the 6 requests are its
        survivor = next(pid for pid in busy if pid != victim)
        psutil.Process(victim).terminate()
        terminated = time.monotonic()

        # New connections meanwhile (Connection: close, so each request opens one).
        traffic = Traffic(lambda c: c.get(ME, headers={**headers, "Connection": "close"}), app.url)
        async with traffic.running():
            await traffic.until(lambda t: len(t.outcomes) >= 20, 30)
            await locker.execute("ROLLBACK")  # the slow queries can finish now
            responses = await asyncio.gather(*uploads, *queries)
        await locker.close()
        for client in clients:
            await client.aclose()

        # Exited and reaped by the master, which starts a replacement.
        while victim in app.worker_pids() or len(app.worker_pids()) < 2:
            assert time.monotonic() - terminated < GRACEFUL_TIMEOUT + 5, app.worker_pids()
            await asyncio.sleep(0.1)
        workers_after = app.worker_pids()

    assert busy[victim] >= 3
    assert [r.status_code for r in responses] == [201, 201, 201, 200, 200, 200], [
        r.text for r in responses
    ]
    assert all(r.json()["size_bytes"] > 0 for r in responses[:3])
    assert traffic.statuses() == {200: len(traffic.outcomes)}
    assert survivor in workers_after
    assert victim not in workers_after
    assert not psutil.pid_exists(victim)
