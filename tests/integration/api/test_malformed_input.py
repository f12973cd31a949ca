"""Malformed input is never a 500: every foundation endpoint, fed wrong types, oversized and
NUL-laden strings, broken JSON, wrong content types and impossible ids, answers a 4xx problem
that carries the request id.

Each test drives one endpoint through its list of bad requests and reports every case that
slipped through at once, rather than stopping at the first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fixtures.factories import PASSWORD
from tests.fixtures.problems import assert_problem, use_cheap_hashing

pytestmark = pytest.mark.embedded

API = "/api/v1"
BAD_IDS = ["0", "-1", "abc", str(2**40), str(2**31), "1.5", "1e3", "%00", "1%00", "0x1"]
HUGE = "x" * 100_000
HUGE_QUERY = "x" * 20_000  # httpx refuses to send a query of more than 64 KiB
NUL = "bad\x00value"
SURROGATE = "\ud800"  # valid in JSON ("\\ud800"), not encodable as UTF-8


@dataclass
class Bad:
    """One malformed request: `json`, raw `content` (+ content type), form `data` or `params`."""

    name: str
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None
    path: str | None = None  # replaces the endpoint's path (bad ids)
    raw_query: str | None = None  # appended as is: percent-escapes of bytes that are not UTF-8
    extra_headers: dict[str, str | bytes] = field(default_factory=dict)
    # Starlette decodes broken percent-escapes to U+FFFD: then a search may simply find nothing.
    may_succeed: bool = False

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": dict(self.extra_headers)}
        content, content_type = self.content, self.content_type
        if content is None and self.json is not None:
            # ensure_ascii: a lone surrogate travels as the valid JSON escape "\ud800".
            content, content_type = json.dumps(self.json).encode(), "application/json"
        if content is not None:
            kwargs["content"] = content
            if content_type:
                kwargs["headers"]["content-type"] = content_type
        elif self.data is not None:
            kwargs["data"] = self.data
        if self.params is not None:
            kwargs["params"] = self.params
        return kwargs


def bad_bodies(valid: dict[str, Any]) -> list[Bad]:
    """Every way to spoil a JSON body whose valid form is `valid`."""
    cases = [
        Bad("invalid json", content=b'{"name": ', content_type="application/json"),
        Bad("json with trailing junk", content=b"{}}", content_type="application/json"),
        Bad("empty body", content=b"", content_type="application/json"),
        Bad("json null", content=b"null", content_type="application/json"),
        Bad("json list", json=[valid]),
        Bad("json string", json="hello"),
        Bad("json number", json=42),
        Bad("not utf-8", content=b'{"name": "\xff\xfe"}', content_type="application/json"),
        Bad("text/plain", content=b"name=x", content_type="text/plain"),
        Bad(
            "form encoded",
            content=b"name=x&country=US",
            content_type="application/x-www-form-urlencoded",
        ),
        Bad("xml", content=b"<company><name>x</name></company>", content_type="application/xml"),
        Bad(
            "deeply nested",
            content=b"[" * 100_000 + b"]" * 100_000,
            content_type="application/json",
        ),
        Bad("nested 500", json={"name": _nest(500)}),
        Bad("NaN", content=b'{"employee_count": NaN}', content_type="application/json"),
        Bad("unknown field", json={**valid, "unexpected": 1}),
        Bad("nul in unknown key", json={**valid, "x\x00": 1}),
    ]
    for key, value in valid.items():
        cases += [
            Bad(f"{key}: NUL", json={**valid, key: NUL}),
            Bad(f"{key}: huge", json={**valid, key: HUGE}),
            Bad(f"{key}: list", json={**valid, key: [value]}),
            Bad(f"{key}: object", json={**valid, key: {"value": value}}),
            Bad(f"{key}: surrogate", json={**valid, key: SURROGATE + "@x.example"}),
        ]
        if isinstance(value, str):
            cases.append(Bad(f"{key}: number", json={**valid, key: 12345}))
        if isinstance(value, int) and not isinstance(value, bool):
            cases += [
                Bad(f"{key}: string", json={**valid, key: "many"}),
                Bad(f"{key}: float", json={**valid, key: 1.5}),
                Bad(f"{key}: 2**70", json={**valid, key: 2**70}),
                Bad(f"{key}: -2**70", json={**valid, key: -(2**70)}),
                Bad(
                    f"{key}: 1e309",
                    content=f'{{"{key}": 1e309}}'.encode(),
                    content_type="application/json",
                ),
            ]
    return cases


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def bad_ids(template: str) -> list[Bad]:
    return [Bad(f"id {raw!r}", path=template.format(id=raw), json={"x": 1}) for raw in BAD_IDS]


def bad_query(**valid: str) -> list[Bad]:
    """Spoil each query parameter in turn (with the others valid)."""
    cases: list[Bad] = []
    for key in valid:
        cases.append(Bad(f"?{key}: NUL", params={**valid, key: NUL}))
        cases.append(Bad(f"?{key}: huge", params={**valid, key: HUGE_QUERY}))
        cases.append(Bad(f"?{key}: repeated", raw_query=f"{key}=ab&{key}=cd&{key}="))
        for label, escapes in (("surrogate", "%ED%A0%80"), ("invalid utf-8", "%FF%FE%00")):
            others = "&".join(f"{k}={v}" for k, v in valid.items() if k != key)
            cases.append(
                Bad(f"?{key}: {label}", raw_query=f"{key}=ab{escapes}&{others}", may_succeed=True)
            )
    return cases


PAGE_QUERY = [
    Bad(f"?{key}={value}", params={key: value})
    for key in ("page", "page_size")
    for value in ("abc", "0", "-1", str(2**40), "1.5", "1e2", NUL, "", HUGE_QUERY)
]
COMPANY = {"name": "Valid Co", "country": "US", "industry": "Retail", "employee_count": 10}
USER = {
    "email": "valid.user@example.com",
    "full_name": "Valid User",
    "password": "valid-password",
    "department": "Sales",
    "job_title": "Rep",
    "role": "member",
    "company_id": 1,
}

ENDPOINTS: dict[str, tuple[str, str, list[Bad]]] = {
    "login": (
        "POST",
        f"{API}/auth/token",
        [
            Bad("username NUL", data={"username": NUL, "password": PASSWORD}),
            Bad("password NUL", data={"username": "a@b.example", "password": NUL}),
            Bad("huge username", data={"username": HUGE, "password": PASSWORD}),
            Bad("huge password", data={"username": "a@b.example", "password": HUGE}),
            Bad(
                "surrogate username",
                content=b"username=%ED%A0%80&password=x",
                content_type="application/x-www-form-urlencoded",
            ),
            Bad(
                "invalid utf-8",
                content=b"username=%FF%FE&password=%FF",
                content_type="application/x-www-form-urlencoded",
            ),
            Bad(
                "raw bytes",
                content=b"username=\xff\x00&password=\x00",
                content_type="application/x-www-form-urlencoded",
            ),
            Bad("empty form", content=b"", content_type="application/x-www-form-urlencoded"),
            Bad("json body", json={"username": "a@b.example", "password": PASSWORD}),
            Bad("text body", content=b"username=a", content_type="text/plain"),
            Bad(
                "broken multipart",
                content=b"--xx\r\nContent-Disposition: form-data",
                content_type="multipart/form-data; boundary=xx",
            ),
            Bad("multipart without boundary", content=b"abc", content_type="multipart/form-data"),
            Bad(
                "grant_type wrong",
                data={"username": "a@b.example", "password": "x", "grant_type": "implicit"},
            ),
        ],
    ),
    "me": (
        "GET",
        f"{API}/auth/me",
        [
            Bad("huge token", extra_headers={"Authorization": "Bearer " + "x" * 8000}),
            Bad("token of dots", extra_headers={"Authorization": "Bearer ....."}),
            Bad("non-ascii token", extra_headers={"Authorization": "Bearer é.é.é".encode()}),
        ],
    ),
    "list companies": (
        "GET",
        f"{API}/companies",
        [
            *PAGE_QUERY,
            *bad_query(q="ab", industry="Retail", country="US"),
            Bad("?country=USA", params={"country": "USA"}),
            Bad("?country=1A", params={"country": "1A"}),
        ],
    ),
    "get company": ("GET", f"{API}/companies/{{id}}", bad_ids(f"{API}/companies/{{id}}")),
    "create company": ("POST", f"{API}/companies", bad_bodies(COMPANY)),
    "update company": (
        "PATCH",
        f"{API}/companies/{{tenant}}",
        [*bad_bodies(COMPANY), *bad_ids(f"{API}/companies/{{id}}")],
    ),
    "list users": (
        "GET",
        f"{API}/users",
        [
            *PAGE_QUERY,
            *bad_query(q="ab", department="Sales", role="member", company_id="1"),
            *[Bad(f"?company_id={raw}", params={"company_id": raw}) for raw in BAD_IDS],
        ],
    ),
    "autocomplete": (
        "GET",
        f"{API}/users/autocomplete",
        [
            *bad_query(q="ab", limit="5"),
            Bad("no q", params={}),
            *[Bad(f"?limit={raw}", params={"q": "ab", "limit": raw}) for raw in BAD_IDS],
        ],
    ),
    "get user": ("GET", f"{API}/users/{{id}}", bad_ids(f"{API}/users/{{id}}")),
    "create user": ("POST", f"{API}/users", bad_bodies(USER)),
    "update user": (
        "PATCH",
        f"{API}/users/{{member}}",
        [
            *bad_bodies({k: v for k, v in USER.items() if k != "company_id"}),
            *bad_ids(f"{API}/users/{{id}}"),
        ],
    ),
    "deactivate user": ("DELETE", f"{API}/users/{{id}}", bad_ids(f"{API}/users/{{id}}")),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_malformed_requests_get_a_4xx_problem(client, world, monkeypatch, endpoint):
    use_cheap_hashing(monkeypatch)
    method, template, cases = ENDPOINTS[endpoint]
    auth = {} if endpoint == "login" else world.auth(world.admin)
    failures = []
    for case in cases:
        path = (case.path or template).format(
            id="{id}", tenant=world.tenant.id, member=world.member.id
        )
        if case.raw_query is not None:
            path += "?" + case.raw_query
        kwargs = case.request_kwargs()
        kwargs["headers"] = {**auth, **kwargs["headers"]}
        r = await client.request(method, path, **kwargs)
        if case.may_succeed and r.status_code < 300:
            continue
        problem = _problem_fault(r)
        if problem:
            failures.append(f"{case.name}: {problem}")
    assert not failures, f"{endpoint}:\n" + "\n".join(failures)


def _problem_fault(r) -> str | None:
    """Why `r` is not a proper 4xx problem, or None when it is."""
    if not 400 <= r.status_code < 500:
        return f"status {r.status_code}: {r.text[:300]}"
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return f"content-type {r.headers.get('content-type')}"
    body = r.json()
    if not body.get("request_id") or body["request_id"] != r.headers.get("x-request-id"):
        return f"request id {body.get('request_id')} vs header {r.headers.get('x-request-id')}"
    if body.get("status") != r.status_code:
        return f"body status {body.get('status')} vs {r.status_code}"
    if r.status_code == 422 and not body.get("errors"):
        return "422 without errors"
    for secret in ("Traceback", "sqlalchemy", "asyncpg", "SELECT ", "INSERT "):
        if secret in r.text:
            return f"leaks {secret!r}"
    return None


async def test_a_valid_request_still_works_after_the_barrage(client, world):
    """The cases above fail for their one defect: the same requests made valid succeed."""
    headers = world.auth(world.admin)
    r = await client.post(f"{API}/companies", json=COMPANY, headers=headers)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{API}/users", json={**USER, "company_id": world.tenant.id}, headers=headers
    )
    assert r.status_code == 201, r.text
    r = await client.get(
        f"{API}/companies",
        params={"q": "ab", "industry": "Retail", "country": "US"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = await client.get(
        f"{API}/users",
        params={"q": "ab", "department": "Sales", "role": "member", "company_id": "1"},
        headers=headers,
    )
    assert r.status_code == 200, r.text


async def test_every_error_status_has_one_problem_shape(client, world):
    """401, 403, 404, 409 and 422 from the foundation: one body shape, one request id."""
    chro = world.auth(world.chro)
    answers = {
        401: await client.get(f"{API}/users"),
        403: await client.post(f"{API}/companies", json=COMPANY, headers=chro),
        404: await client.get(f"{API}/users/{world.outsider.id}", headers=chro),
        409: await client.patch(
            f"{API}/users/{world.member.id}", json={"email": world.chro.email}, headers=chro
        ),
        422: await client.get(f"{API}/users", params={"page_size": 0}, headers=chro),
    }
    slugs = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not-found",
        409: "conflict",
        422: "validation-error",
    }
    for status, r in answers.items():
        body = assert_problem(r, status)
        expected_keys = {"type", "title", "status", "detail", "instance", "request_id"}
        if status == 422:
            expected_keys.add("errors")
        assert set(body) == expected_keys, (status, body)
        assert body["type"] == f"urn:etter:problem:{slugs[status]}"
        assert body["title"]
        assert body["detail"]
    assert len({r.headers["x-request-id"] for r in answers.values()}) == len(answers)


async def test_a_valid_incoming_request_id_is_kept(client, world):
    request_id = "client-chosen-id-0123456789"
    r = await client.get(
        f"{API}/users/2147483647", headers={**world.auth(world.chro), "X-Request-ID": request_id}
    )
    assert assert_problem(r, 404)["request_id"] == request_id
