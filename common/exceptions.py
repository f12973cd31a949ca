"""Etter's exception model: one base class, a small hierarchy, each mapped to a status and an
RFC 9457 problem `type`. Services raise these (never `HTTPException`); `common/problems.py`
renders every one of them, and every other error, as `application/problem+json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class EtterError(Exception):
    """Base of every error a client may see. `detail` must be safe to show to the client."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return problem_type(self.slug)


def problem_type(slug: str) -> str:
    return f"urn:etter:problem:{slug}"


def problem_type_for_status(status: int) -> str:
    """The problem type of an HTTP error raised outside Etter's own code (routing, FastAPI):
    the type of Etter's error for that status when there is one, else `about:blank`."""
    for error_class in _ERROR_CLASSES:
        if error_class.status == status:
            return problem_type(error_class.slug)
    return "about:blank"


class BadRequestError(EtterError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class AuthenticationError(EtterError):
    status = 401
    slug = "unauthenticated"
    title = "Not authenticated"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class PermissionDeniedError(EtterError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFoundError(EtterError):
    status = 404
    slug = "not-found"
    title = "Not found"


class ConflictError(EtterError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLargeError(EtterError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaTypeError(EtterError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class PreconditionFailedError(EtterError):
    """412: the If-Match precondition names a representation that is no longer current."""

    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class PreconditionRequiredError(EtterError):
    """428: the change must say which version it was based on (RFC 6585)."""

    status = 428
    slug = "precondition-required"
    title = "Precondition required"


class ValidationFailedError(EtterError):
    status = 422
    slug = "validation-error"
    title = "Validation failed"


class IdempotencyKeyInUseError(ConflictError):
    """409: a request with this Idempotency-Key is still being processed."""

    slug = "idempotency-key-in-use"
    title = "Idempotency key in use"


class IdempotencyKeyReusedError(ValidationFailedError):
    """422: the Idempotency-Key was already used for a different request."""

    slug = "idempotency-key-reused"
    title = "Idempotency key reused"


class RateLimitedError(EtterError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailableError(EtterError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


# Distinct statuses only: 422 maps to ValidationFailedError, not to a subclass added later.
_ERROR_CLASSES: tuple[type[EtterError], ...] = (
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    ConflictError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    PreconditionFailedError,
    PreconditionRequiredError,
    ValidationFailedError,
    RateLimitedError,
    ServiceUnavailableError,
)
