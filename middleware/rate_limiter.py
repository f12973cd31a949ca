"""Rate limiting per route class (pure ASGI), with the IETF draft's `RateLimit` headers.

It runs before authentication, so it recognises the caller by checking the bearer token's
signature only (no database): a valid token is limited per user, anything else per client
address. Route classes, decided by method and path:

- login (`POST /api/v1/auth/token`): per client address, and per account named in the form,
  against password guessing spread over many addresses;
- write (POST, PUT, PATCH, DELETE) and read (GET, HEAD, OPTIONS): per user;
- anonymous (no valid token): per client address;
- `/health/*` and `/metrics`: never limited.

Limited responses carry `RateLimit-Policy: "read";q=600;w=60` and `RateLimit: "read";r=599;t=60`;
a refusal is a 429 problem with `Retry-After`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import structlog
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.exceptions import PayloadTooLargeError, RateLimitedError
from common.metrics import RATE_LIMITED
from common.problems import error_response
from common.security import TokenVerifier
from middleware.client_ip import Network, client_ip_of, rate_limit_bucket
from middleware.rate_limit_backend import Policies, Policy, RateLimitBackend, Verdict
from settings.config import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A login form is a few hundred bytes; a larger one is refused rather than left unparsed,
# or padding the body would slip past the per-account limit.
MAX_LOGIN_BODY = 16 * 1024

log = structlog.get_logger("etter.ratelimit")


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_value(value)
    return None


def bearer_value(authorization: bytes) -> str | None:
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class TokenUsers:
    """Bearer token (or `Authorization` header) -> user id, through the app's shared
    `TokenVerifier` (common/security.py): a token's signature is checked once, whether the
    rate limiter or the auth dependency sees it first. A cached token is refused from the
    moment it expires, as the auth dependency refuses it.
    """

    def __init__(self, settings: Settings, tokens: TokenVerifier | None = None) -> None:
        self.tokens = tokens or TokenVerifier(settings)

    def user_for_header(self, authorization: bytes) -> int | None:
        token = bearer_value(authorization)
        return self.user_id(token) if token else None

    def user_id(self, token: str) -> int | None:
        claims = self.tokens.verify(token)
        return claims.user_id if claims is not None else None


def account_key(username: str) -> str:
    """The account as the login service matches it, hashed: no email address in Redis keys."""
    normalised = username.strip().lower().encode("utf-8", "replace")
    return "account:" + hashlib.sha256(normalised).hexdigest()[:32]


def header_values(verdicts: Sequence[Verdict]) -> list[tuple[bytes, bytes]]:
    if len(verdicts) == 1:  # every request but a login: no joining
        v = verdicts[0]
        state = b'"%s";r=%d;t=%d' % (v.policy.name.encode(), v.remaining, v.reset_in)
        return [(b"ratelimit-policy", v.policy.header), (b"ratelimit", state)]
    policy = b", ".join(v.policy.header for v in verdicts)
    state = ", ".join(f'"{v.policy.name}";r={v.remaining};t={v.reset_in}' for v in verdicts)
    return [(b"ratelimit-policy", policy), (b"ratelimit", state.encode())]


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        backend: RateLimitBackend,
        login_path: str,
        exempt_prefixes: Sequence[str] = ("/health/", "/metrics"),
        trusted_proxies: Sequence[Network] = (),
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.backend = backend
        self.policies = Policies.from_settings(settings)
        self.token_users = TokenUsers(settings, tokens)
        self.login_path = login_path
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        checks: list[tuple[Policy, str]]
        if method == "POST" and scope["path"] == self.login_path:
            client = "ip:" + rate_limit_bucket(client_ip_of(scope, self.trusted_proxies))
            checks = [(self.policies.login, client)]
            messages, too_large = await self._read_body(receive)
            receive = _replay(messages, receive)
            if too_large:
                error = PayloadTooLargeError("The login form is larger than any login needs.")
                await error_response(scope, error)(scope, receive, send)
                return
            username = await self._form_username(scope, messages)
            if username:
                checks.append((self.policies.login_account, account_key(username)))
        else:
            authorization = _header(scope, b"authorization")
            user_id = self.token_users.user_for_header(authorization) if authorization else None
            if user_id is None:
                client = "ip:" + rate_limit_bucket(client_ip_of(scope, self.trusted_proxies))
                checks = [(self.policies.anonymous, client)]
            elif method in READ_METHODS:
                checks = [(self.policies.read, f"user:{user_id}")]
            else:
                checks = [(self.policies.write, f"user:{user_id}")]

        verdicts: list[Verdict] = []
        for policy, subject in checks:
            verdict = await self.backend.hit(policy, subject)
            verdicts.append(verdict)
            if not verdict.allowed:
                await self._refuse(verdict, verdicts, scope, receive, send)
                return
        headers = header_values(verdicts)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(
        self,
        verdict: Verdict,
        verdicts: list[Verdict],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        RATE_LIMITED.labels(policy=verdict.policy.name).inc()
        log.info("rate_limited", policy=verdict.policy.name, retry_after=verdict.retry_after)
        detail = (
            f"Too many requests for the '{verdict.policy.name}' limit "
            f"({verdict.policy.quota} per {verdict.policy.window} s); "
            f"retry in {verdict.retry_after} s."
        )
        response = error_response(scope, RateLimitedError(verdict.retry_after, detail))
        for name, value in header_values(verdicts):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)

    @staticmethod
    async def _read_body(receive: Receive) -> tuple[list[Message], bool]:
        """The request's messages, read up to MAX_LOGIN_BODY; True when the body is larger."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, False  # the client left; the app will see it too
            size += len(message.get("body", b""))
            if size > MAX_LOGIN_BODY:
                return messages, True
            if not message.get("more_body", False):
                return messages, False

    @staticmethod
    async def _form_username(scope: Scope, messages: list[Message]) -> str | None:
        """`username` as the app will read it: same parser, same limits (FastAPI's defaults)."""
        request = Request(scope, _replay(messages, _no_more_messages))
        try:
            form = await request.form()
        except (HTTPException, MultiPartException):
            return None  # the app's parser refuses it too (400)
        try:
            value = form.get("username")
            return value if isinstance(value, str) else None
        finally:
            await form.close()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _no_more_messages() -> Message:
    return {"type": "http.disconnect"}
