"""One transaction per request, committed after the endpoint returns and before the response
is sent.

Committing in the teardown of a `yield` dependency would run after the response has gone out
(FastAPI >= 0.118), so a failed commit could no longer turn a 2xx into an error. This route
class wraps the whole handler instead: the endpoint runs, the session commits, and only then is
the response handed back to be sent. Any exception rolls back.

Side effects that must happen only if the transaction commits (cache invalidation) are queued
with `after_commit(request, callback)`: they run after the commit and before the response is
sent, so a client that reads after a write never sees the old value, and they are dropped when
the request fails. They may read the response about to be sent (`committed_response`).
Clean-ups for a failed request (an idempotency key's in-flight claim) are queued with
`after_rollback`: they run after the rollback, never after a commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

SESSION_STATE_KEY = "db_session"
AFTER_COMMIT_STATE_KEY = "after_commit"
AFTER_ROLLBACK_STATE_KEY = "after_rollback"
RESPONSE_STATE_KEY = "committed_response"

log = structlog.get_logger("etter.routing")


def request_session(request: Request) -> AsyncSession | None:
    return request.scope.get("state", {}).get(SESSION_STATE_KEY)


def after_commit(request: Request, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` once the request's transaction has committed; never if it rolls back."""
    request.scope.setdefault("state", {}).setdefault(AFTER_COMMIT_STATE_KEY, []).append(callback)


def after_rollback(request: Request, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` if the request fails and its transaction rolls back; never after a commit."""
    request.scope.setdefault("state", {}).setdefault(AFTER_ROLLBACK_STATE_KEY, []).append(callback)


def committed_response(request: Request) -> Response | None:
    """The response being sent, for after-commit callbacks (None before the commit)."""
    return request.scope.get("state", {}).get(RESPONSE_STATE_KEY)


async def _run(request: Request, state_key: str, event: str) -> None:
    for callback in request.scope.get("state", {}).pop(state_key, []):
        try:
            await callback()
        except Exception:
            # After a commit the request has succeeded whatever a side effect does; after a
            # rollback the original error is what the client must see.
            log.exception(event, callback=getattr(callback, "__qualname__", ""))


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
                try:
                    session = request_session(request)
                    if session is not None:
                        await session.rollback()
                finally:  # a failed rollback (connection lost) must not keep a claim held
                    await _run(request, AFTER_ROLLBACK_STATE_KEY, "after_rollback_failed")
                raise
            finally:
                session = request_session(request)
                if session is not None:
                    await session.close()
            state = request.scope.setdefault("state", {})
            state.pop(AFTER_ROLLBACK_STATE_KEY, None)
            state[RESPONSE_STATE_KEY] = response
            await _run(request, AFTER_COMMIT_STATE_KEY, "after_commit_failed")
            return response

        return handle_in_transaction
