from __future__ import annotations

from typing import Literal

from schemas.base import Schema


class Token(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
