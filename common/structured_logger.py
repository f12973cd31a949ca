"""structlog, configured once: JSON lines in production, readable lines in development.

The standard-library loggers (uvicorn, SQLAlchemy, alembic, the app's own) go through the same
processor chain via `ProcessorFormatter`, so every line has one shape. Request-scoped values
(request id, user, company) are bound with `structlog.contextvars` by the request middleware.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog
from structlog.types import EventDict, Processor

# Keys whose values never reach a log, whoever logs them.
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "hashed_password",
        "token",
        "access_token",
        "authorization",
        "cookie",
        "set-cookie",
        "secret",
        "secret_key",
        "api_key",
        "dsn",
    }
)
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    for key in event_dict.keys() & SECRET_KEYS:
        event_dict[key] = REDACTED
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def configure_logging(level: str = "INFO", json_logs: bool = False) -> None:
    """Set up structlog and the standard-library root logger. Safe to call again."""
    shared = _shared_processors()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_logs else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own handlers would print a second, differently shaped line; let them propagate.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The access line comes from our middleware, with more in it than uvicorn's.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def _keep(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    return event_dict


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
