"""Password hashing and access tokens, without the HTTP layer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from common.security import (
    JWT_ALGORITHM,
    create_access_token,
    decode_access_token,
    needs_rehash,
    verify_password,
)
from tests.conftest import make_settings
from tests.fixtures.factories import _HASH, PASSWORD
from tests.fixtures.problems import CHEAP_HASHER

SETTINGS = make_settings()


# --- passwords --------------------------------------------------------------------------------


def test_stored_hashes_are_argon2id():
    assert _HASH.startswith("$argon2id$")
    assert not needs_rehash(_HASH)


async def test_verify_accepts_the_password_and_nothing_else():
    assert await verify_password(_HASH, PASSWORD)
    assert not await verify_password(_HASH, PASSWORD.upper())
    assert not await verify_password(_HASH, PASSWORD + " ")
    assert not await verify_password(_HASH, "")


async def test_verify_without_a_hash_is_false():
    """No account: a hash is still verified (same cost), and the answer is always no."""
    assert not await verify_password(None, PASSWORD)
    assert not await verify_password(None, "etter-timing-equaliser")


@pytest.mark.parametrize("stored", ["", "plain-text", "$argon2id$v=19$broken", "$2b$12$bcrypt"])
async def test_verify_against_a_corrupt_hash_is_false_not_an_error(stored):
    assert not await verify_password(stored, PASSWORD)


def test_weaker_parameters_need_a_rehash():
    assert needs_rehash(CHEAP_HASHER.hash(PASSWORD))


# --- tokens -----------------------------------------------------------------------------------


def test_token_round_trip():
    issued = create_access_token(SETTINGS, 42)
    assert issued.expires_in == SETTINGS.access_token_expire_minutes * 60
    claims = decode_access_token(SETTINGS, issued.token)
    assert claims is not None
    assert claims.user_id == 42
    assert claims.issued_at.tzinfo is UTC
    assert abs(claims.issued_at - datetime.now(UTC)) < timedelta(minutes=1)
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == JWT_ALGORITHM


def test_every_token_has_its_own_id():
    first = decode_access_token(SETTINGS, create_access_token(SETTINGS, 1).token)
    second = decode_access_token(SETTINGS, create_access_token(SETTINGS, 1).token)
    assert first is not None
    assert second is not None
    assert first.jti != second.jti


def encode(secret: str | None = None, algorithm: str = JWT_ALGORITHM, **changes: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "7",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    key = SETTINGS.secret_key.get_secret_value() if secret is None else secret
    return jwt.encode(claims, key, algorithm=algorithm)


def test_a_well_formed_token_decodes():
    claims = decode_access_token(SETTINGS, encode())
    assert claims is not None
    assert claims.user_id == 7


def test_leeway_is_small_but_present():
    """A token a few seconds past its expiry still works (clock skew); a minute past does not."""
    now = datetime.now(UTC)
    assert decode_access_token(SETTINGS, encode(exp=now - timedelta(seconds=3))) is not None
    assert decode_access_token(SETTINGS, encode(exp=now - timedelta(seconds=60))) is None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(encode(exp=datetime.now(UTC) - timedelta(hours=1)), id="expired"),
        pytest.param(encode(aud="other"), id="audience"),
        pytest.param(encode(iss="other"), id="issuer"),
        pytest.param(encode(secret="another-secret-long-enough-for-hs256-xx"), id="signature"),
        pytest.param(encode(secret="", algorithm="none"), id="alg-none"),
        pytest.param(encode(sub=None), id="no-sub"),
        pytest.param(encode(jti=None), id="no-jti"),
        pytest.param(encode(iat=None), id="no-iat"),
        pytest.param(encode(exp=None), id="no-exp"),
        pytest.param(encode(sub="seven"), id="sub-not-a-number"),
        pytest.param(encode(sub="0"), id="sub-zero"),
        pytest.param(encode(sub="-5"), id="sub-negative"),
        pytest.param(encode(sub=str(2**31)), id="sub-beyond-int32"),
        pytest.param(encode(sub="9" * 5000), id="sub-absurdly-long"),
        pytest.param(encode(iat=-(10**15)), id="iat-out-of-range"),
        pytest.param(encode(iat="yesterday"), id="iat-not-a-number"),
        pytest.param("", id="empty"),
        pytest.param("a.b.c", id="garbage"),
        pytest.param("x" * 10_000, id="huge"),
    ],
)
def test_invalid_tokens_decode_to_none(token):
    assert decode_access_token(SETTINGS, token) is None


def test_a_token_for_another_deployment_is_refused():
    other = make_settings(secret_key="a-different-deployments-secret-0123456789abcdef")
    assert decode_access_token(other, create_access_token(SETTINGS, 1).token) is None
    renamed = make_settings(jwt_audience="another-api")
    assert decode_access_token(renamed, create_access_token(SETTINGS, 1).token) is None
