"""gzip for clients that accept it (pure ASGI).

What it guarantees:
- bodies below `minimum_size` (sent in one message) pass untouched;
- `Vary: Accept-Encoding` is added whenever the size allows compression, gzip or not;
- a response that already has a `Content-Encoding` passes through (no double compression), as
  do partial content (206) and formats that are compressed already (images, archives, PDF, the
  zip-based office formats);
- a streamed body is compressed chunk by chunk with a sync flush and sent as it comes, never
  buffered; chunks of `thread_minimum_size` or more are compressed in a worker thread;
- a client that refuses gzip explicitly (`gzip;q=0`) gets identity.

It does what Starlette's `GZipMiddleware` does, but that one costs several microseconds on
every request however small the response: it builds a `Headers` view of the request, a
responder object that normalises the excluded content types again, and another `Headers` view
of the response. Most API answers are small, so here everything that does not depend on the
request is computed once, the request's header is read in one pass over the raw headers (its
verdict remembered per distinct value), and the per-response state lives in one slotted
object.
"""

from __future__ import annotations

import zlib

import anyio
import anyio.lowlevel
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALREADY_COMPRESSED_TYPES = frozenset(
    {
        b"application/grpc",
        b"application/gzip",
        b"application/x-gzip",
        b"application/zip",
        b"application/x-7z-compressed",
        b"application/pdf",
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"application/vnd.openxmlformats-officedocument.presentationml.presentation",
        b"audio/*",
        b"font/woff",
        b"font/woff2",
        b"image/avif",
        b"image/gif",
        b"image/jpeg",
        b"image/png",
        b"image/webp",
        b"text/event-stream",
        b"video/*",
    }
)
THREAD_MINIMUM_SIZE = 128 * 1024
# Distinct Accept-Encoding values are few (one per browser or client library); the cap keeps a
# client that sends random ones from growing the memo without bound.
_MEMO_SIZE = 1024

_thread_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "etter_gzip_thread_limiter"
)


def _compression_threads() -> anyio.CapacityLimiter:
    # Its own limiter, so large downloads cannot take every worker thread from the rest of
    # the app (file I/O, password hashing).
    try:
        return _thread_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(40)
        _thread_limiter.set(limiter)
        return limiter


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


_accepts_memo: dict[bytes, bool] = {}


def accepts_gzip(accept_encoding: bytes) -> bool:
    """gzip named (Starlette's test, a substring) and not refused with `q=0`."""
    known = _accepts_memo.get(accept_encoding)
    if known is None:
        value = accept_encoding.decode("latin-1")
        known = "gzip" in value.lower() and not refuses_gzip(value)
        if len(_accepts_memo) < _MEMO_SIZE:
            _accepts_memo[accept_encoding] = known
    return known


def _with_vary(headers: list[tuple[bytes, bytes]]) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"accept-encoding" not in value.lower():
                headers[index] = (name, value + b", Accept-Encoding")
            return
    headers.append((b"vary", b"Accept-Encoding"))


class _Response:
    """One response's state between its start message and its body messages."""

    __slots__ = (
        "compresslevel",
        "compressor",
        "gzip",
        "minimum_size",
        "passthrough",
        "send",
        "start",
        "started",
    )

    def __init__(self, send: Send, gzip: bool, minimum_size: int, compresslevel: int) -> None:
        self.send = send
        self.gzip = gzip
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.start: Message | None = None
        self.passthrough = False
        self.started = False  # the first body message went out
        self.compressor: zlib._Compress | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if self.passthrough or kind in ("http.response.early_hint", "http.response.trailers"):
            await self.send(message)
        elif kind == "http.response.start":
            self._on_start(message)
            if self.passthrough:
                await self.send(message)
        elif kind == "http.response.body":
            if self.started:
                if self.gzip:
                    body = message.get("body", b"")
                    message["body"] = await self._compress(body, message.get("more_body", False))
                await self.send(message)
            else:
                self.started = True
                await self._first_body(message)
        elif kind == "http.response.pathsend" and self.start is not None:
            # A file sent by the server itself: not ours to compress.
            await self.send(self.start)
            await self.send(message)
        else:
            await self.send(message)

    def _on_start(self, message: Message) -> None:
        # Held back until the first body says whether it is large enough to compress.
        self.start = message
        if message["status"] == 206:
            self.passthrough = True
            return
        # Header names are lower case in ASGI (Starlette's own lookups rely on it too).
        for name, value in message.get("headers", ()):
            if name == b"content-encoding":
                self.passthrough = True
                return
            if name == b"content-type":
                media_type = value.partition(b";")[0].strip().lower()
                if (
                    media_type in ALREADY_COMPRESSED_TYPES
                    or media_type.partition(b"/")[0] + b"/*" in ALREADY_COMPRESSED_TYPES
                    or media_type.startswith(b"application/grpc+")
                ):
                    self.passthrough = True
                    return

    async def _first_body(self, message: Message) -> None:
        start = self.start
        assert start is not None, "a body before the response start"
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if len(body) < self.minimum_size and not more_body:
            await self.send(start)
            await self.send(message)
            return
        headers = list(start.get("headers", ()))
        _with_vary(headers)
        if self.gzip:
            message["body"] = await self._compress(body, more_body)
            headers = [h for h in headers if h[0].lower() != b"content-length"]
            headers.append((b"content-encoding", b"gzip"))
            if not more_body and not start.get("trailers", False):
                headers.append((b"content-length", str(len(message["body"])).encode()))
        start["headers"] = headers
        await self.send(start)
        await self.send(message)

    async def _compress(self, body: bytes, more_body: bool) -> bytes:
        if self.compressor is None:
            self.compressor = zlib.compressobj(
                self.compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS
            )
        if len(body) >= THREAD_MINIMUM_SIZE:
            # Compressing a large chunk inline would hold up every other request on the loop.
            return await anyio.to_thread.run_sync(
                self._compress_now, body, more_body, limiter=_compression_threads()
            )
        return self._compress_now(body, more_body)

    def _compress_now(self, body: bytes, more_body: bool) -> bytes:
        assert self.compressor is not None
        flush = zlib.Z_SYNC_FLUSH if more_body else zlib.Z_FINISH
        return self.compressor.compress(body) + self.compressor.flush(flush)


class CompressionMiddleware:
    def __init__(self, app: ASGIApp, *, minimum_size: int, compresslevel: int) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accept: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                # Several fields mean the same as one with their values joined (RFC 9110).
                accept = value if accept is None else accept + b"," + value
        gzip = accepts_gzip(accept) if accept else False
        response = _Response(send, gzip, self.minimum_size, self.compresslevel)
        await self.app(scope, receive, response)
