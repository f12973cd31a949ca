"""Reusable validated types for the edge: request bodies, query strings and forms."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

# Ids are PostgreSQL `integer` identities: a larger one names nothing, and must be a 422 (or
# nobody), never a database error.
MAX_ID = 2_147_483_647


def refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refuse it at the edge instead of failing in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def refuse_null(value: Any) -> Any:
    """For PATCH fields that may be left out but not cleared: their columns are NOT NULL, and
    an explicit null must be a 422 on that field, not a database error."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


def contains_nul(value: Any) -> bool:
    """True when a string anywhere inside `value` (dicts, lists) holds a NUL character.

    Walks with an explicit stack, not recursion: a client's JSON nested a few hundred levels
    deep must be a 422 from the schema, not a RecursionError (500) in this check.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


# A trimmed, non-empty, NUL-free string of bounded length: names, titles, departments.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(refuse_nul),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(refuse_nul),
]
LongText = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(refuse_nul)]
# A search term from a query string.
SearchTerm = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(refuse_nul),
]
CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$"),
]
# A domain name as an email address ends (stored lower-case): labels of letters, digits and inner
# hyphens, at least two of them, the last starting with a letter.
EmailDomain = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=253,
        pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
        r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
    ),
    AfterValidator(str.lower),
]
# Passwords: at least 8 characters, at least 64 allowed, no composition rules (NIST 800-63B).
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=128), AfterValidator(refuse_nul)
]
