from __future__ import annotations

from fastapi import Request

from api.deps import CompanyFilter, ServiceDep
from api.http_cache import NOT_MODIFIED, etag_response
from api.routers import resource_router
from schemas.dashboard import ChroDashboard
from services.dashboard import DashboardService

router = resource_router("/chro", "chro")


@router.get(
    "/dashboard",
    response_model=ChroDashboard,
    responses=NOT_MODIFIED,
    summary="Headcount, 30-day activity, top workflows, documents and latest simulations",
)
async def dashboard(
    request: Request,
    dashboard: ServiceDep[DashboardService],
    company_id: CompanyFilter = None,
) -> object:
    # The ETag follows `generated_at` too: it changes whenever the dashboard is recomputed.
    return etag_response(request, await dashboard.build(company_id))
