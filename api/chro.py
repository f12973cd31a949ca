from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from api.deps import CacheDep, CurrentUser
from api.http_cache import NOT_MODIFIED, etag_response
from api.routers import resource_router
from common.request_deps import SessionDep
from schemas.dashboard import ChroDashboard
from services.dashboard import DashboardService

router = resource_router("/chro", "chro")


async def get_dashboard_service(
    session: SessionDep, principal: CurrentUser, cache: CacheDep
) -> DashboardService:
    return DashboardService(session, principal, cache)


DashboardServiceDep = Annotated[DashboardService, Depends(get_dashboard_service)]


@router.get(
    "/dashboard",
    response_model=ChroDashboard,
    responses=NOT_MODIFIED,
    summary="Headcount, 30-day activity, top workflows, documents and latest simulations",
)
async def dashboard(
    request: Request,
    dashboard: DashboardServiceDep,
    company_id: Annotated[
        int | None,
        Query(ge=1, le=2_147_483_647, description="required for the admin: whose dashboard"),
    ] = None,
) -> object:
    # The ETag follows `generated_at` too: it changes whenever the dashboard is recomputed.
    return etag_response(request, await dashboard.build(company_id))
