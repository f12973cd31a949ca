"""Credentials inside free text (an exception message, a request path, a foreign library's log
line) replaced before a log line is written: bearer tokens and anything shaped like a JWT.

The scan is linear in the length of the text, whatever the text is: anyone can put text into a
log (a request path is logged for every request, a 429 included), so a scrubber whose cost grows
faster than that is a way to stall the event loop. Hence no backtracking pattern over
attacker-shaped input: the text is cut into maximal runs of token characters by a pattern with
a single character class (each character is looked at a constant number of times), and each run
is then checked for JWTs by splitting it on dots. Bearer values are found by a pattern whose
only variable-length parts are bounded or end the match. On top of that the text scanned is
bounded (`MAX_SCRUB_CHARS`); what lies beyond the bound is cut off, never logged unscanned.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
# Longer text is cut to this many characters (and says so) before it is scanned and logged.
MAX_SCRUB_CHARS = 64 * 1024

# Runs of the characters a JWT is made of (base64url and the dots between its parts).
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_.\-]+")
# `Bearer <credential>`: the whitespace is bounded and the credential run ends the match, so
# a failed attempt costs a bounded amount of work.
_BEARER = re.compile(r"(?i)\b(bearer)\s{1,16}[A-Za-z0-9._~+/=-]+")
_JWT_HEAD = "eyJ"  # base64url of '{"', the start of every JWT header

# Keys whose values never leave the process, in a log line or an error report, compared
# lower-case with '-' read as '_' (headers, bodies, variables; at any depth).
SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "hashed_password",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "proxy_authorization",
        "cookie",
        "cookies",
        "set_cookie",
        "session",
        "secret",
        "secret_key",
        "api_key",
        "x_api_key",
        "dsn",
        "metrics_token",
    }
)


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def scrub_text(text: str) -> str:
    """`text` with bearer credentials and JWTs replaced by `REDACTED`; linear time."""
    if len(text) > MAX_SCRUB_CHARS:
        text = f"{text[:MAX_SCRUB_CHARS]}...[{len(text) - MAX_SCRUB_CHARS} characters cut]"
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(rf"\1 {REDACTED}", text)
    if _JWT_HEAD in text:
        text = _TOKEN_RUN.sub(_redact_run, text)
    return text


def _redact_run(match: re.Match[str]) -> str:
    run = match.group()
    if _JWT_HEAD not in run:
        return run
    return redact_jwts(run)


def redact_jwts(run: str) -> str:
    """A run of token characters with each JWT in it replaced.

    A JWT here is what `\\beyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*` matches: it
    starts at a word boundary with `eyJ` and one more character, then two more dot-separated
    parts, the second of them non-empty. Found part by part: each dot-separated part is looked
    at a constant number of times.
    """
    parts = run.split(".")
    out: list[str] = []
    k = 0
    while k < len(parts):
        part = parts[k]
        start = _jwt_start(part) if k + 2 < len(parts) and parts[k + 1] else -1
        if start < 0:
            out.append(part)
            k += 1
            continue
        out.append(part[:start] + REDACTED)
        k += 3  # the header's remainder, the payload and the signature are gone
    return ".".join(out)


def _jwt_start(part: str) -> int:
    """Where in `part` a JWT header starts (`eyJ` at a word boundary, one character more)."""
    at = part.find(_JWT_HEAD)
    while at >= 0:
        # Within a run the only non-word character is '-' (dots split the parts); a run
        # itself never follows a word character.
        if (at == 0 or part[at - 1] == "-") and len(part) > at + len(_JWT_HEAD):
            return at
        at = part.find(_JWT_HEAD, at + 1)
    return -1
