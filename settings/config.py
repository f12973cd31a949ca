"""Typed settings from the environment (and an optional `.env` file).

With nothing set, Etter runs on its embedded default: a SQLite file, in-process cache and
rate-limit state, readable console logs. Every setting is documented in `env_example.txt`.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import limits
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The development secret. Production refuses to start with it (or with none at all).
DEVELOPMENT_SECRET_KEY = "etter-development-secret-key-change-me"
SQLITE_DEFAULT_URL = "sqlite+aiosqlite:///./etter.db"
# The longest TTL a cache may be given (CACHE_TTL_*): a day.
CACHE_MAX_TTL_SECONDS = 86_400


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SslMode(StrEnum):
    """libpq's sslmode names, as asyncpg takes them (`DB_SSLMODE`)."""

    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # A refused setting must not print the inputs: they hold SECRET_KEY and the passwords
        # in DATABASE_URL / REDIS_URL, and start-up errors end up in logs.
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)

    # --- database -------------------------------------------------------------------------
    database_url: str = SQLITE_DEFAULT_URL
    # --- database pool and TLS (issue 9; README "Sizing the database pool") -----------------
    # A fixed pool: overflow connections are opened and closed around every burst (churn).
    db_pool_size: int = Field(15, ge=1, le=500)
    db_max_overflow: int = Field(0, ge=0, le=500)
    # Seconds a request waits for a free connection before its 503: shed load fast.
    db_pool_timeout: float = Field(1.0, gt=0, le=300)
    db_pool_recycle: int = Field(1800, ge=-1)
    db_pool_pre_ping: bool = True
    # Pre-ping only connections idle longer than this; 0 pings on every checkout.
    db_pool_ping_idle_seconds: float = Field(10.0, ge=0, le=3600)
    # TLS to PostgreSQL; an sslmode in DATABASE_URL wins. Managed databases: verify-full.
    db_sslmode: SslMode = SslMode.DISABLE
    db_statement_timeout_ms: int = Field(15_000, ge=0)
    db_slow_query_ms: int = Field(200, ge=0)
    db_echo: bool = False
    db_pgbouncer: bool = False  # set when DATABASE_URL points at PgBouncer (transaction mode)

    # --- read replica (settings/database.py, common/replica.py) -----------------------------
    # A streaming replica for GET/HEAD; unset: every request uses DATABASE_URL.
    database_replica_url: str | None = None
    # After a caller's write, its reads stay on the primary this long (read-your-writes).
    replica_sticky_seconds: float = Field(5.0, ge=0, le=3600)
    # After the replica refused a connection, reads use the primary this long before retrying.
    replica_retry_seconds: float = Field(10.0, gt=0, le=3600)

    # --- redis ----------------------------------------------------------------------------
    redis_url: str | None = None
    redis_connect_timeout: float = Field(0.5, gt=0, le=30)
    redis_socket_timeout: float = Field(0.5, gt=0, le=30)
    redis_max_connections: int = Field(50, ge=1)
    # Seconds a request waits for a free Redis connection (blocking pool) before Redis counts
    # as unavailable for it (the cache misses, the rate limiter falls back in-process).
    redis_pool_timeout: float = Field(0.25, gt=0, le=30)

    # --- auth -----------------------------------------------------------------------------
    jwt_issuer: str = "etter"
    jwt_audience: str = "etter-api"
    access_token_expire_minutes: int = Field(60, ge=1, le=24 * 60)

    # --- logging --------------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON in production, console lines elsewhere

    # --- documents ------------------------------------------------------------------------
    storage_dir: Path = Path("storage")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)

    # --- demo data ------------------------------------------------------------------------
    seed_demo_data: bool = True

    # --- cache (services/cache_service.py) ------------------------------------------------
    # Off: every read goes to the database and the cache writes nothing (the rollback switch).
    cache_enabled: bool = True
    # Seconds an entry lives, per cache; 0 turns that one cache off. Writes through the API
    # invalidate at once: the TTL only bounds how long a write made elsewhere stays unseen.
    cache_ttl_companies: int = Field(300, ge=0, le=CACHE_MAX_TTL_SECONDS)
    cache_ttl_autocomplete: int = Field(60, ge=0, le=CACHE_MAX_TTL_SECONDS)
    cache_ttl_principal: int = Field(60, ge=0, le=CACHE_MAX_TTL_SECONDS)
    cache_ttl_workflows: int = Field(120, ge=0, le=CACHE_MAX_TTL_SECONDS)
    cache_ttl_simulations: int = Field(600, ge=0, le=CACHE_MAX_TTL_SECONDS)
    cache_ttl_dashboard: int = Field(60, ge=0, le=CACHE_MAX_TTL_SECONDS)
    # Stampede lock: how long one process may compute a value while the others wait for it.
    cache_lock_timeout_ms: int = Field(3000, ge=50, le=60_000)
    # After a cache backend error, the cache is skipped (a miss) this long before a new try.
    cache_retry_seconds: float = Field(1.0, ge=0, le=300)
    # Embedded default (no REDIS_URL): entries kept in process memory, least recent dropped.
    cache_memory_max_entries: int = Field(10_000, ge=1, le=10_000_000)

    # --- idempotency keys (common/idempotency_store.py, api/idempotency.py) -------------
    # How long a creating POST's response is kept for replay under its Idempotency-Key.
    idempotency_ttl_seconds: int = Field(86_400, ge=1, le=7 * 86_400)
    # How long an in-flight claim outlives a request that died without releasing it.
    idempotency_lock_seconds: int = Field(60, ge=1, le=3600)

    # --- edges: compression, rate limits, client address (middleware/) -------------------
    # Bodies of at least this many bytes are gzipped for clients that accept gzip.
    gzip_min_size: int = Field(1024, ge=0)
    # zlib level: 5 keeps most of level 9's ratio on JSON at a fraction of its CPU.
    gzip_level: int = Field(5, ge=1, le=9)
    rate_limit_enabled: bool = True
    rate_limit_strategy: Literal["sliding-window-counter", "moving-window"] = (
        "sliding-window-counter"
    )
    # Policies per route class, in the `limits` notation ("600/minute", "10 per 5 minutes").
    rate_limit_login: str = "20/minute"  # POST /auth/token, per client IP
    rate_limit_login_account: str = "10/minute"  # failed logins per account (brute force)
    rate_limit_write: str = "120/minute"  # POST/PUT/PATCH/DELETE, per user
    rate_limit_read: str = "600/minute"  # GET/HEAD/OPTIONS, per user
    rate_limit_anonymous: str = "60/minute"  # no valid token, per client IP
    # After Redis failed, how long the in-process fallback serves before Redis is tried again.
    rate_limit_redis_retry_seconds: float = Field(5.0, gt=0, le=300)
    # Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For is believed.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    # --- security (middleware/body_limit.py, SECURITY.md) -------------------------------------
    # A request body larger than this is refused (413) before it is parsed or the caller is
    # authenticated; the document upload has its own bound, MAX_UPLOAD_BYTES.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # A request target (path and query) longer than this is refused with 414.
    max_url_bytes: int = Field(8192, ge=256, le=1024 * 1024)
    # /docs and /openapi.json: None serves them outside production only.
    docs_enabled: bool | None = None
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None

    # --- observability (common/metrics.py, common/error_tracker.py, common/apm.py) ----------
    # Off: no HTTP/database metrics layer and no GET /metrics.
    metrics_enabled: bool = True
    # The release in /metrics' etter_build_info and Sentry: GIT_SHA, else `git rev-parse HEAD`.
    git_sha: str | None = Field(None, validation_alias=AliasChoices("GIT_SHA", "ETTER_REVISION"))
    sentry_dsn: SecretStr | None = None  # unset: Sentry off
    sentry_environment: str | None = None  # default: ENVIRONMENT
    sentry_traces_sample_rate: float = Field(0.0, ge=0, le=1)
    sentry_profiles_sample_rate: float = Field(0.0, ge=0, le=1)
    # OpenTelemetry tracing: on when an OTLP endpoint is set (or OTEL_ENABLED=true); the SDK
    # reads every other standard OTEL_* variable (service name, sampler, headers) itself.
    otel_enabled: bool | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_sdk_disabled: bool = False

    @field_validator("otel_enabled", "sentry_dsn", "git_sha", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def tracing_enabled(self) -> bool:
        if self.otel_sdk_disabled:
            return False
        if self.otel_enabled is not None:
            return self.otel_enabled
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @field_validator("database_url", "database_replica_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        """Accept the plain URLs ops are used to and pick the async driver for them."""
        if value is None:
            return None
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value.removeprefix(plain)
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("DATABASE_URL must be a PostgreSQL or SQLite URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator(
        "rate_limit_login",
        "rate_limit_login_account",
        "rate_limit_write",
        "rate_limit_read",
        "rate_limit_anonymous",
    )
    @classmethod
    def _one_rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '600/minute': {value!r}") from exc
        if len(limits.parse_many(value)) != 1:
            raise ValueError("one rate limit per policy, like '600/minute'")
        return value

    @field_validator("docs_enabled", "metrics_token", mode="before")
    @classmethod
    def _empty_security_setting_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        """`10.0.0.0/8, 127.0.0.1` from the environment; a plain address is a /32 (or /128)."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(ip_network(part, strict=False) for part in value)
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            secret = self.secret_key.get_secret_value()
            if not secret or secret == DEVELOPMENT_SECRET_KEY:
                raise ValueError(
                    "ENVIRONMENT=production needs SECRET_KEY set to a random value of its own "
                    "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            if len(secret) < 32:
                raise ValueError("SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_development_secret(self) -> bool:
        return self.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY

    @property
    def serves_docs(self) -> bool:
        return not self.is_production if self.docs_enabled is None else self.docs_enabled

    @cached_property
    def json_logs(self) -> bool:
        return self.is_production if self.log_json is None else self.log_json


def get_settings() -> Settings:
    """Read the settings afresh; the app factory calls this once and keeps the result."""
    return Settings()
