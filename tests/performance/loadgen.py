"""A small closed-loop HTTP/1.1 load generator for loopback benchmarks.

`connections` keep-alive connections each send one request, wait for the whole response, and
send the next, until `duration` seconds have passed (after `warmup` seconds that are not
counted). Written on asyncio protocols rather than an HTTP client library so that the client
costs far less CPU per request than the server it measures. It only ever talks to the address
it is given, and it stops by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class _Connection(asyncio.Protocol):
    def __init__(self, request: bytes, shared: _Run) -> None:
        self.request = request
        self.shared = shared
        self.buffer = bytearray()
        self.transport: Any = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio's interface without subclassing its classes.
        self.transport = transport
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length_at = head.find(b"content-length:")
            if length_at < 0:
                self.shared.errors += 1  # the benchmarked endpoints always send a length
                self._close()
                return
            line_end = head.find(b"\r\n", length_at)
            length = int(head[length_at + 15 : line_end if line_end > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            del self.buffer[:total]
            self.shared.completed(status)
            if self.shared.stopping:
                self._close()
                return
            self.transport.write(self.request)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class _Run:
    counting: bool = False
    stopping: bool = False
    result: LoadResult = field(default_factory=LoadResult)
    errors: int = 0

    def completed(self, status: int) -> None:
        if self.counting:
            self.result.requests += 1
            self.result.statuses[status] += 1


async def run_load(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    connections: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    loop = asyncio.get_running_loop()
    run = _Run()
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: _Connection(request, run), host=host, port=port
        )
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    run.counting = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    run.counting = False
    run.result.seconds = time.perf_counter() - started
    run.stopping = True
    await asyncio.wait_for(asyncio.gather(*(p.closed for p in protocols)), timeout=10)
    run.result.errors = run.errors
    return run.result


def run_load_in_process(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    connections: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    """Entry point for a child process: its own event loop (uvloop, as the server has)."""
    import uvloop

    return uvloop.run(
        run_load(
            host,
            port,
            path,
            headers,
            connections=connections,
            duration=duration,
            warmup=warmup,
        )
    )
