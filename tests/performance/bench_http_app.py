"""The bare app of `make bench-http`: the least a server can do per endpoint, for comparison.

Pure ASGI, no framework: an asyncpg pool, PyJWT, redis.asyncio (hiredis), orjson. Each
endpoint does the same work as Etter's, and nothing more:

- every request: the bearer token verified as Etter verifies it (HS256, audience, issuer,
  required claims);
- `GET /api/v1/auth/me`: the caller's row, read from `users`;
- `GET /api/v1/workflows` and `GET /api/v1/users` (`page`, `page_size`): the caller's row
  (for the company), the count and the page of rows in Etter's order, on one connection;
- `GET /api/v1/companies/{id}` and `GET /api/v1/chro/dashboard`: the cached body, one Redis
  GET (the benchmark stores Etter's own body under `bench:bare:<path>` before it measures).

`uvicorn tests.performance.bench_http_app:app --workers 2`, configured from the environment:
`BARE_DATABASE_URL` (plain `postgresql://`), `BARE_REDIS_URL`, `SECRET_KEY`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import jwt
import orjson
from redis.asyncio import Redis

from common.security import JWT_ALGORITHM, REQUIRED_CLAIMS
from settings.config import Settings

CACHE_PREFIX = "bench:bare:"
POOL_SIZE = 16
USER_COLUMNS = (
    "id, company_id, email, full_name, department, job_title, role, is_active, "
    "last_login_at, created_at, updated_at"
)
WORKFLOW_COLUMNS = (
    "id, company_id, name, department, status, automation_potential, created_by, "
    "created_at, updated_at"
)
PAGES = {
    "/api/v1/workflows": (WORKFLOW_COLUMNS, "workflows", "name, id"),
    "/api/v1/users": (USER_COLUMNS, "users", "full_name, id"),
}
CACHED = ("/api/v1/companies/", "/api/v1/chro/dashboard")
JSON_HEADERS = [(b"content-type", b"application/json")]


class BareApp:
    def __init__(self) -> None:
        defaults = Settings(_env_file=None)
        self.secret = os.environ["SECRET_KEY"]
        self.audience = defaults.jwt_audience
        self.issuer = defaults.jwt_issuer
        self.pool: asyncpg.Pool | None = None
        self.redis: Redis | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        status, body = await self.handle(scope)
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    os.environ["BARE_DATABASE_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE
                )
                self.redis = Redis.from_url(os.environ["BARE_REDIS_URL"])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                if self.redis is not None:
                    await self.redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def user_id(self, scope: dict[str, Any]) -> int | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                try:
                    claims = jwt.decode(
                        token,
                        self.secret,
                        algorithms=[JWT_ALGORITHM],
                        audience=self.audience,
                        issuer=self.issuer,
                        options={"require": REQUIRED_CLAIMS},
                        leeway=10,
                    )
                    return int(claims["sub"])
                except (jwt.PyJWTError, ValueError):
                    return None
        return None

    async def handle(self, scope: dict[str, Any]) -> tuple[int, bytes]:
        user_id = self.user_id(scope)
        if user_id is None:
            return 401, b'{"title":"Unauthorized"}'
        path = scope["path"]
        assert self.pool is not None
        assert self.redis is not None
        if path.startswith(CACHED):
            body = await self.redis.get(CACHE_PREFIX + path)
            return (200, body) if body is not None else (404, b'{"title":"Not Found"}')
        async with self.pool.acquire() as connection:
            user = await connection.fetchrow(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = $1",  # noqa: S608 - constants
                user_id,
            )
            if user is None or not user["is_active"]:
                return 401, b'{"title":"Unauthorized"}'
            if path == "/api/v1/auth/me":
                return 200, orjson.dumps(dict(user))
            if path not in PAGES:
                return 404, b'{"title":"Not Found"}'
            columns, table, order = PAGES[path]
            query = parse_qs(scope["query_string"].decode("latin-1"))
            page = int(query.get("page", ["1"])[0])
            size = int(query.get("page_size", ["20"])[0])
            total = await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE company_id = $1",  # noqa: S608 - constants
                user["company_id"],
            )
            rows = await connection.fetch(
                f"SELECT {columns} FROM {table} WHERE company_id = $1 "  # noqa: S608
                f"ORDER BY {order} LIMIT $2 OFFSET $3",
                user["company_id"],
                size,
                (page - 1) * size,
            )
        items = [dict(row) for row in rows]
        pages = -(-total // size)
        envelope = {"items": items, "total": total, "page": page, "page_size": size}
        return 200, orjson.dumps({**envelope, "pages": pages})


app = BareApp()
