"""HTTP revalidation for cacheable GETs: an ETag on the body, 304 for a matching If-None-Match.

Used by routes whose body is a response schema (often straight from the service cache):
`return etag_response(request, await service.detail(...))`. The ETag is weak (`W/"..."`) because
the compression middleware may send the same representation gzipped; the comparison is the weak
one RFC 9110 prescribes for If-None-Match. `Cache-Control: private, no-cache` lets a client (and
no shared cache: the answers depend on the caller) keep the body and revalidate every time,
which then costs a 304 and no body.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import pydantic_core
from fastapi import Request, Response

CACHE_CONTROL: Final = "private, no-cache"
# For the routes' `responses=`: documents the 304 in the OpenAPI document.
NOT_MODIFIED: Final[dict[int | str, dict[str, Any]]] = {
    304: {"description": "Not modified: the If-None-Match header matched the current ETag"}
}


def etag_of(body: bytes) -> str:
    # blake2b of a JSON body of at most tens of KiB takes microseconds: not worth a thread.
    return f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def etag_response(request: Request, value: Any) -> Response:
    """`value` (a response schema, or a list of them) as JSON with an ETag, or 304 with none."""
    body = pydantic_core.to_json(value)
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Authorization"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
