"""Rate limiting per route class (pure ASGI), with the IETF draft's `RateLimit` headers.

It runs before authentication, so it recognises the caller by checking the bearer token's
signature only (no database): a valid token is limited per user, anything else per client
address. Route classes, decided by method and path:

- login (`POST` to the token route, whose path the app factory takes from the route): per
  client address; the per-account limit on failed logins is the token route's own dependency
  (`api/deps.py`, `LoginFailures`), which has the parsed form;
- write (POST, PUT, PATCH, DELETE) and read (GET, HEAD, OPTIONS): per user;
- anonymous (no valid token): per client address;
- `/health/*` and `/metrics`: never limited.

Limited responses carry `RateLimit-Policy: "read";q=600;w=60` and `RateLimit: "read";r=599;t=60`;
a refusal is a 429 problem with `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.exceptions import RateLimitedError
from common.metrics import RATE_LIMITED
from common.problems import error_response
from common.rate_limits import Policies, Policy, RateLimitBackend, Verdict
from common.security import TokenVerifier
from middleware.client_ip import Network, client_ip_of, rate_limit_bucket
from settings.config import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None
