"""The OpenAPI document tells the truth about errors.

Every error leaves as `application/problem+json` (common/problems.py), so every error response
in the document is declared with that media type and the `Problem` schema, never FastAPI's
default `application/json` validation error. What each operation may answer comes from two
places: the routers' `responses=` (`api/routers.py`: `COMMON_ERRORS` on every resource router,
and `problem(...)` on the routes that add their own), and the edges every request passes,
which this module adds by the operation's shape:

| status | documented on | why |
| --- | --- | --- |
| 400 | operations with a body | a body FastAPI cannot parse |
| 401, 403, 404, 422, 429, 503 | every `/api/v1` operation | `COMMON_ERRORS` |
| 409 | writes (POST, PATCH, PUT, DELETE) under `/api/v1` | unique names, stale versions |
| 413 | every operation | the body bound (`MAX_BODY_BYTES`) |
| 414 | every operation | the request-target bound (`MAX_URL_BYTES`) |
| 422 | operations with parameters or a body | validation |
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.routers import PROBLEM_DESCRIPTIONS
from common.problems import PROBLEM_MEDIA_TYPE
from schemas.problems import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WRITES = frozenset({"post", "put", "patch", "delete"})
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _edge_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    statuses = {413, 414}
    if operation.get("requestBody"):
        statuses.add(400)
    if operation.get("requestBody") or operation.get("parameters"):
        statuses.add(422)
    if path.startswith("/api/") and method in WRITES:
        statuses.add(409)
    return statuses


def problem_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every error response declared as a problem."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _edge_statuses(path, method, operation):
                responses.setdefault(
                    str(status), {"description": PROBLEM_DESCRIPTIONS.get(status, "Error")}
                )
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and not _own_schema(response):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def _own_schema(response: dict[str, Any]) -> bool:
    """A 4xx/5xx that is not a problem (the readiness report's 503) keeps its declaration."""
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref and not ref.endswith(("/Problem", "/HTTPValidationError")):
            return True
    return False


def install_problem_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
