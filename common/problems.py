"""The one renderer: every error leaves as RFC 9457 `application/problem+json`.

`install_problem_handlers` registers the handlers on the app; the middleware uses the same
functions: the request-logging middleware for the unexpected (500) errors that escape the
handlers, the rate limiter for its 429s.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.error_tracker import report_exception
from common.exceptions import (
    ConflictError,
    EtterError,
    FieldError,
    ServiceUnavailableError,
    problem_type,
    problem_type_for_status,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_STATE_KEY = "request_id"

log = structlog.get_logger("etter.errors")


def request_id_of(scope: dict[str, Any]) -> str | None:
    return scope.get("state", {}).get(REQUEST_ID_STATE_KEY)


def problem_body(
    scope: dict[str, Any],
    *,
    status: int,
    title: str,
    detail: str,
    type_: str = "about:blank",
    errors: list[FieldError] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": scope.get("path", ""),
        "request_id": request_id_of(scope),
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return body


def problem_response(
    scope: dict[str, Any],
    *,
    status: int,
    title: str,
    detail: str,
    type_: str = "about:blank",
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(
        scope, status=status, title=title, detail=detail, type_=type_, errors=errors
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def error_response(scope: dict[str, Any], error: EtterError) -> JSONResponse:
    return problem_response(
        scope,
        status=error.status,
        title=error.title,
        detail=error.detail,
        type_=error.type,
        errors=error.errors,
        headers=error.headers,
    )


def internal_error_response(scope: dict[str, Any]) -> JSONResponse:
    """The generic 500: reveals nothing; the request id ties it to the log and the report."""
    return error_response(
        scope, EtterError("An unexpected error occurred. Quote the request id when reporting it.")
    )


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        errors.append(FieldError(field=location or "request", message=str(error.get("msg"))))
    return errors


async def _etter_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EtterError)
    if exc.status >= 500:
        log.warning("service_error", status=exc.status, detail=exc.detail)
    return error_response(request.scope, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        request.scope,
        status=422,
        title="Validation failed",
        detail="The request is not valid; see `errors`.",
        type_=problem_type("validation-error"),
        errors=_field_errors(exc),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors (unknown route 404, 405 with its `Allow`, ...)."""
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    return problem_response(
        request.scope,
        status=exc.status_code,
        title=phrase,
        detail=detail,
        type_=problem_type_for_status(exc.status_code),
        headers=dict(exc.headers or {}),
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity_conflict", error=type(exc).__name__)
    return error_response(request.scope, ConflictError("The change conflicts with existing data."))


async def _stale_data(request: Request, exc: Exception) -> JSONResponse:
    return error_response(
        request.scope,
        ConflictError("Someone else changed this object first; reload it and try again."),
    )


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database_pool_exhausted")
    return error_response(
        request.scope, ServiceUnavailableError("The service is busy; try again shortly.")
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    # SQLAlchemy's asyncpg adapter re-raises asyncpg's errors as generic DBAPI classes (a
    # cancelled query arrives as `...asyncpg.Error`); the driver's own class is their cause.
    driver_error = getattr(exc.orig, "__cause__", None) or exc.orig or exc
    cause = type(driver_error).__name__
    if exc.connection_invalidated or cause in {
        "QueryCanceledError",
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "TooManyConnectionsError",
    }:
        log.warning("database_unavailable", cause=cause)
        return error_response(
            request.scope,
            ServiceUnavailableError("The database did not answer in time; try again shortly."),
        )
    log.error("database_error", cause=cause, exc_info=exc)
    report_exception(exc, request.scope)
    return internal_error_response(request.scope)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EtterError, _etter_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(PoolTimeoutError, _pool_timeout)
    app.add_exception_handler(DBAPIError, _database_error)
