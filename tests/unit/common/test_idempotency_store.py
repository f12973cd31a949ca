"""The embedded default's idempotency store: expiry by TTL and a bounded size (the Redis store
is driven through the API in tests/integration/api/test_idempotency.py)."""

from __future__ import annotations

from common.idempotency_store import MemoryStore, Record, StoredResponse, new_claim, storage_key


def test_a_record_survives_encoding():
    record = Record("fp", "tok", StoredResponse(201, [("location", "/x/1")], b"\x00{}"))
    assert Record.decode(record.encode()) == record
    claim = new_claim("fp")
    assert Record.decode(claim.encode()) == claim


def test_keys_are_per_caller_and_bounded():
    assert storage_key(1, "k") != storage_key(2, "k")
    assert len(storage_key(1, "x" * 255)) == len(storage_key(1, "k"))


async def test_the_memory_store_forgets_a_key_after_its_ttl():
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    claim = new_claim("fp")
    assert await store.begin("k", claim, lock_ms=60_000) is None
    done = Record("fp", claim.token, response=None)
    await store.complete("k", done, ttl_ms=86_400_000)
    now[0] += 86_399
    assert await store.begin("k", new_claim("fp"), lock_ms=60_000) == done
    now[0] += 2
    assert await store.begin("k", new_claim("fp"), lock_ms=60_000) is None


async def test_the_memory_store_drops_the_oldest_records_beyond_its_bound():
    store = MemoryStore(max_records=2)
    for name in ("a", "b", "c"):
        await store.begin(name, new_claim(name), lock_ms=60_000)
    assert await store.begin("a", new_claim("a"), lock_ms=60_000) is None  # dropped, claimable
    assert await store.begin("c", new_claim("x"), lock_ms=60_000) is not None
