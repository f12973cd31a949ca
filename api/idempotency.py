"""`Idempotency-Key` on creating POSTs (IETF httpapi idempotency-key draft), the HTTP side.

A route opts in with `dependencies=[Idempotent]` and `responses=with_idempotency(...)`. The
dependency runs after the caller is authenticated (keys are per caller, so anonymous requests
cannot use one) and after FastAPI has read the body, and before the endpoint does any work:

- no header: nothing happens;
- a key never seen (or expired): claimed, the request runs; the response is stored only once
  its transaction has committed (`after_commit`), the claim released if it fails
  (`after_rollback`): a failed request can be retried with the same key;
- the same key and the same request (fingerprint: method, path, query and body; for a
  multipart upload, its form fields and file bytes, so another boundary does not matter):
  the stored response is replayed — same status, headers (Location, ETag) and body — with
  `Idempotent-Replayed: true`;
- the same key while the first request still runs: 409 `idempotency-key-in-use`;
- the same key with another request: 422 `idempotency-key-reused`;
- the store (Redis) unreachable: 503 with Retry-After. A client that sends a key asks for
  at-most-once; running the request unguarded could create the duplicate the key exists to
  prevent, while a 503 is always safe to retry.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Final

import structlog
from fastapi import Depends, FastAPI, Header, Request, Response, UploadFile
from starlette.datastructures import UploadFile as StarletteUploadFile

from api.deps import CurrentUser
from common.exceptions import (
    BadRequestError,
    FieldError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    ServiceUnavailableError,
)
from common.idempotency_store import (
    IdempotencyStore,
    Record,
    StoredResponse,
    StoreUnavailableError,
    new_claim,
    storage_key,
)
from common.request_deps import SettingsDep
from common.transactions import after_commit, after_rollback, committed_response
from schemas.problems import Problem

REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
# Not replayed: recomputed for every response, or describing this request only.
_NOT_STORED: Final = frozenset({"content-length", "x-request-id", "set-cookie", "date"})
_CHUNK: Final = 64 * 1024

log = structlog.get_logger("etter.idempotency")

IDEMPOTENCY_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": Problem, "description": "The Idempotency-Key header is malformed"},
    409: {"model": Problem, "description": "A request with this Idempotency-Key is still running"},
    422: {
        "model": Problem,
        "description": "Validation failed, or the Idempotency-Key was used for another request",
    },
    503: {"model": Problem, "description": "Idempotency keys cannot be checked right now"},
}


def with_idempotency(
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A route's own documented responses plus the idempotency ones (descriptions joined)."""
    merged = {status: dict(entry) for status, entry in IDEMPOTENCY_RESPONSES.items()}
    for status, entry in (responses or {}).items():
        if status in merged:
            entry = {
                **entry,
                "description": f"{entry['description']}; or: {merged[status]['description']}",
            }
        merged[status] = entry
    return merged


class IdempotentReplay(Exception):
    """Raised by the dependency to answer with the stored response instead of running."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.stored = stored


def parse_key(value: str) -> str:
    """The key, bare or as a structured-field string (`"abc"`, as the draft writes it)."""
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(
        " " <= ch <= "~" and ch not in '"\\' for ch in key
    ):
        raise BadRequestError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            '(no quotes or backslashes), e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324".'
        )
    return key


def _part(digest: Any, data: bytes) -> None:
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


async def request_fingerprint(request: Request) -> str:
    """What makes two requests "the same" for a key: method, path, query and the body."""
    digest = hashlib.sha256()
    for piece in (request.method, request.url.path, request.url.query):
        _part(digest, piece.encode())
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        # Already parsed by FastAPI (cached on the request); the boundary is left out.
        form = await request.form()
        for name, value in form.multi_items():
            _part(digest, name.encode())
            if isinstance(value, StarletteUploadFile | UploadFile):
                _part(digest, (value.filename or "").encode())
                _part(digest, (value.content_type or "").encode())
                while chunk := await value.read(_CHUNK):
                    _part(digest, chunk)
                await value.seek(0)  # the endpoint reads the file next
            else:
                _part(digest, b"=" + value.encode())
    else:
        _part(digest, await request.body())  # cached: FastAPI read it for the body parameter
    return digest.hexdigest()


def _store(request: Request) -> IdempotencyStore:
    return request.app.state.idempotency


async def idempotency(
    request: Request,
    principal: CurrentUser,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_KEY_LENGTH + 2,
            description="Makes a retry safe: the same key and body replay the first response "
            "(marked `Idempotent-Replayed: true`) instead of creating again. Unique per "
            "request, e.g. a UUID; kept for `IDEMPOTENCY_TTL_SECONDS` (24 h).",
        ),
    ] = None,
) -> None:
    if idempotency_key is None:
        return
    key = storage_key(principal.user_id, parse_key(idempotency_key))
    fingerprint = await request_fingerprint(request)
    claim = new_claim(fingerprint)
    store = _store(request)
    try:
        current = await store.begin(key, claim, settings.idempotency_lock_seconds * 1000)
    except StoreUnavailableError as error:
        log.warning("idempotency_store_unavailable", operation="begin", error=str(error))
        raise ServiceUnavailableError(
            "Idempotency keys cannot be checked right now; retry the request shortly."
        ) from None
    if current is not None:
        if current.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(
                "This Idempotency-Key was already used for a different request.",
                errors=[FieldError("header.Idempotency-Key", "used for a different request")],
            )
        if current.response is None:
            raise IdempotencyKeyInUseError(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                headers={"Retry-After": "1"},
            )
        raise IdempotentReplay(current.response)

    async def store_response() -> None:
        response = committed_response(request)
        if response is None:
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
            if name.decode("latin-1").lower() not in _NOT_STORED
        ]
        record = Record(
            fingerprint=fingerprint,
            token=claim.token,
            response=StoredResponse(response.status_code, headers, bytes(response.body)),
        )
        try:
            await store.complete(key, record, settings.idempotency_ttl_seconds * 1000)
        except StoreUnavailableError as error:
            # Committed, but not recorded: the claim expires after IDEMPOTENCY_LOCK_SECONDS;
            # until then a retry gets 409, after it the request would run again.
            log.error("idempotency_store_failed", operation="complete", error=str(error))

    async def release() -> None:
        try:
            await store.release(key, claim)
        except StoreUnavailableError as error:
            log.warning("idempotency_store_failed", operation="release", error=str(error))

    after_commit(request, store_response)
    after_rollback(request, release)


Idempotent = Depends(idempotency)


async def _replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    stored = exc.stored
    response = Response(content=stored.body, status_code=stored.status)
    for name, value in stored.headers:
        response.headers.append(name, value)
    response.headers[REPLAYED_HEADER] = "true"
    return response


def install_idempotency(app: FastAPI) -> None:
    app.add_exception_handler(IdempotentReplay, _replay)
