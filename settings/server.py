"""The app factory. `uvicorn settings.server:app` serves Etter.

Nothing is connected at import time: the lifespan opens the engine and the Redis client and
closes them on shutdown, so importing this module (tests, tools, workers) is free.

Middleware, all pure ASGI and each in `middleware/`, in this order (outermost first; Starlette
adds its own ServerErrorMiddleware outside and ExceptionMiddleware inside these):
1. SecurityHeadersMiddleware: nosniff, DENY framing, no referrer, a deny-all CSP for the API;
   outermost so that even the last-resort 500 below carries them.
2. MetricsMiddleware (METRICS_ENABLED): Prometheus requests, latency, requests in flight and
   SQL statements per request, by route template; outside the access log, so it counts the
   generic 500 and the 429s as sent.
3. RequestLoggingMiddleware: request id (kept or made, echoed), client address, log context,
   one access-log event per request, and the generic 500 problem for errors that escaped the
   handlers. Above everything else, so every response, a 429 included, is logged with its id.
3b. BodyLimitMiddleware: a request target over MAX_URL_BYTES is a 414, a body over
   MAX_BODY_BYTES (the upload: MAX_UPLOAD_BYTES) a 413, before anything parses or authenticates.
4. RateLimitMiddleware: refuses over-limit requests before any other work is done (routing,
   auth, database) and adds the RateLimit headers; /health/* and /metrics pass unlimited.
5. CompressionMiddleware: gzip, innermost, so that the logged response size is what went out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.middleware import Middleware

from api import (
    auth,
    chro,
    companies,
    documents,
    health,
    metrics,
    simulations,
    users,
    workflow_history,
    workflows,
)
from api.deps import API_PREFIX
from api.idempotency import install_idempotency
from api.openapi import install_problem_openapi
from common import apm
from common.error_tracker import flush as flush_error_tracker
from common.error_tracker import init_error_tracking, instrument_event_loop
from common.idempotency_store import create_idempotency_store
from common.metrics import git_revision, install_database_metrics, record_build_info
from common.problems import install_problem_handlers
from common.rate_limits import LoginFailures, Policies, RateLimitBackend
from common.security import TokenVerifier
from common.structured_logger import configure_logging, install_slow_query_log
from middleware.body_limit import BodyLimitMiddleware
from middleware.compression import CompressionMiddleware
from middleware.logging_middleware import RequestLoggingMiddleware
from middleware.metrics import MetricsMiddleware
from middleware.rate_limiter import RateLimitMiddleware
from middleware.security_headers import SecurityHeadersMiddleware
from services.cache_service import create_cache
from services.health import ReadinessLog
from settings.config import Settings, get_settings
from settings.database import Database
from settings.redis import create_redis

log = structlog.get_logger("etter")


def middleware_stack(
    settings: Settings, rate_limits: RateLimitBackend, tokens: TokenVerifier | None = None
) -> list[Middleware]:
    """The documented order above, outermost first."""
    stack = [
        Middleware(SecurityHeadersMiddleware, page_paths=("/docs",), hsts=settings.is_production)
    ]
    if settings.metrics_enabled:
        stack.append(Middleware(MetricsMiddleware))
    stack.append(Middleware(RequestLoggingMiddleware, trusted_proxies=settings.trusted_proxies))
    stack.append(
        Middleware(
            BodyLimitMiddleware,
            max_body_bytes=settings.max_body_bytes,
            max_url_bytes=settings.max_url_bytes,
            route_bounds={
                ("POST", f"{API_PREFIX}/documents"): settings.max_upload_bytes
                + documents.MULTIPART_ALLOWANCE
            },
        )
    )
    if settings.rate_limit_enabled:
        stack.append(
            Middleware(
                RateLimitMiddleware,
                settings=settings,
                backend=rate_limits,
                login_path=API_PREFIX + auth.router.url_path_for("issue_token"),
                exempt_prefixes=("/health/", "/metrics"),
                trusted_proxies=settings.trusted_proxies,
                tokens=tokens,
            )
        )
    stack.append(
        Middleware(
            CompressionMiddleware,
            minimum_size=settings.gzip_min_size,
            compresslevel=settings.gzip_level,
        )
    )
    return stack


APP_VERSION = "1.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    rate_limits = RateLimitBackend.from_settings(settings)
    # --- observability: Sentry before the app exists (its integrations patch Starlette) ----
    revision = git_revision(settings.git_sha)
    init_error_tracking(settings, release=f"etter-api@{APP_VERSION}+{revision}")
    # One cache of verified tokens for the rate limiter and the auth dependency.
    tokens = TokenVerifier(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.json_logs)
        instrument_event_loop()  # Sentry's asyncio integration, when Sentry is on
        app.state.database = Database.from_settings(settings)
        install_slow_query_log(app.state.database.engine, settings.db_slow_query_ms)
        forget_pool = None
        if settings.metrics_enabled:
            forget_pool = install_database_metrics(app.state.database.engine)
            record_build_info(APP_VERSION, revision)
        app.state.redis = create_redis(settings)
        tracing: apm.Tracing | None = app.state.tracing
        if tracing is not None:
            tracing.instrument_resources(app.state.database.engine, app.state.redis)
        # Shares the app's Redis client; in memory without one; None when CACHE_ENABLED is off.
        app.state.cache = create_cache(settings, app.state.redis)
        # Idempotency-Key records: Redis when configured, process memory otherwise.
        app.state.idempotency = create_idempotency_store(app.state.redis)
        log.info(
            "startup",
            environment=settings.environment.value,
            database=app.state.database.engine.dialect.name,
            redis=app.state.redis is not None,
            cache=app.state.cache.backend.name if app.state.cache else "off",
        )
        if settings.uses_development_secret:
            log.warning(
                "development_secret_key_in_use",
                detail="SECRET_KEY is the public development value: anyone can forge access "
                "tokens for this server. Set SECRET_KEY before exposing it to anyone.",
            )
        try:
            yield
        finally:
            await rate_limits.aclose()
            if app.state.redis is not None:
                await app.state.redis.aclose()
            await app.state.database.dispose()
            if forget_pool is not None:
                forget_pool()
            if tracing is not None:
                tracing.shutdown()
            flush_error_tracker()
            log.info("shutdown")

    app = FastAPI(
        title="Etter API",
        version=APP_VERSION,
        summary="Workforce and AI-transformation planning: companies, users, workflows, "
        "documents, simulations and the CHRO dashboard.",
        lifespan=lifespan,
        docs_url="/docs" if settings.serves_docs else None,
        openapi_url="/openapi.json" if settings.serves_docs else None,
        redoc_url=None,
        middleware=middleware_stack(settings, rate_limits, tokens),
    )
    app.state.settings = settings
    app.state.rate_limits = rate_limits
    app.state.login_failures = LoginFailures(
        rate_limits if settings.rate_limit_enabled else None,
        Policies.from_settings(settings).login_account,
    )
    app.state.readiness_log = ReadinessLog()
    app.state.tokens = tokens
    install_problem_handlers(app)
    install_problem_openapi(app)
    install_idempotency(app)
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
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # OpenTelemetry (off unless OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_ENABLED): wraps the stack.
    app.state.tracing = apm.instrument_app(app, settings, APP_VERSION)
    return app


# `uvicorn settings.server:app`: the app of the environment's settings. Building it reads the
# settings and connects to nothing (the lifespan does); tests build their own with create_app().
app = create_app()
