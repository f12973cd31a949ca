"""Probes for the load balancer and the orchestrator; no auth, no rate limit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from schemas.health import Liveness, ReadinessReport
from services.health import check_readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Liveness, summary="The process is up")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "A dependency is down"}},
    summary="The database and Redis answer",
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    result = await check_readiness(state.database.engine, state.redis)
    state.readiness_log.observe(result)
    report = ReadinessReport(
        status="ready" if result.ready else "unavailable",
        database="ok" if result.database else "down",
        redis="not configured" if result.redis is None else ("ok" if result.redis else "down"),
    )
    return JSONResponse(report.model_dump(), status_code=200 if result.ready else 503)
