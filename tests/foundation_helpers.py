"""Assertions and helpers shared by the foundation's tests (auth, companies, users, errors)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

import common.security

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}
# Real argon2id, with the cheapest parameters: for tests that create users through the API
# without being about hashing. Verification reads the parameters from the hash itself.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem of `status`, carrying the request id; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert body["request_id"]
    assert response.headers["x-request-id"] == body["request_id"]
    if status == 422:
        assert body["errors"], body
        assert all({"field", "message"} <= error.keys() for error in body["errors"])
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    return body


def without_request(body: dict[str, Any]) -> dict[str, Any]:
    """A problem body minus what differs per request, to compare two answers byte for byte."""
    return {k: v for k, v in body.items() if k not in {"request_id", "instance"}}


def use_cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.security, "_hasher", CHEAP_HASHER)
