"""The app factory. `uvicorn settings.server:app` serves Etter.

Nothing is connected at import time: the lifespan opens the engine and the Redis client and
closes them on shutdown, so importing this module (tests, tools, workers) is free.

Middleware order, outermost first (each in `middleware/`):
1. RequestContextMiddleware: request id, log context, the generic 500 for escaped errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from api import (
    auth,
    chro,
    companies,
    documents,
    health,
    simulations,
    users,
    workflow_history,
    workflows,
)
from api.dependencies import API_PREFIX
from common.problems import install_problem_handlers
from common.structured_logger import configure_logging
from middleware.request_context import RequestContextMiddleware
from settings.config import Settings, get_settings
from settings.database import Database
from settings.redis import create_redis

log = structlog.get_logger("etter")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.json_logs)
        app.state.database = Database.from_settings(settings)
        app.state.redis = create_redis(settings)
        log.info(
            "startup",
            environment=settings.environment.value,
            database=app.state.database.engine.dialect.name,
            redis=app.state.redis is not None,
        )
        try:
            yield
        finally:
            if app.state.redis is not None:
                await app.state.redis.aclose()
            await app.state.database.dispose()
            log.info("shutdown")

    app = FastAPI(
        title="Etter API",
        version="1.0.0",
        summary="Workforce and AI-transformation planning: companies, users, workflows, "
        "documents, simulations and the CHRO dashboard.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    for module in (
        auth,
        companies,
        users,
        workflows,
        workflow_history,
        documents,
        simulations,
        chro,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.add_middleware(RequestContextMiddleware)
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn settings.server:app` reads the settings when it asks for `app`, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
