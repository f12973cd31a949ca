"""Password hashing (argon2id) and access tokens (JWT, HS256 pinned).

Hashing is CPU-bound (tens of milliseconds by design), so the async helpers run it in a worker
thread and the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio.to_thread
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.validators import MAX_ID
from settings.config import Settings

JWT_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud"]
LEEWAY_SECONDS = 10  # clock skew tolerated on `exp`

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so that "no such user" takes as long
    as "wrong password" and the two cannot be told apart by timing. Made on first use, not at
    import, which every process (each CLI command, each worker) would otherwise pay for."""
    return _hasher.hash("etter-timing-equaliser")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


def _verify(hashed: str | None, password: str) -> bool:
    try:
        return _hasher.verify(hashed or _dummy_hash(), password) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(hashed: str | None, password: str) -> bool:
    """True when `password` matches `hashed`; with `hashed=None` it costs the same and is False."""
    return await anyio.to_thread.run_sync(_verify, hashed, password)


def needs_rehash(hashed: str) -> bool:
    return _hasher.check_needs_rehash(hashed)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    jti: str
    issued_at: datetime
    # The user's credentials version when the token was issued (claim `cv`; 0 when absent):
    # the token is refused once the user's version has moved on (services/auth.py).
    credentials_version: int = 0
    expires_at: float = 0.0  # the `exp` claim, seconds since the epoch


def create_access_token(
    settings: Settings, user_id: int, credentials_version: int = 0
) -> IssuedToken:
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_expire_minutes)
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "cv": credentials_version,
    }
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)
    return IssuedToken(token=token, expires_in=int(lifetime.total_seconds()))


def decode_access_token(settings: Settings, token: str) -> TokenClaims | None:
    """The token's claims, or None for any token that is not valid, whatever the reason."""
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[JWT_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
            leeway=LEEWAY_SECONDS,
        )
        user_id = int(claims["sub"])
        version = claims.get("cv", 0)
        # Outside the id range, or a malformed credentials version: nobody.
        if not 1 <= user_id <= MAX_ID or type(version) is not int or version < 0:
            return None
        return TokenClaims(
            user_id=user_id,
            jti=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            credentials_version=version,
            expires_at=float(claims["exp"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError, OSError):
        return None


class TokenVerifier:
    """Bearer token -> its claims, for tokens whose signature was checked in the last `ttl`
    seconds: one instance per app, shared by the rate limiter and the auth dependency, so a
    request's token is verified at most once (and a client's token, sent with every request of
    its life, about once a minute per process).

    Checking a signature through PyJWT costs tens of microseconds, more than the rest of the
    rate limiter. Only valid tokens are kept (random junk cannot evict them), the oldest first
    out when full; a kept token is still refused from the second its `exp` (plus the leeway)
    passes, exactly as decoding it again would. Changing SECRET_KEY means restarting the
    process, which empties the cache.
    """

    def __init__(self, settings: Settings, ttl: float = 60.0, size: int = 10_000) -> None:
        self.settings = settings
        self.ttl = ttl
        self.size = size
        self._claims: dict[str, tuple[TokenClaims, float]] = {}

    def verify(self, token: str) -> TokenClaims | None:
        now = time.monotonic()
        cached = self._claims.get(token)
        if cached is not None and cached[1] > now:
            claims = cached[0]
            if time.time() <= claims.expires_at + LEEWAY_SECONDS:
                return claims
        claims = decode_access_token(self.settings, token)
        if claims is None:
            self._claims.pop(token, None)
            return None
        if len(self._claims) >= self.size and token not in self._claims:
            del self._claims[next(iter(self._claims))]
        self._claims[token] = (claims, now + self.ttl)
        return claims
