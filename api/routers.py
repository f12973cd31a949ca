"""Router construction shared by every resource module."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from common.transactions import TransactionalRoute
from schemas.problems import Problem

# What each error status means wherever it is documented; api/openapi.py declares every
# error response as `application/problem+json` with the `Problem` schema.
PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be parsed (malformed JSON or form)",
    401: "Not authenticated: no token, or an invalid, expired or revoked one",
    403: "Forbidden for the caller's role",
    404: "Not found (or another tenant's)",
    409: "Conflicts with existing data (a unique name or email, a stale version)",
    413: "The request body is over the limit (MAX_BODY_BYTES; uploads: MAX_UPLOAD_BYTES)",
    414: "The request target is over the limit (MAX_URL_BYTES)",
    422: "Validation failed",
    429: "Rate limited; see Retry-After",
    503: "The database or the service is overloaded or unavailable; see Retry-After",
}


def problem(description: str) -> dict[str, Any]:
    """A route's own error response, for its `responses=`."""
    return {"model": Problem, "description": description}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these statuses, with the shared descriptions."""
    return {status: problem(PROBLEM_DESCRIPTIONS[status]) for status in statuses}


# Documented on every resource route: what any endpoint may answer besides its own success.
COMMON_ERRORS = problem_responses(401, 403, 404, 422, 429, 503)


def resource_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(
        prefix=prefix, tags=[tag], route_class=TransactionalRoute, responses=COMMON_ERRORS
    )


def set_location(request: Request, response: Response, route_name: str, **params: Any) -> None:
    """`Location` of a created resource, as the absolute path of its GET route."""
    response.headers["Location"] = str(request.app.url_path_for(route_name, **params))
