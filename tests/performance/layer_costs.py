"""What each middleware layer costs on its own, measured in-process (no server, no network).

Each layer of `settings.server.middleware_stack` wraps a minimal ASGI app that answers a small
JSON body, alone and then all together; the CPU time per request above the minimal app is that
layer's cost. Run in a child process by the middleware benchmark, so that its logging set-up and
event loop are its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ITERATIONS = 5000
REPEATS = 5


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


async def _discard(message: Message) -> None:
    return None


async def _request() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _cpu_per_request(app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> float:
    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/bench/ping",
            "query_string": b"",
            "root_path": "",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    for _ in range(500):
        await app(scope(), _request, _discard)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(ITERATIONS):
            await app(scope(), _request, _discard)
        best = min(best, (time.process_time() - started) / ITERATIONS)
    return best * 1e6


def measure(env: dict[str, str], token: str) -> dict[str, float]:
    """Microseconds of CPU per request that each layer, and the whole stack, add."""
    os.environ.update(env)
    from common.rate_limits import RateLimitBackend
    from common.structured_logger import configure_logging
    from settings.config import Settings
    from settings.server import middleware_stack

    settings = Settings()
    with open(os.devnull, "w") as sink:
        configure_logging(settings.log_level, settings.json_logs, stream=sink)
        headers = [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"accept-encoding", b"gzip, deflate"),
            (b"user-agent", b"etter-bench"),
        ]

        def wrap(layers: list[Any]) -> ASGIApp:
            app: ASGIApp = _answer
            for layer in reversed(layers):
                app = layer.cls(app, *layer.args, **layer.kwargs)
            return app

        async def run() -> dict[str, float]:
            stack = middleware_stack(settings, RateLimitBackend.from_settings(settings))
            base = await _cpu_per_request(_answer, headers)
            costs = {
                layer.cls.__name__: await _cpu_per_request(wrap([layer]), headers) - base
                for layer in stack
            }
            costs["whole stack"] = await _cpu_per_request(wrap(stack), headers) - base
            return costs

        return asyncio.run(run())
