"""Every route of the app, walked by every kind of caller: anonymous, a member, the tenant's
CHRO, another tenant's CHRO and the platform admin, each against tenant A's objects.

`MATRIX` holds the expected status per role for every operation the app serves; the first test
compares it with the app's own routes, so a new route without an entry fails the suite (and so
does an entry for a route that is gone). The rules it encodes (DESIGN.md, SECURITY.md): no
token, 401; another tenant's object does not exist (404, never 403); a forbidden action on an
object of one's own tenant is 403; the catalogue of companies is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from common.storage import FileStorage
from tests.fixtures.documents import PDF_BYTES, create_document
from tests.fixtures.factories import PASSWORD, create_user
from tests.fixtures.problems import use_cheap_hashing
from tests.fixtures.simulations import create_stored_simulation
from tests.fixtures.workflows import create_workflow, step_payload

pytestmark = pytest.mark.embedded

ROLES = ("anonymous", "member", "chro", "other_chro", "admin")
API = "/api/v1"


@dataclass(frozen=True)
class Call:
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, Any] | None = None
    query: str = ""


# (method, route template) -> (statuses for ROLES, the request). Path parameters name objects
# of tenant A: {member} and {other_member} (users), {tenant}, {workflow}, {document},
# {simulation}.
MATRIX: dict[tuple[str, str], tuple[tuple[int, ...], Call]] = {
    # --- auth
    ("POST", "/auth/token"): (
        (200, 200, 200, 200, 200),
        Call(data={"username": "{member_email}", "password": PASSWORD}),
    ),
    ("GET", "/auth/me"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/auth/password"): (
        (401, 200, 200, 200, 200),
        Call(json={"current_password": PASSWORD, "new_password": "another-passphrase"}),
    ),
    ("POST", "/auth/logout-all"): ((401, 204, 204, 204, 204), Call()),
    # --- companies: a shared catalogue, written by the admin
    ("GET", "/companies"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/companies"): (
        (401, 403, 403, 403, 201),
        Call(json={"name": "Matrix Co", "country": "NL", "email_domains": ["matrix.example"]}),
    ),
    ("GET", "/companies/{company_id}"): ((401, 200, 200, 200, 200), Call()),
    ("PATCH", "/companies/{company_id}"): (
        (401, 403, 403, 403, 200),
        Call(json={"employee_count": 7}),
    ),
    # --- users
    ("GET", "/users"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/users"): (
        # The other tenant's CHRO may not use tenant A's domain: 422.
        (401, 403, 201, 422, 201),
        Call(
            json={
                "email": "matrix.{role}@tenant-a.example",
                "full_name": "Matrix Person",
                "password": "a-long-enough-password",
            }
        ),
    ),
    ("GET", "/users/autocomplete"): ((401, 200, 200, 200, 200), Call(query="?q=us")),
    ("GET", "/users/{user_id}"): ((401, 200, 200, 404, 200), Call()),
    ("PATCH", "/users/{user_id}"): ((401, 403, 200, 404, 200), Call(json={"job_title": "Lead"})),
    ("DELETE", "/users/{user_id}"): ((401, 403, 204, 404, 204), Call()),
    # Another member's history: the member may read only its own (403 in its own tenant).
    ("GET", "/users/{user_id}/workflow-history"): ((401, 403, 200, 404, 200), Call()),
    # --- workflows
    ("GET", "/workflows"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/workflows"): (
        (401, 403, 201, 201, 201),
        Call(json={"name": "Matrix workflow", "steps": [step_payload()]}),
    ),
    ("GET", "/workflows/{workflow_id}"): ((401, 200, 200, 404, 200), Call()),
    ("PATCH", "/workflows/{workflow_id}"): (
        (401, 403, 200, 404, 200),
        Call(json={"description": "changed"}),
    ),
    ("DELETE", "/workflows/{workflow_id}"): ((401, 403, 204, 404, 204), Call()),
    ("POST", "/workflows/{workflow_id}/history"): (
        # Runs are recorded by the workflow's own company's users: not by the admin.
        (401, 201, 201, 404, 403),
        Call(json={"status": "started"}),
    ),
    # --- documents
    ("GET", "/documents"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/documents"): (
        (401, 201, 201, 201, 201),
        Call(data={"title": "Matrix"}, files={"file": ("m.pdf", PDF_BYTES, "application/pdf")}),
    ),
    ("GET", "/documents/{document_id}"): ((401, 200, 200, 404, 200), Call()),
    ("GET", "/documents/{document_id}/content"): ((401, 200, 200, 404, 200), Call()),
    ("PATCH", "/documents/{document_id}"): (
        # Uploaded by the chro: a member may not edit another's document.
        (401, 403, 200, 404, 200),
        Call(json={"title": "Renamed", "version": 1}),
    ),
    ("DELETE", "/documents/{document_id}"): ((401, 403, 204, 404, 204), Call()),
    # --- simulations and the dashboard
    ("GET", "/simulations"): ((401, 200, 200, 200, 200), Call()),
    ("POST", "/simulations"): (
        (401, 403, 201, 201, 201),
        Call(
            json={
                "name": "Matrix simulation",
                "parameters": {
                    "adoption_rate": 0.5,
                    "horizon_months": 6,
                    "ramp_months": 2,
                    "hourly_cost": 40,
                },
            }
        ),
    ),
    ("GET", "/simulations/{simulation_id}"): ((401, 200, 200, 404, 200), Call()),
    # The admin names the company; another tenant's CHRO naming tenant A finds no such company.
    ("GET", "/chro/dashboard"): (
        (401, 403, 200, 404, 200),
        Call(query="?company_id={company_id}"),
    ),
    # --- outside /api/v1: probes, metrics and the docs, open to all (METRICS_TOKEN unset)
    ("GET", "/health/live"): ((200, 200, 200, 200, 200), Call()),
    ("GET", "/health/ready"): ((200, 200, 200, 200, 200), Call()),
    ("GET", "/metrics"): ((200, 200, 200, 200, 200), Call()),
    ("GET", "/openapi.json"): ((200, 200, 200, 200, 200), Call()),
    ("GET", "/docs"): ((200, 200, 200, 200, 200), Call()),
    ("GET", "/docs/oauth2-redirect"): ((200, 200, 200, 200, 200), Call()),
}


def app_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of everything the app routes, whatever includes it, HEAD aside."""
    found: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            found.add((method.upper(), path.removeprefix(API)))
    for path in (app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url):
        if path:
            found.add(("GET", path))
    return found


