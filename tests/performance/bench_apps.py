"""The two apps the middleware benchmark serves with uvicorn (`--factory`).

Both answer the same trivial endpoint, `GET /bench/ping`, from the same kind of route:
- `bare_app`: a FastAPI app with that one route and nothing else;
- `full_app`: Etter's app from `create_app()` (settings from the environment), with the route
  inserted first so that routing costs the same as in the bare app and the only difference is
  what the app factory wraps around it: the middleware stack and the exception handlers.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from settings.server import create_app

PING_PATH = "/bench/ping"


async def ping() -> dict[str, bool]:
    return {"ok": True}


def bare_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.router.routes.insert(0, APIRoute(PING_PATH, ping, methods=["GET"]))
    return app


def full_app() -> FastAPI:
    app = create_app()
    app.router.routes.insert(0, APIRoute(PING_PATH, ping, methods=["GET"]))
    return app
