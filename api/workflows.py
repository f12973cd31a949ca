from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi import status as http_status

from api.deps import CompanyFilter, IdPath, ServiceDep
from api.http_cache import NOT_MODIFIED, PRECONDITION_FAILED, IfMatch, check_if_match, etag_response
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from common.enums import WorkflowStatus
from common.request_deps import PageParams
from common.validators import SearchTerm, ShortText
from schemas.base import Page
from schemas.problems import Problem
from schemas.workflows import (
    Workflow,
    WorkflowCreate,
    WorkflowDetail,
    WorkflowSummary,
    WorkflowUpdate,
)
from services.workflows import WorkflowService

router = resource_router("/workflows", "workflows")
NAME_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The company already has a workflow of that name"}
}


@router.get("", response_model=Page[WorkflowSummary], summary="Workflows of the caller's company")
async def list_workflows(
    workflows: ServiceDep[WorkflowService],
    page: PageParams,
    department: Annotated[ShortText | None, Query()] = None,
    status: Annotated[WorkflowStatus | None, Query()] = None,
    q: Annotated[SearchTerm | None, Query(description="part of the name, any case")] = None,
    company_id: CompanyFilter = None,
) -> object:
    return await workflows.list(
        page, department=department, status=status, q=q, company_id=company_id
    )


@router.get(
    "/{workflow_id}",
    response_model=WorkflowDetail,
    responses=NOT_MODIFIED,
    summary="Steps, automation potential and usage over the last 30 days",
)
async def get_workflow(
    request: Request, workflow_id: IdPath, workflows: ServiceDep[WorkflowService]
) -> object:
    return etag_response(request, await workflows.detail(workflow_id))


@router.post(
    "",
    response_model=Workflow,
    status_code=http_status.HTTP_201_CREATED,
    dependencies=[Idempotent],
    responses=with_idempotency(NAME_TAKEN),
)
async def create_workflow(
    data: WorkflowCreate,
    workflows: ServiceDep[WorkflowService],
    request: Request,
    response: Response,
) -> object:
    workflow = await workflows.create(data)
    set_location(request, response, "get_workflow", workflow_id=workflow.id)
    return workflow


@router.patch(
    "/{workflow_id}",
    response_model=Workflow,
    responses={**NAME_TAKEN, **PRECONDITION_FAILED},
    description="If-Match takes the ETag of `GET /workflows/{id}`, whose body includes the "
    "usage stats: a run recorded since the read also fails the precondition (412).",
)
async def update_workflow(
    workflow_id: IdPath,
    data: WorkflowUpdate,
    workflows: ServiceDep[WorkflowService],
    if_match: IfMatch = None,
) -> object:
    if if_match is not None:
        await workflows.lock(workflow_id)
        check_if_match(if_match, await workflows.uncached().detail(workflow_id))
    return await workflows.update(workflow_id, data)


@router.delete("/{workflow_id}", status_code=http_status.HTTP_204_NO_CONTENT, summary="Archive")
async def archive_workflow(workflow_id: IdPath, workflows: ServiceDep[WorkflowService]) -> None:
    await workflows.archive(workflow_id)
