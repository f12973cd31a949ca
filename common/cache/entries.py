"""Keys, generation tokens and the stored envelope of a cache entry.

An entry is `msgpack([generations of its tags, value as the schema's JSON])`; it is current only
while every tag still has the generation it recorded. Keys:
`etter:v1:<schema>:<cache>:<function>:<scope>:<arguments digest>` (see
`services/cache_service.py`); a tag's generation lives at `etter:v1:tag:<tag>`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Final

import msgpack
from pydantic import TypeAdapter, ValidationError

KEY_PREFIX: Final = "etter:v1"
GLOBAL_TAG: Final = "*"  # every entry depends on it: invalidating it drops everything
# A generation key lives a week after it was last written: a bound on memory, not on safety
# (a lost generation key only turns its entries into misses; see common/cache/invalidation.py).
GENERATION_TTL_MS: Final = 7 * 24 * 3600 * 1000


class _Missing:
    """No current value: the entry is absent, stale, or of another format or shape."""


MISSING: Final = _Missing()


def tag_key(tag: str) -> str:
    return f"{KEY_PREFIX}:tag:{tag}"


def tag_keys(tags: Sequence[str] | set[str] | frozenset[str] | Any) -> list[str]:
    """The generation keys an entry depends on: the global tag's first, then its own, sorted."""
    return [tag_key(tag) for tag in (GLOBAL_TAG, *sorted(set(tags) - {GLOBAL_TAG}))]


def new_generation() -> bytes:
    return secrets.token_hex(8).encode()


def pack(generations: list[bytes], payload: bytes) -> bytes:
    return msgpack.packb([generations, payload], use_bin_type=True)


def unpack(
    raw: bytes | None, generations: Sequence[bytes | None], adapter: TypeAdapter[Any]
) -> Any:
    """The entry's value if it is current (its generations are `generations`), else MISSING."""
    if raw is None or None in generations:
        return MISSING
    try:
        stored, payload = msgpack.unpackb(raw, raw=False)
        if stored != generations:
            return MISSING
        return adapter.validate_json(payload)
    except (ValueError, TypeError, msgpack.UnpackException, ValidationError):
        return MISSING  # another format or shape: recomputed and overwritten
