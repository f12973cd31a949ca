"""structlog, configured once: JSON lines in production, readable lines in development.

One processor chain renders every event, whoever logs it: structlog's own loggers run it
directly (no detour through `logging`, which would cost several times as much per event, and
the access log writes one event per request), and the standard-library loggers (uvicorn,
SQLAlchemy, alembic, the app's own) join it through `ProcessorFormatter` on the root logger.
Both write to one sink, under one lock. Request-scoped values (request id, user, company) are
bound with `structlog.contextvars` by the request middleware and the auth dependency, so every
event logged while serving a request carries them. Secrets are scrubbed in the shared chain,
before any renderer sees them.

structlog caches each logger on first use, so what `configure_logging` may change later (level,
renderer, stream) lives in the sink that the cached chain consults, not in the chain itself.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, TextIO

import orjson
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.typing import EventDict, FilteringBoundLogger, Processor

from common.apm import add_trace_context
from common.redaction import REDACTED, scrub_text

# Keys whose values never reach a log, whoever logs them (compared case-insensitively, at any
# depth: a `headers={"Authorization": ...}` dict is scrubbed too).
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "hashed_password",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "proxy-authorization",
        "cookie",
        "cookies",
        "set-cookie",
        "session",
        "secret",
        "secret_key",
        "api_key",
        "x-api-key",
        "dsn",
    }
)
_MAX_DEPTH = 4

SLOW_QUERY_LOGGER = "etter.db"
_STATEMENT_LOG_LENGTH = 2000


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "eyJ" in value or "earer" in value:
            value = scrub_text(value)  # linear, bounded (common/redaction.py)
        return value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and k.lower() in SECRET_KEYS else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, depth + 1) for v in value)
    return value


_secret_key_memo: dict[str, bool] = {}


def _is_secret_key(key: str) -> bool:
    # Event keys come from code, a small set: remember the answer rather than lower-case every
    # key of every event (this runs on each event, the access log's included).
    known = _secret_key_memo.get(key)
    if known is None:
        known = key.lower() in SECRET_KEYS
        if len(_secret_key_memo) < 10_000:
            _secret_key_memo[key] = known
    return known


# Values that cannot hold a credential: skipped on a type lookup (most of an event's values).
_PLAIN_TYPES = frozenset({int, float, bool, type(None)})


def redact_secrets(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    memo = _secret_key_memo
    for key, value in event_dict.items():
        secret = memo.get(key)
        if secret is None:
            secret = _is_secret_key(key)
        if secret:
            event_dict[key] = REDACTED
        elif value.__class__ in _PLAIN_TYPES:
            continue
        elif isinstance(value, str):
            if "eyJ" in value or "earer" in value:
                event_dict[key] = _scrub(value)
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = _scrub(value)
    return event_dict


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _json_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=repr).decode()


class _Sink:
    """Where every rendered line goes, and the settings that may change after start-up."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.level = logging.INFO
        self.lock = threading.Lock()
        self.json = False
        self._json_renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
        self._console_renderer = self._console(colors=False)

    def set(self, stream: TextIO, level: int, json_logs: bool) -> None:
        self.stream, self.level, self.json = stream, level, json_logs
        self._console_renderer = self._console(colors=not json_logs and stream.isatty())

    @staticmethod
    def _console(colors: bool) -> structlog.dev.ConsoleRenderer:
        # Plain tracebacks: rich's (structlog's default when rich is installed) print the
        # frames' local variables, which may hold passwords and tokens.
        return structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )

    def drop_below_level(self, _logger: Any, method: str, event_dict: EventDict) -> EventDict:
        if _LEVELS.get(method, logging.INFO) < self.level:
            raise structlog.DropEvent
        return event_dict

    def render(self, logger: Any, method: str, event_dict: EventDict) -> str:
        if self.json:
            event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
            return self._json_renderer(logger, method, event_dict)
        return self._console_renderer(logger, method, event_dict)

    def write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


_sink = _Sink()


