"""gzip for clients that accept it: Starlette's pure-ASGI `GZipMiddleware`, configured.

Starlette's middleware already does what Etter needs (checked against its source): bodies below
`minimum_size` pass untouched; `Vary: Accept-Encoding` is added whenever the size would allow
compression; a response that already has a `Content-Encoding` passes through (no double
compression); a streamed body is compressed chunk by chunk with a sync flush and sent as it
comes, never buffered; large chunks are compressed in a worker thread. Two gaps are closed here:

- a client that refuses gzip explicitly (`gzip;q=0`) gets identity, where Starlette only looks
  for the substring `gzip`;
- formats that are compressed already (PDF, the zip-based office formats) are not recompressed.
"""

from __future__ import annotations

from starlette.middleware.gzip import (
    DEFAULT_EXCLUDED_CONTENT_TYPES,
    GZipMiddleware,
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


class CompressionMiddleware(GZipMiddleware):
    def __init__(self, app: ASGIApp, *, minimum_size: int, compresslevel: int) -> None:
        super().__init__(
            app,
            minimum_size=minimum_size,
            compresslevel=compresslevel,
            exclude_content_types=ALREADY_COMPRESSED_TYPES,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding" and refuses_gzip(value.decode("latin-1")):
                    responder = IdentityResponder(
                        self.app,
                        self.minimum_size,
                        exclude_content_types=self.exclude_content_types,
                    )
                    await responder(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)
