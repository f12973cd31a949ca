from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessReport(BaseModel):
    status: Literal["ready", "unavailable"]
    database: Literal["ok", "down"]
    redis: Literal["ok", "down", "not configured"]
