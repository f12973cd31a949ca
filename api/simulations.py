from __future__ import annotations

from fastapi import Request, Response, status

from api.deps import CompanyFilter, IdPath, ServiceDep
from api.http_cache import NOT_MODIFIED, etag_response
from api.idempotency import Idempotent, with_idempotency
from api.routers import resource_router, set_location
from common.request_deps import PageParams
from schemas.base import Page
from schemas.simulations import Simulation, SimulationCreate, SimulationSummary
from services.simulations import SimulationService

router = resource_router("/simulations", "simulations")


@router.get("", response_model=Page[SimulationSummary], summary="Simulations, newest first")
async def list_simulations(
    simulations: ServiceDep[SimulationService],
    page: PageParams,
    company_id: CompanyFilter = None,
) -> object:
    return await simulations.list(page, company_id=company_id)


@router.get(
    "/{simulation_id}",
    response_model=Simulation,
    responses=NOT_MODIFIED,
    summary="A simulation and its results",
)
async def get_simulation(
    request: Request, simulation_id: IdPath, simulations: ServiceDep[SimulationService]
) -> object:
    return etag_response(request, await simulations.detail(simulation_id))


@router.post(
    "",
    response_model=Simulation,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
    responses=with_idempotency(),
    summary="Simulate AI adoption on the company's workflows and store the results",
)
async def create_simulation(
    data: SimulationCreate,
    simulations: ServiceDep[SimulationService],
    request: Request,
    response: Response,
) -> object:
    simulation = await simulations.create(data)
    set_location(request, response, "get_simulation", simulation_id=simulation.id)
    return simulation
