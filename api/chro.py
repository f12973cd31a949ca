from __future__ import annotations

from api.routing import resource_router

router = resource_router("/chro", "chro")
