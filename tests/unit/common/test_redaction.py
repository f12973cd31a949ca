"""The redaction processor: secrets by key at any depth, credentials inside free text."""

from __future__ import annotations

from common.structured_logger import REDACTED, redact_secrets

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl"


def redact(**event):
    return redact_secrets(None, "info", event)


def test_secret_keys_are_redacted_whatever_their_case():
    event = redact(password="p", Authorization="Bearer x", Cookie="a=b", user_id=7)
    assert event == {
        "password": REDACTED,
        "Authorization": REDACTED,
        "Cookie": REDACTED,
        "user_id": 7,
    }


def test_nested_secrets_are_redacted():
    event = redact(
        request={"headers": {"authorization": "Bearer x", "accept": "*/*"}}, items=[{"token": "t"}]
    )
    assert event["request"]["headers"] == {"authorization": REDACTED, "accept": "*/*"}
    assert event["items"] == [{"token": REDACTED}]


def test_credentials_inside_text_are_scrubbed():
    event = redact(event=f"calling with Authorization: Bearer {JWT} now", detail=f"token={JWT}")
    assert JWT not in event["event"]
    assert "Bearer [redacted]" in event["event"]
    assert JWT not in event["detail"]


def test_ordinary_values_are_untouched():
    event = redact(event="request", route="/api/v1/users/{user_id}", status=200, bytes=None)
    assert event == {
        "event": "request",
        "route": "/api/v1/users/{user_id}",
        "status": 200,
        "bytes": None,
    }
