"""Security headers on every response (pure ASGI).

The API answers JSON, never pages, so its Content-Security-Policy forbids everything: a response
that a browser is tricked into rendering can run nothing and be framed nowhere. The interactive
docs are pages (Swagger UI loads its script and styles from a CDN and runs an inline script), so
they get the other headers but not that policy. A header the route set itself is left alone.

Caching: an answer the route did not mark otherwise is `Cache-Control: no-store` (API answers
are per caller and may hold personal data: no browser or proxy keeps them); one with an `ETag`
is `private, no-cache` (the client may keep it and revalidate). In production every response
also carries `Strict-Transport-Security` (TLS ends at the load balancer; the header tells the
browser never to come back over plain HTTP).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
CSP_HEADER = b"content-security-policy"
CACHE_CONTROL = b"cache-control"
ETAG = b"etag"
NO_STORE = (CACHE_CONTROL, b"no-store")
REVALIDATE = (CACHE_CONTROL, b"private, no-cache")
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(
        self, app: ASGIApp, *, page_paths: Sequence[str] = ("/docs",), hsts: bool = False
    ) -> None:
        self.app = app
        self.page_paths = tuple(page_paths)
        base = (*BASE_HEADERS, HSTS) if hsts else BASE_HEADERS
        self.page_headers = base
        self.api_headers = (*base, (CSP_HEADER, API_CSP))
        self.names = frozenset(name for name, _ in self.api_headers) | {CACHE_CONTROL, ETAG}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_page = scope["path"].startswith(self.page_paths)
        extra = self.page_headers if is_page else self.api_headers
        names = self.names

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # Usually the route set none of ours: one plain pass finds that out, and the
                # precomputed tuple goes on whole.
                for name, _ in headers:
                    if name.lower() in names:
                        present = {n.lower() for n, _ in headers}
                        headers.extend(h for h in extra if h[0] not in present)
                        if CACHE_CONTROL not in present:
                            headers.append(REVALIDATE if ETAG in present else NO_STORE)
                        break
                else:
                    headers.extend(extra)
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
