"""`GET /metrics`: the Prometheus exposition of this process's counters (no auth, no rate
limit; expose it on the internal network only).

Under several worker processes each one has its own counters: set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) and every worker then serves the sum of all of them.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from common.metrics import render_metrics

router = APIRouter(tags=["health"])


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
