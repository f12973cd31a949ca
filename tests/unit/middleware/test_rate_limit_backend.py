"""The limiter's pieces: fail-open and recovery, headers, account keys, the token cache."""

from __future__ import annotations

import io
import json

import pytest
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError
from prometheus_client import REGISTRY

from common.rate_limits import Policy, RateLimitBackend, Verdict, account_key
from common.security import TokenVerifier, create_access_token
from common.structured_logger import configure_logging
from middleware.compression import refuses_gzip
from middleware.rate_limiter import TokenUsers, bearer_token, header_values
from settings.config import Settings

SECRET = "unit-test-secret-key-that-is-long-enough-for-hs256-000"
# Exact counts are asserted on hourly windows: the sliding-window counter may let one extra hit
# through as a window boundary passes, which an hour makes vanishingly unlikely mid-test.


class FlakyStorage(MemoryStorage):
    """A shared storage that can be made to fail like an unreachable Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def acquire_sliding_window_entry(self, *args, **kwargs):
        self.calls += 1
        if self.down:
            raise StorageError(ConnectionError("Connection refused"))
        return await super().acquire_sliding_window_entry(*args, **kwargs)


def fallbacks() -> float:
    return REGISTRY.get_sample_value("etter_rate_limit_fallback_total") or 0.0


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging("INFO", True, stream=stream)
    yield stream
    configure_logging("WARNING", False)


def events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


async def test_fails_open_logs_once_counts_and_recovers(log_stream):
    shared = FlakyStorage()
    now = [0.0]
    backend = RateLimitBackend(
        "sliding-window-counter", shared, retry_seconds=300, clock=lambda: now[0]
    )
    policy = Policy.parse("read", "5/hour")

    assert (await backend.hit(policy, "user:1")).remaining == 4
    shared.down = True
    counted = fallbacks()
    verdicts = [await backend.hit(policy, "user:1") for _ in range(6)]
    # Served by the in-process limiter: still a limit, from its own count.
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert backend.degraded
    assert fallbacks() == counted + 6
    assert shared.calls == 2  # one failed try, then no more until the retry interval
    assert events(log_stream) == ["rate_limit_storage_unavailable"]

    now[0] += 300  # the interval has passed
    shared.down = False
    recovered = await backend.hit(policy, "user:1")
    assert recovered.allowed
    assert recovered.remaining == 3
    assert not backend.degraded
    assert events(log_stream) == ["rate_limit_storage_unavailable", "rate_limit_storage_recovered"]


async def test_every_hit_is_counted_by_the_store_exactly():
    shared = FlakyStorage()
    backend = RateLimitBackend("sliding-window-counter", shared, retry_seconds=5)
    policy = Policy.parse("read", "1000/hour")
    verdicts = [await backend.hit(policy, "user:1") for _ in range(100)]
    assert [v.remaining for v in verdicts] == list(range(999, 899, -1))
    assert shared.calls == 100  # no quota leased ahead: the shared count is the true count


async def test_without_redis_memory_is_the_store_and_nothing_is_a_fallback():
    backend = RateLimitBackend.from_settings(Settings(_env_file=None, redis_url=None))
    counted = fallbacks()
    verdict = await backend.hit(Policy.parse("anonymous", "2/hour"), "ip:192.0.2.1")
    assert verdict.allowed
    assert verdict.remaining == 1
    assert fallbacks() == counted
    await backend.aclose()


def test_headers_follow_the_ietf_draft():
    read = Policy.parse("read", "600/minute")
    login = Policy.parse("login", "20/minute")
    account = Policy.parse("login-account", "10 per 5 minutes")
    assert header_values([Verdict(read, True, 599, 60)]) == [
        (b"ratelimit-policy", b'"read";q=600;w=60'),
        (b"ratelimit", b'"read";r=599;t=60'),
    ]
    assert header_values([Verdict(login, True, 19, 60), Verdict(account, False, 0, 200)]) == [
        (b"ratelimit-policy", b'"login";q=20;w=60, "login-account";q=10;w=300'),
        (b"ratelimit", b'"login";r=19;t=60, "login-account";r=0;t=200'),
    ]
    assert Verdict(read, False, 0, 0).retry_after == 1


def test_accounts_are_keyed_as_the_login_matches_them_without_the_address():
    key = account_key("Ann.Lee@Example.com ")
    assert key == account_key("ann.lee@example.com")
    assert "example" not in key
    assert key.startswith("account:")
    assert account_key("other@example.com") != key


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc.def", "abc.def"),
        (b"bearer  abc", "abc"),
        (b"Basic dXNlcg==", None),
        (b"Bearer ", None),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token({"headers": [(b"authorization", header)]}) == token


def test_token_users_checks_a_signature_once_and_never_caches_junk(monkeypatch):
    settings = Settings(_env_file=None, secret_key=SECRET)
    users = TokenUsers(settings, TokenVerifier(settings, size=2))
    calls = []
    from common import security

    real = security.decode_access_token
    monkeypatch.setattr(security, "decode_access_token", lambda s, t: calls.append(t) or real(s, t))
    tokens = [create_access_token(settings, user_id).token for user_id in (1, 2, 3)]
    assert [users.user_id(tokens[0]) for _ in range(3)] == [1, 1, 1]
    assert len(calls) == 1
    assert users.user_id("junk.token.value") is None
    assert users.user_id("junk.token.value") is None
    assert len(calls) == 3
    assert "junk.token.value" not in users.tokens._claims
    assert users.user_id(tokens[1]) == 2
    assert users.user_id(tokens[2]) == 3
    assert tokens[0] not in users.tokens._claims  # the oldest made room
    forged = tokens[1][:-2] + ("AA" if not tokens[1].endswith("AA") else "BB")
    assert users.user_id(forged) is None


@pytest.mark.parametrize(
    ("header", "refused"),
    [
        ("gzip", False),
        ("gzip, deflate, br", False),
        ("gzip;q=0", True),
        ("identity, gzip; q=0.000", True),
        ("GZIP;Q=0", True),
        ("gzip;q=0.5", False),
        ("gzip;q=nonsense", False),
        ("br;q=0, gzip", False),
    ],
)
def test_gzip_refusals(header, refused):
    assert refuses_gzip(header) is refused


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (b"gzip, deflate", True),
        (b"GZip", True),
        (b"gzip;q=0, identity", False),
        (b"identity", False),
        (b"br", False),
    ],
)
def test_gzip_acceptance(header, accepted):
    from middleware.compression import accepts_gzip

    assert accepts_gzip(header) is accepted


def test_token_users_by_header_checks_once_and_never_caches_junk(monkeypatch):
    settings = Settings(_env_file=None, secret_key=SECRET)
    users = TokenUsers(settings)
    calls = []
    from common import security

    real = security.decode_access_token
    monkeypatch.setattr(security, "decode_access_token", lambda s, t: calls.append(t) or real(s, t))
    token = create_access_token(settings, 7).token
    header = f"Bearer {token}".encode()
    assert [users.user_for_header(header) for _ in range(3)] == [7, 7, 7]
    assert len(calls) == 1
    for junk in (b"Bearer junk.token.value", b"Basic dXNlcg==", b"Bearer "):
        assert users.user_for_header(junk) is None
        assert junk.partition(b" ")[2].decode() not in users.tokens._claims
