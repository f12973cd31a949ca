"""Router construction shared by every resource module."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from common.transactions import TransactionalRoute
from schemas.problems import Problem

# Documented on every route: what any endpoint may answer besides its own success.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": description}
    for status, description in (
        (401, "Not authenticated"),
        (403, "Forbidden for the caller's role"),
        (404, "Not found (or another tenant's)"),
        (422, "Validation failed"),
        (429, "Rate limited"),
    )
}


def resource_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(
        prefix=prefix, tags=[tag], route_class=TransactionalRoute, responses=COMMON_ERRORS
    )


def set_location(request: Request, response: Response, route_name: str, **params: Any) -> None:
    """`Location` of a created resource, as the absolute path of its GET route."""
    response.headers["Location"] = str(request.app.url_path_for(route_name, **params))
