"""Guards of the hot path that need no server: no sync callable on any route's request path,
and the shared token verifier's rules."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from common.security import LEEWAY_SECONDS, TokenVerifier, create_access_token
from settings.config import Settings
from settings.server import create_app

SECRET = "request-path-test-secret-key-0123456789abcdef"


def is_async(call: Callable[..., Any]) -> bool:
    """True when FastAPI awaits `call` on the event loop rather than sending it to a thread."""
    while isinstance(call, functools.partial):
        call = call.func
    if inspect.isclass(call):
        return False  # a class is called (its __init__ runs) in a worker thread
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    if not inspect.isfunction(call) and not inspect.ismethod(call):
        dunder = getattr(call, "__call__", None)  # noqa: B004 - instances like OAuth2PasswordBearer
        return dunder is not None and (
            inspect.iscoroutinefunction(dunder) or inspect.isasyncgenfunction(dunder)
        )
    return False


def walk(dependant: Dependant, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for sub in dependant.dependencies:
        name = getattr(sub.call, "__qualname__", type(sub.call).__name__)
        yield (*path, name), sub.call
        yield from walk(sub, (*path, name))


@dataclass
class Route:
    methods: set[str]
    path: str
    endpoint: Callable[..., Any]
    dependant: Dependant


def api_routes() -> list[Route]:
    """Every API route as the app serves it, included routers' routes with their prefix and
    the dependencies the inclusion adds (FastAPI's own iteration, as the OpenAPI one)."""
    app = create_app(Settings(_env_file=None))
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            dependant = getattr(context, "dependant", None) or context.original_route.dependant
            found.append(Route(context.methods, context.path, context.endpoint, dependant))
    return found


def test_the_walk_finds_every_route_and_their_dependencies():
    routes = api_routes()
    assert len(routes) >= 30
    assert any(route.path == "/api/v1/auth/me" for route in routes)
    everything = [name for route in routes for name, _ in walk(route.dependant)]
    # The shared ones are there, so an empty walk cannot pass the test below by accident.
    assert any(path[-1] == "get_principal" for path in everything)
    assert any(path[-1] == "get_session" for path in everything)


def test_no_sync_callable_on_any_request_path():
    offenders = [
        f"{','.join(route.methods)} {route.path}: {' -> '.join(path)}"
        for route in api_routes()
        for path, call in walk(route.dependant)
        if call is not None and not is_async(call)
    ]
    offenders += [
        f"{','.join(route.methods)} {route.path}: endpoint {route.endpoint.__qualname__}"
        for route in api_routes()
        if not is_async(route.endpoint)
    ]
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: None, False),
        (Settings, False),  # a class: its __init__ runs in a thread
        (functools.partial(lambda x: x, 1), False),
    ],
)
def test_the_check_recognises_sync_callables(call, expected):
    assert is_async(call) is expected


async def _async_dependency() -> None:
    return None


def test_the_check_recognises_async_callables():
    class AsyncCallable:
        async def __call__(self) -> None:
            return None

    assert is_async(_async_dependency)
    assert is_async(functools.partial(_async_dependency))
    assert is_async(AsyncCallable())


def test_a_verified_token_is_decoded_once_and_refused_once_expired(monkeypatch):
    settings = Settings(_env_file=None, secret_key=SECRET)
    tokens = TokenVerifier(settings)
    from common import security

    calls: list[str] = []
    real = security.decode_access_token
    monkeypatch.setattr(security, "decode_access_token", lambda s, t: calls.append(t) or real(s, t))
    token = create_access_token(settings, 42).token
    assert [tokens.verify(token).user_id for _ in range(3)] == [42, 42, 42]  # type: ignore[union-attr]
    assert len(calls) == 1
    # Past `exp` (and the leeway) the cached entry no longer answers: decoded again, refused.
    claims = tokens.verify(token)
    assert claims is not None
    later = claims.expires_at + LEEWAY_SECONDS + 1
    monkeypatch.setattr(security.time, "time", lambda: later)
    monkeypatch.setattr(security.jwt.api_jwt, "datetime", _frozen_datetime(later))
    assert tokens.verify(token) is None
    assert token not in tokens._claims


def _frozen_datetime(epoch: float) -> Any:
    from datetime import UTC, datetime

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(epoch, tz or UTC)

    return Frozen


def test_the_verifier_keeps_no_invalid_token_and_is_bounded():
    settings = Settings(_env_file=None, secret_key=SECRET)
    tokens = TokenVerifier(settings, size=2)
    for junk in ("", "junk", "a.b.c"):
        assert tokens.verify(junk) is None
    assert tokens._claims == {}
    issued = [create_access_token(settings, n).token for n in (1, 2, 3)]
    for token in issued:
        assert tokens.verify(token) is not None
    assert list(tokens._claims) == issued[1:]
    assert time.monotonic() < min(expiry for _, expiry in tokens._claims.values())
