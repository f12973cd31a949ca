"""Invalidation by generations: one generation key per tag, holding a random token.

Invalidating a tag writes a new token (one SET per tag, O(1) whatever the number of entries,
visible to every process at once). An entry stores the generations of its tags as read *before*
its value was computed, and a read fetches the entry and the current generations in one MGET: if
any differs, the entry is stale and is a miss. Compared with Redis sets of keys per tag, nothing
has to be enumerated or deleted, a crash between "store" and "add to tag set" cannot leave an
entry that no invalidation reaches, and a write racing a computation is safe: generations are
read before the database is, and invalidation runs after the commit, so a value computed from
pre-commit data always carries a generation older than the one the commit's invalidation wrote.

Generations are random tokens, not counters, and a tag without one (never invalidated, or its
key expired or was evicted) is given a fresh one before anything is stored: an entry only ever
records tokens that never repeat, so a lost generation key makes its entries misses, never
current again.

Invalidations that could not be written (the backend is down) are kept and written first when
the backend answers again (all of them, via the global tag, if too many piled up), so an outage
leaves no entry stale after it (should the process end before Redis returns, the entries' TTL is
the bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from common.cache.backends import CacheBackend
from common.cache.entries import GENERATION_TTL_MS, GLOBAL_TAG, new_generation, tag_key

# Invalidations kept while the backend is down; beyond this, everything is invalidated instead.
MAX_LOST_TAGS: Final = 10_000


class Generations:
    def __init__(self, backend: CacheBackend) -> None:
        self.backend = backend
        self._lost_tags: set[str] = set()
        self._lost_all = False

    @staticmethod
    def missing(tag_keys: Sequence[str], current: Sequence[bytes | None]) -> dict[str, bytes]:
        """A fresh generation for each tag that has none, to be `ensure`d before computing."""
        return {
            tag: new_generation()
            for tag, generation in zip(tag_keys, current, strict=True)
            if generation is None
        }

    @staticmethod
    def complete(
        tag_keys: Sequence[str], current: Sequence[bytes | None], ensured: dict[str, bytes]
    ) -> list[bytes]:
        """The tags' generations: the ones read, and for the others the ones `ensure` left."""
        return [
            generation if generation is not None else ensured[tag]
            for tag, generation in zip(tag_keys, current, strict=True)
        ]

    async def bump(self, tags: set[str]) -> None:
        """Give each tag a new generation (raises the backend's errors)."""
        generation = new_generation()
        await self.backend.set_many({tag_key(tag): generation for tag in tags}, GENERATION_TTL_MS)

    # -- what an outage swallowed --------------------------------------------------------------

    @property
    def lost(self) -> bool:
        return bool(self._lost_tags) or self._lost_all

    def remember_lost(self, tags: set[str]) -> None:
        self._lost_tags |= tags
        if len(self._lost_tags) > MAX_LOST_TAGS:
            self._lost_tags.clear()
            self._lost_all = True

    async def replay(self) -> None:
        """Write the invalidations the outage swallowed (raises the backend's errors)."""
        lost = {GLOBAL_TAG} if self._lost_all else set(self._lost_tags)
        await self.bump(lost)
        self._lost_tags -= lost
        self._lost_all = False
