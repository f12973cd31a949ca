"""One transaction per request, committed after the endpoint returns and before the response
is sent.

Committing in the teardown of a `yield` dependency would run after the response has gone out
(FastAPI >= 0.118), so a failed commit could no longer turn a 2xx into an error. This route
class wraps the whole handler instead: the endpoint runs, the session commits, and only then is
the response handed back to be sent. Any exception rolls back.

Side effects that must happen only if the transaction commits (cache invalidation) are queued
with `after_commit(request, callback)`: they run after the commit and before the response is
sent, so a client that reads after a write never sees the old value, and they are dropped when
the request fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

SESSION_STATE_KEY = "db_session"
AFTER_COMMIT_STATE_KEY = "after_commit"

log = structlog.get_logger("etter.routing")


def request_session(request: Request) -> AsyncSession | None:
    return request.scope.get("state", {}).get(SESSION_STATE_KEY)


def after_commit(request: Request, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` once the request's transaction has committed; never if it rolls back."""
    request.scope.setdefault("state", {}).setdefault(AFTER_COMMIT_STATE_KEY, []).append(callback)


async def _run_after_commit(request: Request) -> None:
    for callback in request.scope.get("state", {}).pop(AFTER_COMMIT_STATE_KEY, []):
        try:
            await callback()
        except Exception:
            # The data is committed: the request has succeeded whatever a side effect does.
            log.exception("after_commit_failed", callback=getattr(callback, "__qualname__", ""))


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle_in_transaction(request: Request) -> Response:
            try:
                response = await handler(request)
                session = request_session(request)
                if session is not None:
                    await session.commit()
            except BaseException:
                request.scope.get("state", {}).pop(AFTER_COMMIT_STATE_KEY, None)
                session = request_session(request)
                if session is not None:
                    await session.rollback()
                raise
            finally:
                session = request_session(request)
                if session is not None:
                    await session.close()
            await _run_after_commit(request)
            return response

        return handle_in_transaction
