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
    DatabaseUnavailableError,
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


# The driver's errors that mean "no usable connection to the database": the server is down or
# restarting, or the connection was cut (restart, failover, pg_terminate_backend). Matched by
# class name along the MRO, so SQLite needs no asyncpg import. A client retrying soon succeeds.
_CONNECTION_LOST = frozenset(
    {
        "ConnectionError",  # OSError: refused, reset, aborted, broken pipe
        "PostgresConnectionError",  # SQLSTATE class 08
        "ConnectionDoesNotExistError",  # asyncpg: the connection was closed under the query
        "CannotConnectNowError",  # 57P03: the database system is starting up / shutting down
        "AdminShutdownError",  # 57P01: terminated by the administrator (or a fast shutdown)
        "CrashShutdownError",  # 57P02
    }
)
# The server is up but cannot take the query now: try again shortly.
_BUSY = frozenset({"QueryCanceledError", "TooManyConnectionsError"})

DATABASE_RETRY_AFTER = 2


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def _database_unavailable(scope: dict[str, Any], cause: str) -> JSONResponse:
    log.warning("database_unavailable", cause=cause)
    return error_response(
        scope,
        DatabaseUnavailableError(
            "The database cannot be reached right now; try again shortly.",
            retry_after=DATABASE_RETRY_AFTER,
        ),
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    # SQLAlchemy's asyncpg adapter re-raises asyncpg's errors as generic DBAPI classes (a
    # cancelled query arrives as `...asyncpg.Error`); the driver's own class is their cause.
    driver_error = getattr(exc.orig, "__cause__", None) or exc.orig or exc
    cause = type(driver_error).__name__
    names = _class_names(driver_error)
    if exc.connection_invalidated or names & _CONNECTION_LOST:
        return _database_unavailable(request.scope, cause)
    if names & _BUSY:
        log.warning("database_busy", cause=cause)
        return error_response(
            request.scope,
            ServiceUnavailableError("The database did not answer in time; try again shortly."),
        )
    log.error("database_error", cause=cause, exc_info=exc)
    report_exception(exc, request.scope)
    return internal_error_response(request.scope)


async def _connection_error(request: Request, exc: Exception) -> JSONResponse:
    """A socket error outside SQLAlchemy's wrapping: asyncpg raises OSError itself while a new
    pooled connection is being opened (refused while PostgreSQL is down, reset mid-handshake).
    Redis errors are redis-py's own classes and fail open where they occur, so a bare
    `ConnectionError` reaching here comes from the database driver."""
    return _database_unavailable(request.scope, type(exc).__name__)


async def _timeout_error(request: Request, exc: Exception) -> JSONResponse:
    """A connect that did not finish in time (asyncpg's `timeout`, set to DB_POOL_TIMEOUT)."""
    log.warning("dependency_timeout", cause=type(exc).__name__)
    return error_response(
        request.scope,
        ServiceUnavailableError("A backing service did not answer in time; try again shortly."),
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EtterError, _etter_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(PoolTimeoutError, _pool_timeout)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(ConnectionError, _connection_error)
    app.add_exception_handler(TimeoutError, _timeout_error)
