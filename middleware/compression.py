"""gzip for clients that accept it: Starlette's `GZipMiddleware` (pure ASGI), with what Etter's
contract adds to it:

- a client that refuses gzip explicitly (`gzip;q=0`) gets identity, and the coding's name is
  matched in any case (Starlette looks for the substring `gzip` only);
- the zip-based office formats, PDF and 7z are compressed already and pass untouched, besides
  Starlette's own list (images, archives, event streams).

Starlette does the rest: bodies below `minimum_size` pass untouched, `Vary: Accept-Encoding`
whenever the size allows compression, no double compression (`Content-Encoding` set), no 206,
streams compressed chunk by chunk as they come, large chunks in a worker thread.
"""

from __future__ import annotations

from starlette.middleware.gzip import (
    DEFAULT_EXCLUDED_CONTENT_TYPES,
    GZipMiddleware,
    GZipResponder,
    IdentityResponder,
)
from starlette.types import ASGIApp, Receive, Scope, Send

ALREADY_COMPRESSED_TYPES = (
    *DEFAULT_EXCLUDED_CONTENT_TYPES,
    "application/pdf",
    "application/x-7z-compressed",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)


def refuses_gzip(accept_encoding: str) -> bool:
    """True when the header names gzip with a zero quality (`gzip;q=0`, `gzip; q=0.000`)."""
    for coding in accept_encoding.split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() != "gzip":
            continue
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value.strip()) == 0
                except ValueError:
                    return False
    return False


def accepts_gzip(accept_encoding: bytes) -> bool:
    """gzip named, in any case, and not refused with `q=0`."""
    value = accept_encoding.decode("latin-1")
    return "gzip" in value.lower() and not refuses_gzip(value)


class CompressionMiddleware(GZipMiddleware):
    def __init__(self, app: ASGIApp, *, minimum_size: int, compresslevel: int) -> None:
        super().__init__(
            app,
            minimum_size=minimum_size,
            compresslevel=compresslevel,
            exclude_content_types=ALREADY_COMPRESSED_TYPES,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Several fields mean the same as one with their values joined (RFC 9110).
        accept = b",".join(v for k, v in scope["headers"] if k == b"accept-encoding")
        responder: IdentityResponder
        if accepts_gzip(accept):
            responder = GZipResponder(
                self.app,
                self.minimum_size,
                compresslevel=self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:
            responder = IdentityResponder(
                self.app, self.minimum_size, exclude_content_types=self.exclude_content_types
            )
        await responder(scope, receive, send)