class _SinkLogger:
    """The logger under structlog's bound loggers: writes rendered lines to the sink."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _sink.write(message)

    debug = info = warn = warning = error = err = critical = fatal = exception = log = msg


def _logger_factory(*args: Any) -> _SinkLogger:
    return _SinkLogger(str(args[0]) if args else "")


class _SinkHandler(logging.Handler):
    """The root logger's one handler: standard-library records through the same chain."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _sink.write(self.format(record))
        except Exception:
            self.handleError(record)


_timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamper,
        add_trace_context,
        redact_secrets,
    ]


def log_fast(logger_name: str, method: str, event: str, fields: dict[str, Any]) -> None:
    """Log one event as `get_logger(logger_name).<method>(event, **fields)` would, cheaper.

    For the access log, one event per request: structlog's bound logger walks the generic
    chain through several layers of calls (about half of the event's cost). This applies the
    same steps inline, in the same order, with the same processors where they carry a
    guarantee (the context merge, the timestamp, `redact_secrets`), and renders through the
    same sink, so the line is the one the chain would have written, JSON or readable. Only
    `info`, `warning` and `error` are meant (the names `add_log_level` keeps as they are).
    `fields` is taken over (not copied).
    """
    if _LEVELS[method] < _sink.level:
        return
    fields["event"] = event
    structlog.contextvars.merge_contextvars(None, method, fields)
    fields["level"] = method
    fields["logger"] = logger_name
    _timestamper(None, method, fields)
    add_trace_context(None, method, fields)
    redact_secrets(None, method, fields)
    if _sink.json:
        _sink.write(_json_dumps(fields))
    else:
        _sink.write(_sink.render(None, method, fields))


def formatter() -> logging.Formatter:
    """Renders standard-library records with the shared chain and the sink's renderer."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _sink.render],
    )


def configure_logging(
    level: str = "INFO", json_logs: bool = False, stream: TextIO | None = None
) -> None:
    """Set up structlog and the standard-library root logger. Safe to call again."""
    numeric_level = logging.getLevelName(level.upper())
    _sink.set(stream or sys.stderr, numeric_level, json_logs)
    structlog.configure(
        processors=[
            # Drop disabled levels before any work is done on the event.
            _sink.drop_below_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            _sink.render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = _SinkHandler()
    handler.setFormatter(formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # uvicorn's own handlers would print a second, differently shaped line; let them propagate.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The access line comes from our middleware, with more in it than uvicorn's.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # SQL with its parameters is for DB_ECHO in development only; slow queries have their own
    # event (without parameters).
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def get_logger(name: str) -> FilteringBoundLogger:
    return structlog.get_logger(name)


def bind_user(user_id: int, company_id: int) -> None:
    """Name the caller on every later event of this request (cleared with the request)."""
    structlog.contextvars.bind_contextvars(user_id=user_id, company_id=company_id)


def install_slow_query_log(engine: AsyncEngine, threshold_ms: int) -> None:
    """Log every statement slower than `threshold_ms` as `slow_query` (0: off).

    Statement text only: the parameters may hold personal data or secrets. The event is
    logged in the request's context, so it carries the request id and the caller.
    """
    if threshold_ms <= 0:
        return
    log = get_logger(SLOW_QUERY_LOGGER)
    threshold = threshold_ms / 1000
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _start(conn: Any, _cursor: Any, _statement: str, _params: Any, *_: Any) -> None:
        conn.info.setdefault("etter_query_start", []).append(time.perf_counter())

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _finish(
        conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, executemany: bool
    ) -> None:
        starts = conn.info.get("etter_query_start")
        if not starts:
            return
        elapsed = time.perf_counter() - starts.pop()
        if elapsed >= threshold:
            log.warning(
                "slow_query",
                duration_ms=round(elapsed * 1000, 1),
                threshold_ms=threshold_ms,
                statement=" ".join(statement.split())[:_STATEMENT_LOG_LENGTH],
                executemany=executemany,
            )

    # A statement that fails never reaches after_cursor_execute: drop its start time.
    @event.listens_for(sync_engine, "handle_error")
    def _failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and connection.info.get("etter_query_start"):
            connection.info["etter_query_start"].pop()
