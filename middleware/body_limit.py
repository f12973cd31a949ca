"""Bounds on what a request may send, enforced at the edge (pure ASGI), before anything parses
the body or authenticates the caller:

- a request target (path and query string) longer than `max_url_bytes` is refused with a 414
  problem: nothing downstream (routing, the access log, the rate limiter) sees it;
- a body longer than `max_body_bytes` is refused with a 413 problem: at once when the
  declared `Content-Length` is over the bound (nothing is read), and for a body without one
  (chunked) as soon as the bytes received pass it, whatever the app was doing with them.
  Routes named in `route_bounds` (the document upload) have their own, larger bound.

The app may be anywhere in reading the body when the bound is passed (FastAPI turns a failing
read into a 400; a handler might answer anyway): once the bound has been passed, whatever
response the app starts is dropped and the 413 problem is sent in its place.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.exceptions import PayloadTooLargeError, UriTooLongError
from common.problems import error_response


class _BodyTooLarge(Exception):
    """Raised into the app by `receive` when the body passes the bound."""


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_url_bytes: int,
        route_bounds: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes
        self.route_bounds = dict(route_bounds or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        if len(raw_path) + len(scope.get("query_string", b"")) > self.max_url_bytes:
            error = UriTooLongError(
                f"The request target is longer than {self.max_url_bytes} bytes."
            )
            await error_response(scope, error)(scope, receive, send)
            return
        bound = self.route_bounds.get((scope["method"], scope["path"]), self.max_body_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > bound:
            await self._refuse(scope, receive, send, bound)
            return

        received = 0
        exceeded = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > bound:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it never got whole: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except _BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, bound)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, bound: int) -> None:
        error = PayloadTooLargeError(f"The request body is larger than {bound} bytes.")
        response = error_response(scope, error)
        # The rest of the body is not read: the connection cannot be reused after this answer.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) <= 18 else None
    return None
