"""One transaction per request, committed after the endpoint returns and before the response
is sent.

Committing in the teardown of a `yield` dependency would run after the response has gone out
(FastAPI >= 0.118), so a failed commit could no longer turn a 2xx into an error. This route
class wraps the whole handler instead: the endpoint runs, the session commits, and only then is
the response handed back to be sent. Any exception rolls back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

SESSION_STATE_KEY = "db_session"


def request_session(request: Request) -> AsyncSession | None:
    return request.scope.get("state", {}).get(SESSION_STATE_KEY)


class TransactionalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle_in_transaction(request: Request) -> Response:
            try:
                response = await handler(request)
                session = request_session(request)
                if session is not None:
                    await session.commit()
                return response
            except BaseException:
                session = request_session(request)
                if session is not None:
                    await session.rollback()
                raise
            finally:
                session = request_session(request)
                if session is not None:
                    await session.close()

        return handle_in_transaction
