"""Security headers on every response; the interactive docs keep working."""

from __future__ import annotations

import pytest
from fastapi.responses import JSONResponse

from tests.fixtures.apps import add_test_route

BASE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/health/live", "/openapi.json", "/nowhere"])
async def test_api_responses_carry_the_headers_and_a_deny_all_policy(client, path):
    response = await client.get(path)
    for name, value in BASE.items():
        assert response.headers[name] == value
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy


async def test_the_docs_page_is_not_broken_by_the_api_policy(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.own_app
async def test_a_header_set_by_the_route_wins(app, client):
    async def embeddable() -> JSONResponse:
        return JSONResponse({}, headers={"X-Frame-Options": "SAMEORIGIN"})

    add_test_route(app, "/test-only/embeddable", embeddable)
    response = await client.get("/test-only/embeddable")
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]


@pytest.mark.own_app
async def test_even_the_last_resort_500_carries_them(app, client):
    async def boom() -> None:
        raise RuntimeError("boom")

    add_test_route(app, "/test-only/boom", boom)
    response = await client.get("/test-only/boom")
    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"
