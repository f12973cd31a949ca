"""HTTP revalidation for cacheable GETs: an ETag on the body, 304 for a matching If-None-Match.

Used by routes whose body is a response schema (often straight from the service cache):
`return etag_response(request, await service.detail(...))`. The ETag is weak (`W/"..."`) because
the compression middleware may send the same representation gzipped; the comparison is the weak
one RFC 9110 prescribes for If-None-Match. `Cache-Control: private, no-cache` lets a client (and
no shared cache: the answers depend on the caller) keep the body and revalidate every time,
which then costs a 304 and no body.

The same ETag guards edits: `PATCH` with `If-Match` (`check_if_match`) goes ahead only if the
resource's current representation, read under a row lock in the edit's transaction, still has
one of the listed ETags; otherwise 412. The comparison is the weak one (the opaque tags must be
equal; `W/"x"` and `"x"` are the same tag): Etter's tags are a hash of the uncompressed JSON
representation, weak only because gzip may change the bytes on the wire, so two equal tags do
mean the same state. `*` matches any existing resource. A malformed header is 400. Without
If-Match an edit is allowed (last writer wins), except documents, which require a version.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Final

import pydantic_core
from fastapi import Header, Request, Response

from common.exceptions import BadRequestError, PreconditionFailedError
from schemas.problems import Problem

CACHE_CONTROL: Final = "private, no-cache"
# For the routes' `responses=`: documents the 304 in the OpenAPI document.
NOT_MODIFIED: Final[dict[int | str, dict[str, Any]]] = {
    304: {"description": "Not modified: the If-None-Match header matched the current ETag"}
}


ENTITY_TAG = re.compile(r'(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"')
# For the PATCH routes' `responses=`.
PRECONDITION_FAILED: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": Problem, "description": "The If-Match header is malformed"},
    412: {"model": Problem, "description": "If-Match: the resource has changed since you read it"},
}
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description="The ETag of the representation you read (GET): the change is applied "
        "only if the resource is still in that state, else 412. `*`: any existing state.",
    ),
]


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


def if_match_tags(if_match: str) -> list[str] | None:
    """The opaque tags an If-Match header lists (None for `*`); 400 if it is malformed."""
    value = if_match.strip()
    if value == "*":
        return None
    tags = []
    for candidate in value.split(","):
        match = ENTITY_TAG.fullmatch(candidate.strip())
        if match is None:
            raise BadRequestError(
                'If-Match must be "*" or ETags as GET sent them, e.g. W/"5d41402abc4b2a76".'
            )
        tags.append(match.group(1))
    return tags


def check_if_match(if_match: str | None, current: Any) -> None:
    """412 unless `current` (the representation GET would send now) has a listed ETag."""
    if if_match is None:
        return
    tags = if_match_tags(if_match)
    if tags is None:
        return  # `*`: the resource exists (the caller read it, or it was 404)
    opaque = etag_of(pydantic_core.to_json(current)).removeprefix("W/").strip('"')
    if opaque not in tags:
        raise PreconditionFailedError(
            "The resource has changed since you read it (If-Match). Reload it and retry."
        )


def with_etag(response: Response, value: Any) -> Any:
    """`value` as the body, its ETag on `response` (the one a GET would send next)."""
    response.headers["ETag"] = etag_of(pydantic_core.to_json(value))
    return value
