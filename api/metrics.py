"""`GET /metrics`: the Prometheus exposition of this process's counters (no rate limit; expose
it on the internal network only). With `METRICS_TOKEN` set it needs that bearer token.

Under several worker processes each one has its own counters: set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) and every worker then serves the sum of all of them.
"""

from __future__ import annotations

import hmac

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from common.exceptions import AuthenticationError
from common.metrics import render_metrics
from schemas.problems import Problem

router = APIRouter(tags=["health"])


async def require_metrics_token(request: Request) -> None:
    """With METRICS_TOKEN set, the scraper must send `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = request.app.state.settings.metrics_token
    if expected is None:
        return
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    token = expected.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token):
        raise AuthenticationError("GET /metrics needs the metrics bearer token.")


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Exposition text"},
        401: {"model": Problem, "description": "METRICS_TOKEN is set and was not sent"},
    },
    dependencies=[Depends(require_metrics_token)],
)
async def metrics() -> Response:
    # Reading the multiprocess files is blocking I/O: off the event loop.
    body = await anyio.to_thread.run_sync(render_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
