"""Typed settings from the environment (and an optional `.env` file).

With nothing set, Etter runs on its embedded default: a SQLite file, in-process cache and
rate-limit state, readable console logs. Every setting is documented in `env_example.txt`.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The development secret. Production refuses to start with it (or with none at all).
DEVELOPMENT_SECRET_KEY = "etter-development-secret-key-change-me"
SQLITE_DEFAULT_URL = "sqlite+aiosqlite:///./etter.db"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)

    # --- database -------------------------------------------------------------------------
    database_url: str = SQLITE_DEFAULT_URL
    db_pool_size: int = Field(10, ge=1, le=500)
    db_max_overflow: int = Field(5, ge=0, le=500)
    db_pool_timeout: float = Field(5.0, gt=0, le=300)
    db_pool_recycle: int = Field(1800, ge=-1)
    db_pool_pre_ping: bool = True
    db_statement_timeout_ms: int = Field(15_000, ge=0)
    db_slow_query_ms: int = Field(200, ge=0)
    db_echo: bool = False
    db_pgbouncer: bool = False  # set when DATABASE_URL points at PgBouncer (transaction mode)

    # --- redis ----------------------------------------------------------------------------
    redis_url: str | None = None
    redis_connect_timeout: float = Field(0.5, gt=0, le=30)
    redis_socket_timeout: float = Field(0.5, gt=0, le=30)
    redis_max_connections: int = Field(50, ge=1)

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

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the plain URLs ops are used to and pick the async driver for them."""
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

    @cached_property
    def json_logs(self) -> bool:
        return self.is_production if self.log_json is None else self.log_json


def get_settings() -> Settings:
    """Read the settings afresh; the app factory calls this once and keeps the result."""
    return Settings()
