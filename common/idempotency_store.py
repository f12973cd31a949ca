"""Idempotency keys (IETF httpapi `Idempotency-Key` draft): the store and the fingerprint.

A creating `POST` that carries `Idempotency-Key` is run at most once per caller and key:

- the first request claims the key with an *in-flight* marker (atomically: one claim wins);
- once its transaction has committed, the marker is replaced by the stored response (status,
  headers, body), kept `IDEMPOTENCY_TTL_SECONDS` (24 h by default);
- if it fails (any error, a rollback), the marker is released and the key may be used again;
- a marker whose request died without releasing it (a killed worker) expires after
  `IDEMPOTENCY_LOCK_SECONDS`.

Records live in Redis when `REDIS_URL` is set (shared by every process and machine), in process
memory in the embedded default. `api/idempotency.py` is the HTTP side (fingerprint, replay).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

KEY_PREFIX = "etter:idempotency"
STORE_ERRORS = (RedisError, OSError)
# The embedded default keeps at most this many records in memory (oldest dropped first).
MEMORY_MAX_RECORDS = 100_000

# Claim the key unless a record exists; answer the existing record (nil: claimed).
_BEGIN = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# Delete the in-flight marker only if it is still ours (not a newer claim after it expired).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StoreUnavailableError(Exception):
    """The store (Redis) did not answer: the key can be neither checked nor claimed."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Record:
    """What the store holds for one caller and key: an in-flight claim or a finished response."""

    fingerprint: str
    token: str  # tells this claim from a later one of the same key
    response: StoredResponse | None = None  # None: still in flight

    def encode(self) -> bytes:
        data: dict[str, object] = {"fingerprint": self.fingerprint, "token": self.token}
        if self.response is not None:
            data["status"] = self.response.status
            data["headers"] = self.response.headers
            data["body"] = base64.b64encode(self.response.body).decode()
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        data = json.loads(raw)
        response = None
        if "status" in data:
            response = StoredResponse(
                status=int(data["status"]),
                headers=[(str(k), str(v)) for k, v in data["headers"]],
                body=base64.b64decode(data["body"]),
            )
        return cls(fingerprint=data["fingerprint"], token=data["token"], response=response)


def new_claim(fingerprint: str) -> Record:
    return Record(fingerprint=fingerprint, token=secrets.token_hex(16))


def storage_key(user_id: int, key: str) -> str:
    """Scoped to the caller; the client's key is hashed (bounded length, any characters)."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{KEY_PREFIX}:{user_id}:{digest}"


class IdempotencyStore(Protocol):
    name: str

    async def begin(self, key: str, claim: Record, lock_ms: int) -> Record | None:
        """Claim `key` with `claim` for `lock_ms`, or answer the record already there."""
        ...

    async def complete(self, key: str, record: Record, ttl_ms: int) -> None: ...

    async def release(self, key: str, claim: Record) -> None: ...


class RedisStore:
    name = "redis"

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._begin = redis.register_script(_BEGIN)
        self._release = redis.register_script(_RELEASE)

    async def begin(self, key: str, claim: Record, lock_ms: int) -> Record | None:
        try:
            current = await self._begin(keys=[key], args=[claim.encode(), lock_ms])
        except STORE_ERRORS as error:
            raise StoreUnavailableError(str(error)) from error
        return None if current is None else Record.decode(current)

    async def complete(self, key: str, record: Record, ttl_ms: int) -> None:
        try:
            await self.redis.set(key, record.encode(), px=ttl_ms)
        except STORE_ERRORS as error:
            raise StoreUnavailableError(str(error)) from error

    async def release(self, key: str, claim: Record) -> None:
        try:
            await self._release(keys=[key], args=[claim.encode()])
        except STORE_ERRORS as error:
            raise StoreUnavailableError(str(error)) from error


class MemoryStore:
    """The embedded default's store: one process, so a dict is atomic between awaits."""

    name = "memory"

    def __init__(
        self, max_records: int = MEMORY_MAX_RECORDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._records: OrderedDict[str, tuple[float, Record]] = OrderedDict()
        self._max_records = max_records
        self._clock = clock

    def _get(self, key: str) -> Record | None:
        found = self._records.get(key)
        if found is None:
            return None
        expires, record = found
        if expires <= self._clock():
            del self._records[key]
            return None
        return record

    def _put(self, key: str, record: Record, ttl_ms: int) -> None:
        self._records[key] = (self._clock() + ttl_ms / 1000, record)
        self._records.move_to_end(key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)

    async def begin(self, key: str, claim: Record, lock_ms: int) -> Record | None:
        current = self._get(key)
        if current is None:
            self._put(key, claim, lock_ms)
        return current

    async def complete(self, key: str, record: Record, ttl_ms: int) -> None:
        self._put(key, record, ttl_ms)

    async def release(self, key: str, claim: Record) -> None:
        current = self._get(key)
        if current is not None and current.token == claim.token and current.response is None:
            del self._records[key]


def create_idempotency_store(redis: Redis | None) -> IdempotencyStore:
    """Redis when the app has a client (every process shares the keys), else process memory."""
    return RedisStore(redis) if redis is not None else MemoryStore()
