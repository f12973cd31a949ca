"""Helpers for the cache tests: more app instances ("processes") on the test's data, the cache's
keys, and its Prometheus counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncConnection

from common.cache.backends import MemoryBackend, RedisBackend
from common.cache.entries import KEY_PREFIX
from common.cache.single_flight import SingleFlight
from services.companies import CompanyService
from settings.config import Settings
from settings.server import create_app
from tests.conftest import isolated_sessionmaker, make_settings

API = "/api/v1"


def settings_like(settings: Settings, **changes: Any) -> Settings:
    """The test's settings (database, Redis, storage) with `changes`."""
    return make_settings(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        storage_dir=settings.storage_dir,
        **changes,
    )


def patient(settings: Settings) -> Settings:
    """For the stampede tests: on a busy test machine, 50 concurrent requests can keep a Redis
    reply waiting past the production timeout (0.5 s), or the computing process busy past the
    stampede lock's (3 s); the cache would then rightly fail open, or stop waiting, and compute
    the value a second time, which is not what those tests are about."""
    return settings_like(
        settings,
        redis_socket_timeout=10,
        redis_connect_timeout=10,
        cache_lock_timeout_ms=30_000,
    )


@asynccontextmanager
async def running_app(
    settings: Settings, connection: AsyncConnection | None
) -> AsyncIterator[FastAPI]:
    """Another app instance, as another process would be: its own Redis client and cache, on the
    test's data (the test's connection on PostgreSQL, the same file on SQLite)."""
    application = create_app(settings)
    async with LifespanManager(application):
        if connection is not None:
            application.state.database.sessionmaker = isolated_sessionmaker(connection)
        yield application


@asynccontextmanager
async def client_for(application: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def cache_keys(application: FastAPI) -> list[str]:
    """Every key the app's cache holds (entries, tag generations, locks)."""
    cache = application.state.cache
    if cache is None:
        return []
    backend = cache.backend
    if isinstance(backend, MemoryBackend):
        return sorted(backend.stored_keys())
    assert isinstance(backend, RedisBackend)
    return sorted([key.decode() async for key in backend.redis.scan_iter(f"{KEY_PREFIX}:*")])


async def tag_generations(application: FastAPI) -> dict[str, bytes | None]:
    """Every tag the app's cache knows, with its current generation."""
    tag_keys = [k for k in await cache_keys(application) if k.startswith(f"{KEY_PREFIX}:tag:")]
    values = await application.state.cache.backend.get_many(tag_keys)
    return {k.removeprefix(f"{KEY_PREFIX}:tag:"): v for k, v in zip(tag_keys, values, strict=True)}


def entry_keys(keys: list[str], cache_name: str) -> list[str]:
    return [k for k in keys if f":{cache_name}:" in k and not k.endswith(":lock")]


def _sample(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


@dataclass(frozen=True)
class CacheCounts:
    hits: float
    misses: float
    errors: float

    @classmethod
    def of(cls, cache_name: str) -> CacheCounts:
        errors = sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "etter_cache_errors"
            for sample in metric.samples
            if sample.name == "etter_cache_errors_total"
        )
        return cls(
            hits=_sample("etter_cache_hits_total", cache=cache_name),
            misses=_sample("etter_cache_misses_total", cache=cache_name),
            errors=errors,
        )

    def __sub__(self, other: CacheCounts) -> CacheCounts:
        return CacheCounts(
            self.hits - other.hits, self.misses - other.misses, self.errors - other.errors
        )


def hold_company_reads_until_all_missed(monkeypatch: pytest.MonkeyPatch, misses: int) -> None:
    """Make the stampede real: the first computation of a company waits until `misses`
    requests have all read the cache and missed, so that every one of them is concurrent with
    it (without this, the first request may finish before the last one has even looked)."""
    missed = 0
    all_missed = asyncio.Event()
    single_flight = SingleFlight.run
    get_company = CompanyService.get

    async def counting(self: SingleFlight, flight: str, run: Any, shared: Any) -> Any:
        nonlocal missed
        missed += 1
        if missed >= misses:
            all_missed.set()
        return await single_flight(self, flight, run, shared)

    async def held(self: CompanyService, company_id: int) -> Any:
        await asyncio.wait_for(all_missed.wait(), timeout=30)
        return await get_company(self, company_id)

    monkeypatch.setattr(SingleFlight, "run", counting)
    monkeypatch.setattr(CompanyService, "get", held)
