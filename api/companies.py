from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response, status

from api.deps import IdPath, ServiceDep
from api.http_cache import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatch,
    check_if_match,
    etag_response,
    with_etag,
)
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from common.request_deps import PageParams
from common.validators import CountryCode, SearchTerm
from schemas.base import Page
from schemas.companies import Company, CompanyCreate, CompanyUpdate
from services.companies import CompanyService

router = resource_router("/companies", "companies")


@router.get(
    "", response_model=Page[Company], responses=NOT_MODIFIED, summary="The master company catalogue"
)
async def list_companies(
    request: Request,
    companies: ServiceDep[CompanyService],
    page: PageParams,
    q: Annotated[SearchTerm | None, Query(description="part of the name")] = None,
    industry: Annotated[SearchTerm | None, Query()] = None,
    country: Annotated[CountryCode | None, Query()] = None,
) -> object:
    return etag_response(
        request, await companies.catalogue(page, q=q, industry=industry, country=country)
    )


@router.get("/{company_id}", response_model=Company, responses=NOT_MODIFIED)
async def get_company(
    request: Request, company_id: IdPath, companies: ServiceDep[CompanyService]
) -> object:
    return etag_response(request, await companies.detail(company_id))


@router.post(
    "",
    response_model=Company,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
    responses=with_idempotency(),
)
async def create_company(
    data: CompanyCreate, companies: ServiceDep[CompanyService], request: Request, response: Response
) -> object:
    company = await companies.create(data)
    set_location(request, response, "get_company", company_id=company.id)
    return company


@router.patch("/{company_id}", response_model=Company, responses=PRECONDITION_FAILED)
async def update_company(
    company_id: IdPath,
    data: CompanyUpdate,
    companies: ServiceDep[CompanyService],
    response: Response,
    if_match: IfMatch = None,
) -> object:
    if if_match is not None:
        await companies.lock(company_id)
        check_if_match(if_match, await companies.uncached().detail(company_id))
    return with_etag(response, Company.model_validate(await companies.update(company_id, data)))