async def test_every_route_has_an_entry(app):
    missing = app_operations(app) - set(MATRIX)
    stale = set(MATRIX) - app_operations(app)
    assert not missing, f"routes without a role matrix entry: {sorted(missing)}"
    assert not stale, f"entries for routes that are gone: {sorted(stale)}"


@pytest.mark.parametrize(("method", "route"), list(MATRIX), ids=[f"{m} {r}" for m, r in MATRIX])
async def test_role_matrix(client, world, db, settings, monkeypatch, method, route):
    """Each role in turn, each against objects of its own (made afresh), so that one role's
    write (a delete, a revocation) cannot change what the next one sees."""
    use_cheap_hashing(monkeypatch)
    statuses, call = MATRIX[(method, route)]
    storage = FileStorage(settings.storage_dir)
    seen = {}
    for role in ROLES:
        db.expunge_all()  # SQLite reuses a deleted row's id: no stale object may shadow it
        workflow = await create_workflow(db, world.tenant, world.chro)
        document = await create_document(db, storage, world.tenant, world.chro, version=1)
        simulation = await create_stored_simulation(db, world.tenant)
        target = await create_user(db, world.tenant)
        await db.commit()
        values = {
            "user_id": target.id,
            "company_id": world.tenant.id,
            "workflow_id": workflow.id,
            "document_id": document.id,
            "simulation_id": simulation.id,
            "member_email": world.member.email,
            "role": role,
        }
        path = route.format(**values)
        if not path.startswith(("/health", "/metrics", "/docs", "/openapi")):
            path = API + path
        response = await client.request(
            method,
            path + call.query.format(**values),
            json=_fill(call.json, values),
            data=_fill(call.data, values),
            files=call.files,
            headers=world.as_role(role),
        )
        seen[role] = response.status_code
    assert seen == dict(zip(ROLES, statuses, strict=True))


def _fill(body: Any, values: dict[str, Any]) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, values) for k, v in body.items()}
    if isinstance(body, str):
        return body.format(**values)
    return body
