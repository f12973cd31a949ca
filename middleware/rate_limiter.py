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

import time
from collections.abc import Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.exceptions import RateLimitedError
from common.metrics import RATE_LIMITED
from common.problems import error_response
from common.rate_limits import Policies, Policy, RateLimitBackend, Verdict
from common.security import decode_access_token
from middleware.client_ip import Network, client_ip_of
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
    """Bearer token -> user id, for tokens whose signature was checked in the last `ttl`
    seconds.

    Checking a signature through PyJWT costs tens of microseconds, more than the rest of the
    limiter; a client sends the same token for its whole lifetime. Only valid tokens are kept
    (random junk cannot evict them), the oldest first out when full. A token that expires while
    cached is still counted against its user for at most `ttl` seconds: this names a rate-limit
    bucket, it authorises nothing (the auth dependency checks every request).
    """

    def __init__(self, settings: Settings, ttl: float = 60.0, size: int = 10_000) -> None:
        self.settings = settings
        self.ttl = ttl
        self.size = size
        self._users: dict[str, tuple[int, float]] = {}
        self._by_header: dict[bytes, tuple[int, float]] = {}

    def user_for_header(self, authorization: bytes) -> int | None:
        """The user of an `Authorization` header's bearer token, cached by the header's raw
        bytes (same rules as `user_id`): a repeat visitor costs one lookup, no decoding."""
        now = time.monotonic()
        cached = self._by_header.get(authorization)
        if cached is not None and cached[1] > now:
            return cached[0]
        token = bearer_value(authorization)
        user_id = self.user_id(token) if token else None
        if user_id is None:
            self._by_header.pop(authorization, None)
            return None
        if len(self._by_header) >= self.size:
            del self._by_header[next(iter(self._by_header))]
        self._by_header[authorization] = (user_id, now + self.ttl)
        return user_id

    def user_id(self, token: str) -> int | None:
        now = time.monotonic()
        cached = self._users.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        claims = decode_access_token(self.settings, token)
        if claims is None:
            self._users.pop(token, None)
            return None
        if len(self._users) >= self.size:
            del self._users[next(iter(self._users))]
        self._users[token] = (claims.user_id, now + self.ttl)
        return claims.user_id


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
    ) -> None:
        self.app = app
        self.settings = settings
        self.backend = backend
        self.policies = Policies.from_settings(settings)
        self.token_users = TokenUsers(settings)
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
            checks = [(self.policies.login, "ip:" + client_ip_of(scope, self.trusted_proxies))]
        else:
            authorization = _header(scope, b"authorization")
            user_id = self.token_users.user_for_header(authorization) if authorization else None
            if user_id is None:
                client = "ip:" + client_ip_of(scope, self.trusted_proxies)
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
