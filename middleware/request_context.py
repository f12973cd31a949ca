"""Request id, log context and the last line of defence for unexpected errors (pure ASGI).

Outermost of Etter's middleware: it gives every request an id (a valid incoming `X-Request-ID`
is kept, anything else replaced), binds it to the log context, echoes it on the response, and
turns any exception that escaped the app's handlers into the generic 500 problem, so that even
that response carries the id.
"""

from __future__ import annotations

import re
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.problems import REQUEST_ID_STATE_KEY, internal_error_response

REQUEST_ID_HEADER = b"x-request-id"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,128}$")

log = structlog.get_logger("etter.errors")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if VALID_REQUEST_ID.match(candidate) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if response_started:
                raise  # too late for a problem response; the server closes the connection
            await internal_error_response(scope)(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()
