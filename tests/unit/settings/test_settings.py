"""Settings: the embedded defaults, URL normalisation, and refusing unsafe production setups."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from settings.config import (
    DEVELOPMENT_SECRET_KEY,
    SQLITE_DEFAULT_URL,
    Environment,
    Settings,
)

STRONG_SECRET = "s3cr3t-" + "x" * 40
ENV_NAMES = (
    "ENVIRONMENT",
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "LOG_LEVEL",
    "LOG_JSON",
    "SEED_DEMO_DATA",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_are_the_embedded_development_setup():
    s = settings()
    assert s.environment is Environment.DEVELOPMENT
    assert s.database_url == SQLITE_DEFAULT_URL
    assert s.is_sqlite
    assert s.redis_url is None
    assert s.json_logs is False
    assert not s.is_production


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://etter:pw@db:5432/etter")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    s = settings()
    assert s.database_url == "postgresql+asyncpg://etter:pw@db:5432/etter"
    assert s.redis_url == "redis://cache:6379/0"
    assert s.log_level == "DEBUG"


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        settings().database_url = "sqlite+aiosqlite:///other.db"  # type: ignore[misc]


# --- production refuses an unsafe secret --------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "SECRET_KEY set to a random value"),
        ("", "SECRET_KEY set to a random value"),
        (DEVELOPMENT_SECRET_KEY, "SECRET_KEY set to a random value"),
        ("short-secret", "at least 32 characters"),
        ("x" * 31, "at least 32 characters"),
    ],
    ids=["missing", "empty", "default", "short", "31-chars"],
)
def test_production_refuses_a_weak_secret(monkeypatch, secret, message):
    monkeypatch.setenv("ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ValidationError, match=message) as raised:
        settings()
    # The message names the setting and says how to make a good one; it never echoes the value.
    assert "secrets.token_urlsafe" in str(raised.value) or "32" in str(raised.value)
    if secret:
        assert secret not in str(raised.value)


def test_production_accepts_a_strong_secret(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", STRONG_SECRET)
    s = settings()
    assert s.is_production
    assert s.json_logs is True  # JSON lines in production unless told otherwise
    assert STRONG_SECRET not in repr(s)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_other_environments_allow_the_development_secret(environment):
    s = settings(environment=environment)
    assert s.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY


def test_unknown_environment_is_refused():
    with pytest.raises(ValidationError, match="environment"):
        settings(environment="staging")


# --- database URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./etter.db", "sqlite+aiosqlite:///./etter.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_url_gets_the_async_driver(given, expected):
    assert settings(database_url=given).database_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:p@h/db",
        "postgresql+psycopg2://u@h/db",
        "not a url",
        "",
        "http://example.com/db",
    ],
)
def test_bad_database_url_is_refused(url):
    with pytest.raises(ValidationError, match="DATABASE_URL must be a PostgreSQL or SQLite URL"):
        settings(database_url=url)


def test_refusals_do_not_echo_passwords(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://etter:hunter2-db@db/etter")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-redis@cache:6379/0")
    monkeypatch.setenv("SECRET_KEY", "hunter2-secret")
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError) as raised:
        settings()
    assert "hunter2" not in str(raised.value)


def test_bad_log_level_is_refused():
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        settings(log_level="chatty")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("db_pool_size", 0),
        ("db_pool_timeout", 0),
        ("access_token_expire_minutes", 0),
        ("access_token_expire_minutes", 100_000),
        ("redis_connect_timeout", 0),
    ],
)
def test_out_of_range_numbers_are_refused(name, value):
    with pytest.raises(ValidationError, match=name):
        settings(**{name: value})


def test_log_json_overrides_the_environment_default():
    assert settings(log_json=True).json_logs is True
