"""Request id, log context, the access log, and the last line of defence (pure ASGI).

Above all of Etter's other middleware (only the security headers wrap it), so that everything
below it, rate-limit refusals included, is logged with the request id:

- every request gets an id (a valid incoming `X-Request-ID` is kept, anything else replaced),
  bound to the log context and echoed on the response;
- the client address is resolved once (trusted proxies only) for the layers below;
- one `request` event per request: method, route template, status, duration, response size,
  user and company when known, client address and request id;
- an exception that escaped the app's handlers is logged with its stack and answered with the
  generic 500 problem, which carries the id as well.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.apm import name_server_span
from common.error_tracker import report_exception
from common.problems import REQUEST_ID_STATE_KEY, internal_error_response
from middleware.client_ip import CLIENT_IP_STATE_KEY, Network, resolve_client_ip

REQUEST_ID_HEADER = b"x-request-id"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,128}$")
# Logged when the client went away before a response was started (nginx's convention).
CLIENT_CLOSED_REQUEST = 499

ACCESS_LOGGER = "etter.access"
# What the access log keeps of a path (the route template names the endpoint anyway).
MAX_LOGGED_PATH = 512
access_log = structlog.get_logger(ACCESS_LOGGER)
error_log = structlog.get_logger("etter.errors")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if VALID_REQUEST_ID.match(candidate) else None
    return None


def route_template(scope: Scope) -> str | None:
    """`/api/v1/users/{user_id}` rather than `/api/v1/users/42`; None when no route matched.

    FastAPI keeps included routers unflattened: the matched route's own `path` lacks the
    include prefix, and the full template is on the effective route context it records.
    """
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if template:
        return template
    return getattr(scope.get("route"), "path", None)


def logged_path(path: str) -> str:
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}...[{len(path) - MAX_LOGGED_PATH} characters cut]"


class RequestLoggingMiddleware:
    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = incoming_request_id(scope) or os.urandom(16).hex()  # 128 random bits
        client_ip = resolve_client_ip(scope, self.trusted_proxies)
        state = scope.setdefault("state", {})
        state[REQUEST_ID_STATE_KEY] = request_id
        state[CLIENT_IP_STATE_KEY] = client_ip
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        status: int | None = None
        sent_bytes = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, client_ip=client_ip)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            error_log.exception(
                "unhandled_error", method=scope["method"], route=route_template(scope)
            )
            report_exception(error, scope)
            if status is not None:
                raise  # too late for a problem response; the server closes the connection
            await internal_error_response(scope)(scope, receive, send_with_id)
        finally:
            name_server_span(scope["method"], route_template(scope) or "unmatched")
            self._log_access(scope, status, sent_bytes, started_at, client_ip)
            structlog.contextvars.clear_contextvars()

    def _log_access(
        self, scope: Scope, status: int | None, sent_bytes: int, started_at: float, client_ip: str
    ) -> None:
        status = CLIENT_CLOSED_REQUEST if status is None else status
        principal = scope["state"].get("principal")
        (access_log.error if status >= 500 else access_log.info)(
            "request",
            method=scope["method"],
            route=route_template(scope),
            path=logged_path(scope["path"]),
            status=status,
            duration_ms=round((time.perf_counter() - started_at) * 1000, 2),
            response_bytes=sent_bytes,
            user_id=getattr(principal, "user_id", None),
            company_id=getattr(principal, "company_id", None),
            client_ip=client_ip,
        )
