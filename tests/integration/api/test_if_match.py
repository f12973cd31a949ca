"""If-Match on PATCH for users, companies and workflows: the ETag GET sends guards the edit.

Match: applied. Mismatch: 412, nothing changed. `W/"x"` and `"x"` are the same tag (weak
comparison, api/http_cache.py); `*` and lists work; malformed: 400; absent: applied (last
writer wins). Documents keep their own version ETag (tests/integration/test_documents.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.factories import World
from tests.fixtures.problems import assert_problem, use_cheap_hashing
from tests.fixtures.workflows import create_workflow

pytestmark = pytest.mark.embedded

API = "/api/v1"


async def target(kind: str, world: World, db: Any) -> tuple[str, dict[str, str], str]:
    """(url, editor's headers, a field to change) for one resource of each kind."""
    if kind == "users":
        return f"{API}/users/{world.member.id}", world.auth(world.chro), "job_title"
    if kind == "companies":
        return f"{API}/companies/{world.tenant.id}", world.auth(world.admin), "industry"
    workflow = await create_workflow(db, world.tenant, world.chro, name="Guarded")
    await db.commit()
    return f"{API}/workflows/{workflow.id}", world.auth(world.chro), "description"


KINDS = ["users", "companies", "workflows"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_patch_with_the_current_etag_applies_and_a_stale_one_is_412(
    client, world, db, monkeypatch, kind
):
    use_cheap_hashing(monkeypatch)
    url, headers, field = await target(kind, world, db)
    read = await client.get(url, headers=headers)
    assert read.status_code == 200, read.text
    etag = read.headers["etag"]
    assert etag.startswith('W/"')

    ok = await client.patch(url, json={field: "First"}, headers={**headers, "If-Match": etag})
    assert ok.status_code == 200, ok.text
    fresh = await client.get(url, headers=headers)
    assert fresh.json()[field] == "First"
    assert fresh.headers["etag"] != etag
    if kind != "workflows":  # a workflow's PATCH body is not its GET representation
        assert ok.headers["etag"] == fresh.headers["etag"]

    stale = await client.patch(url, json={field: "Second"}, headers={**headers, "If-Match": etag})
    problem = assert_problem(stale, 412)
    assert problem["type"] == "urn:etter:problem:precondition-failed"
    assert (await client.get(url, headers=headers)).json()[field] == "First"


@pytest.mark.parametrize("kind", KINDS)
async def test_strong_form_lists_and_star_match_and_no_if_match_still_applies(
    client, world, db, kind
):
    url, headers, field = await target(kind, world, db)
    etag = (await client.get(url, headers=headers)).headers["etag"]
    strong = etag.removeprefix("W/")
    r = await client.patch(url, json={field: "A"}, headers={**headers, "If-Match": strong})
    assert r.status_code == 200, r.text

    etag = (await client.get(url, headers=headers)).headers["etag"]
    listed = f'W/"0000", {etag}'
    r = await client.patch(url, json={field: "B"}, headers={**headers, "If-Match": listed})
    assert r.status_code == 200, r.text

    r = await client.patch(url, json={field: "C"}, headers={**headers, "If-Match": "*"})
    assert r.status_code == 200, r.text
    r = await client.patch(url, json={field: "D"}, headers=headers)
    assert r.status_code == 200, r.text
    assert (await client.get(url, headers=headers)).json()[field] == "D"


@pytest.mark.parametrize("value", ["abc", "W/abc", '"a" "b"', '"unterminated', ","])
async def test_a_malformed_if_match_is_400(client, world, db, value):
    url, headers, field = await target("companies", world, db)
    r = await client.patch(url, json={field: "X"}, headers={**headers, "If-Match": value})
    assert "If-Match" in assert_problem(r, 400)["detail"]


async def test_another_tenants_object_is_404_not_412(client, world, db):
    url, _, field = await target("workflows", world, db)
    r = await client.patch(
        url, json={field: "X"}, headers={**world.auth(world.other_chro), "If-Match": 'W/"0"'}
    )
    assert_problem(r, 404)


async def test_a_workflow_etag_changes_with_its_usage_stats(client, world, db):
    """The ETag is the detail representation's, stats included: a run recorded since the read
    fails the precondition, as any change of the representation would."""
    url, headers, field = await target("workflows", world, db)
    etag = (await client.get(url, headers=headers)).headers["etag"]
    run = await client.post(f"{url}/history", json={"status": "started"}, headers=headers)
    assert run.status_code == 201, run.text
    r = await client.patch(url, json={field: "X"}, headers={**headers, "If-Match": etag})
    assert_problem(r, 412)


def test_the_openapi_document_shows_if_match_and_412_on_every_patch(app):
    for path, operations in app.openapi()["paths"].items():
        patch = operations.get("patch")
        if patch is None:
            continue
        names = {p["name"].lower() for p in patch.get("parameters", []) if p["in"] == "header"}
        assert "if-match" in names, path
        assert "412" in patch["responses"], path
