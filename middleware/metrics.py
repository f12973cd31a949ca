"""Prometheus HTTP metrics (pure ASGI): requests, latency and requests in flight by route
template, and the number of SQL statements each request sent.

Just inside the security headers, outside the access log: it sees every response, the
generic 500 that the logging middleware makes of an escaped error and the rate limiter's 429s
included. The route label is the matched route's template (`/api/v1/users/{user_id}`), or
`unmatched` for a path no route knows: never the raw path, whose values are unbounded.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.metrics import (
    DB_STATEMENTS_PER_REQUEST,
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUESTS,
    StatementCount,
    current_statements,
)
from middleware.logging_middleware import CLIENT_CLOSED_REQUEST, route_template

UNMATCHED_ROUTE = "unmatched"
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
# Any other method a client invents is one label value, not one each.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Label children are looked up once per (method, route, class), then reused.
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = CLIENT_CLOSED_REQUEST
        statements = StatementCount()
        token = current_statements.set(statements)

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_status)
        except Exception:
            status = 500
            raise
        finally:
            HTTP_IN_FLIGHT.dec()
            current_statements.reset(token)
            self._record(scope, status, time.perf_counter() - started, statements.count)

    def _record(self, scope: Scope, status: int, seconds: float, statements: int) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        route = route_template(scope) or UNMATCHED_ROUTE
        key = (method, route, status // 100)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(method, route, _STATUS_CLASSES.get(status // 100, "5xx")),
                HTTP_DURATION.labels(method, route),
                DB_STATEMENTS_PER_REQUEST.labels(route),
            )
            # Bounded by routes × methods × classes; "unmatched" folds every unknown path.
            self._children[key] = children
        requests, duration, per_request = children
        requests.inc()
        duration.observe(seconds)
        per_request.observe(statements)
