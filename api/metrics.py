"""`GET /metrics`: the Prometheus exposition of this process's counters (no auth, no rate
limit; expose it on the internal network only).

Under several worker processes each one has its own counters: set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) and every worker then serves the sum of all of them.
"""

from __future__ import annotations

import os

import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from common.metrics import REGISTRY

router = APIRouter(tags=["health"])


def render_metrics() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Exposition text"}},
)
async def metrics() -> Response:
    # Reading the multiprocess files is blocking I/O: off the event loop.
    body = await anyio.to_thread.run_sync(render_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
