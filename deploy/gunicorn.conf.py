"""Gunicorn settings for Etter in production (the image's CMD):

    gunicorn -c deploy/gunicorn.conf.py settings.server:app

Every value can be changed through the environment, so the image needs no other file.
Timeouts are aligned with a load balancer in front (AWS ALB, nginx, Envoy, ...):

- KEEPALIVE (65 s) must be LONGER than the load balancer's idle timeout (ALB: 60 s; nginx's
  `keepalive_timeout` in deploy/nginx.conf: 60 s): the balancer then always closes an idle
  connection first. The other way round, Etter may close a connection in the instant the
  balancer sends a request on it, which the client sees as a 502.
- GRACEFUL_TIMEOUT (30 s): after SIGTERM each worker stops accepting, finishes its in-flight
  requests, and is killed after this long. The balancer's deregistration delay (connection
  draining) should be at least this, and the orchestrator's grace period (Kubernetes
  `terminationGracePeriodSeconds`, compose `stop_grace_period`) longer, or SIGKILL comes first.
  Requests are bounded well below it: DB_POOL_TIMEOUT (5 s) plus DB_STATEMENT_TIMEOUT_MS
  (15 s); only slow uploads can take longer.
- TIMEOUT (30 s): a worker that has not reported to the arbiter for this long (a blocked event
  loop) is killed and replaced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# uvicorn's worker for gunicorn (the maintained `uvicorn-worker` package; `uvicorn.workers` is
# deprecated). Each worker is one process with one event loop: one per core is the rule.
worker_class = "uvicorn_worker.UvicornWorker"
workers = _int("WEB_CONCURRENCY", 2)
bind = [os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]
backlog = _int("BACKLOG", 2048)

keepalive = _int("KEEPALIVE", 65)
graceful_timeout = _int("GRACEFUL_TIMEOUT", 30)
timeout = _int("TIMEOUT", 30)
# Recycle a worker after this many requests (jittered, so not all at once) to bound a slow
# leak; 0 (the default): never.
max_requests = _int("MAX_REQUESTS", 0)
max_requests_jitter = _int("MAX_REQUESTS_JITTER", 0)

# Client addresses come from X-Forwarded-For only via Etter's own middleware (TRUSTED_PROXIES):
# uvicorn must not rewrite the peer address first.
forwarded_allow_ips = ""

# Etter writes its own access log (structlog, JSON in production); gunicorn logs its own
# events (worker start, exit, timeout) to stderr.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# The workers' heartbeat files: on tmpfs where there is one (a container's disk may stall).
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108

# Each worker builds its own app (engine, pools, Redis client) after the fork.
preload_app = False


def _metrics_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server: Any) -> None:
    """Start with an empty multiprocess metrics directory: files of a previous run's workers
    would otherwise be summed into this run's counters."""
    directory = _metrics_dir()
    if directory is None:
        return
    if directory.exists():
        for child in directory.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: prometheus_client stops counting its live gauges."""
    if _metrics_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
