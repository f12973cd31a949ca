from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from api.deps import IdPath, ServiceDep
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from schemas.base import CursorPage
from schemas.problems import Problem
from schemas.workflows import WorkflowRun, WorkflowRunCreate
from services.workflow_history import WorkflowHistoryService

router = resource_router("", "workflow-history")


@router.post(
    "/workflows/{workflow_id}/history",
    response_model=WorkflowRun,
    status_code=status.HTTP_201_CREATED,
    summary="Record a run of the workflow by the caller",
    dependencies=[Idempotent],
    responses=with_idempotency(
        {409: {"model": Problem, "description": "The workflow is archived"}}
    ),
)
async def record_workflow_run(
    workflow_id: IdPath,
    data: WorkflowRunCreate,
    history: ServiceDep[WorkflowHistoryService],
    request: Request,
    response: Response,
) -> object:
    run = await history.record(workflow_id, data)
    # Runs have no page of their own; the new run heads the caller's history list.
    set_location(request, response, "list_user_workflow_history", user_id=run.user_id)
    return run


@router.get(
    "/users/{user_id}/workflow-history",
    response_model=CursorPage[WorkflowRun],
    summary="A user's runs, newest first (self, chro, admin)",
    responses={400: {"model": Problem, "description": "The cursor is not valid"}},
)
async def list_user_workflow_history(
    user_id: IdPath,
    history: ServiceDep[WorkflowHistoryService],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> object:
    return await history.for_user(user_id, limit, cursor)
