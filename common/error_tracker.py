"""Sentry error tracking, on when SENTRY_DSN is set (off by default and in the embedded mode).

`init_error_tracking` starts the SDK with its FastAPI, Starlette, SQLAlchemy and Redis
integrations, and `instrument_event_loop` (from the lifespan) its asyncio one;
`report_exception` sends an unexpected error (the generic 500 paths: the request-logging
middleware and the database-error handler) with the request id. What leaves the process is
scrubbed by `scrub_event`: no cookies, Authorization headers, tokens, passwords or e-mail
addresses, whatever part of the event they hide in; client errors (4xx) are never reported.
Every event of a request is tagged with its `request_id`, `user_id` and `company_id` (from the
log context the request middleware and the auth dependency bind).
"""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
import structlog
from sentry_sdk.integrations.asyncio import enable_asyncio_integration
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber

from common import redaction
from settings.config import Settings

REDACTED = "[Filtered]"
# The log's secret keys, Sentry's own deny lists, and what identifies a person.
SECRET_KEYS = frozenset(
    {*redaction.SECRET_KEYS, *DEFAULT_DENYLIST, *DEFAULT_PII_DENYLIST, "email", "username"}
)
# Bounded quantifiers (RFC 5321 lengths) keep a failed attempt cheap: linear in the text.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,24}")
_MAX_DEPTH = 20
# The log-context keys that become tags on every event of the request.
CONTEXT_TAGS = ("request_id", "user_id", "company_id")

log = structlog.get_logger("etter.errors")


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def scrub_text(value: str) -> str:
    value = redaction.scrub_text(value)  # bearer credentials and JWTs, in linear time
    return _EMAIL.sub(REDACTED, value) if "@" in value else value


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth >= _MAX_DEPTH:
        return REDACTED if isinstance(value, dict | list | tuple) else value
    if isinstance(value, dict):
        return {
            key: REDACTED if _secret_key(key) else _scrub(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        # Headers and query strings come as [name, value] pairs.
        if len(value) == 2 and _secret_key(value[0]):
            return [value[0], REDACTED]
        return [_scrub(item, depth + 1) for item in value]
    return value


def _tag_request(event: dict[str, Any]) -> None:
    context = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    for key in CONTEXT_TAGS:
        if context.get(key) is not None and key not in tags:
            tags[key] = str(context[key])


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send (and before_send_transaction): tag with the request, then scrub it all."""
    _tag_request(event)
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        # A query string is one text; its values may be addresses or tokens.
        if isinstance(request.get("query_string"), str):
            request["query_string"] = scrub_text(request["query_string"])
    user = event.get("user")
    if isinstance(user, dict):  # ids only: no e-mail, name or address
        event["user"] = {k: v for k, v in user.items() if k == "id"}
    return _scrub(event)


def _drop_client_errors(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    exc_info = hint.get("exc_info")
    if exc_info is not None:
        status = getattr(exc_info[1], "status_code", None) or getattr(exc_info[1], "status", None)
        if isinstance(status, int) and 400 <= status < 500:
            return None
    return scrub_event(event, hint)


def init_error_tracking(settings: Settings, release: str) -> bool:
    """Start Sentry when SENTRY_DSN is set; True when it did."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    server_errors = {*range(500, 600)}
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.environment.value,
        release=release,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        profiles_sample_rate=settings.sentry_profiles_sample_rate,
        # No PII: left unset, since sentry-sdk deprecated `send_default_pii` (unset means
        # False) for `data_collection`, whose explicit form collects user info by default.
        max_request_body_size="never",
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=sorted(SECRET_KEYS), recursive=True),
        before_send=_drop_client_errors,
        before_send_transaction=scrub_event,
        integrations=[
            StarletteIntegration(
                transaction_style="endpoint", failed_request_status_codes=server_errors
            ),
            FastApiIntegration(
                transaction_style="endpoint", failed_request_status_codes=server_errors
            ),
            SqlalchemyIntegration(),
            RedisIntegration(),
        ],
    )
    log.info("sentry_enabled", environment=settings.sentry_environment or settings.environment)
    return True


def instrument_event_loop() -> None:
    """The asyncio integration patches the running loop: called from the app's lifespan, since
    `init_error_tracking` runs where there may be no loop yet (gunicorn loads the app first)."""
    enable_asyncio_integration()


def report_exception(error: BaseException, scope: dict[str, Any] | None = None) -> None:
    """Send an unexpected error to Sentry (no-op when it is off), tagged with the request."""
    if not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as sentry_scope:
        state = (scope or {}).get("state", {})
        if state.get("request_id"):
            sentry_scope.set_tag("request_id", state["request_id"])
        principal = state.get("principal")
        if principal is not None:
            sentry_scope.set_tag("user_id", str(principal.user_id))
            sentry_scope.set_tag("company_id", str(principal.company_id))
            sentry_scope.set_user({"id": str(principal.user_id)})
        if scope is not None:
            sentry_scope.set_tag("route", _route(scope))
        sentry_sdk.capture_exception(error)


def _route(scope: dict[str, Any]) -> str:
    context = scope.get("fastapi", {}).get("effective_route_context")
    return getattr(context, "path_format", None) or getattr(scope.get("route"), "path", "unmatched")


def flush(timeout: float = 2.0) -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.flush(timeout=timeout)
