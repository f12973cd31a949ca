"""Documents through the HTTP API: the role and tenancy matrix of every route, listing,
downloads, the status machine, the lost-update guard (also under real concurrency), and how row
and bytes stay in step when something fails. Upload validation: test_document_uploads.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import Role
from common.exceptions import ConflictError
from common.principal import Principal
from common.storage import FileStorage
from models import Company, Document, User
from schemas.documents import DocumentUpdate
from services.documents import DocumentService, sweep_orphans
from settings.config import Settings
from settings.server import create_app
from tests.fixtures.documents import (
    PDF_BYTES,
    PROBLEM,
    STORED_NAME,
    URL,
    assert_problem,
    create_document,
    headers_for,
    stored_files,
    upload,
    uploaded,
)
from tests.fixtures.factories import World, bearer, create_company, create_user

# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def storage(settings: Settings) -> FileStorage:
    return FileStorage(settings.storage_dir)


@pytest.fixture
async def doc(client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """A PDF uploaded by world.member into world.tenant."""
    return await uploaded(client, world.auth(world.member))


# --- roles and tenancy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("member", 201),
        ("other_member", 201),
        ("chro", 201),
        ("admin", 201),
        ("outsider", 201),
        ("anonymous", 401),
    ],
)
async def test_upload_by_role(
    client: httpx.AsyncClient, world: World, settings: Settings, who: str, expected: int
) -> None:
    response = await upload(client, headers_for(world, who))
    assert response.status_code == expected, response.text
    if expected != 201:
        assert_problem(response, expected)
        assert stored_files(settings) == []
        return
    user = getattr(world, who)
    body = response.json()
    assert response.headers["location"] == f"{URL}/{body['id']}"
    assert body["tenant_id"] == user.company_id  # always the uploader's own company
    assert body["uploaded_by"] == user.id
    assert body["status"] == "uploaded"
    assert body["version"] == 1
    assert body["size_bytes"] == len(PDF_BYTES)
    assert body["sha256"] == hashlib.sha256(PDF_BYTES).hexdigest()
    assert "storage_key" not in body
    files = stored_files(settings)
    assert len(files) == 1
    assert STORED_NAME.fullmatch(files[0])
    assert files[0].startswith(f"{user.company_id}/")


READ_MATRIX = [
    ("member", 200),
    ("other_member", 200),
    ("chro", 200),
    ("admin", 200),
    ("outsider", 404),
    ("other_chro", 404),
    ("anonymous", 401),
]


@pytest.mark.parametrize(("who", "expected"), READ_MATRIX)
async def test_read_by_role(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], who: str, expected: int
) -> None:
    headers = headers_for(world, who)
    detail = await client.get(f"{URL}/{doc['id']}", headers=headers)
    content = await client.get(f"{URL}/{doc['id']}/content", headers=headers)
    listing = await client.get(URL, headers=headers)
    assert detail.status_code == expected, detail.text
    assert content.status_code == expected, content.text
    if expected == 200:
        assert detail.json() == doc
        assert content.content == PDF_BYTES
        assert doc["id"] in [item["id"] for item in listing.json()["items"]]
    elif expected == 404:
        body = assert_problem(detail, 404)
        assert doc["title"] not in detail.text
        assert body["detail"]
        assert_problem(content, 404)
        assert PDF_BYTES not in content.content
        assert listing.status_code == 200
        assert doc["id"] not in [item["id"] for item in listing.json()["items"]]
    else:
        assert_problem(detail, 401)
        assert_problem(content, 401)
        assert_problem(listing, 401)


WRITE_MATRIX = [
    ("member", True),  # the uploader
    ("chro", True),
    ("admin", True),
    ("other_member", 403),
    ("outsider", 404),
    ("other_chro", 404),
    ("anonymous", 401),
]


@pytest.mark.parametrize(("who", "allowed"), WRITE_MATRIX)
async def test_update_by_role(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], who: str, allowed: Any
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}",
        headers=headers_for(world, who),
        json={"title": "Renamed", "version": 1},
    )
    after = (await client.get(f"{URL}/{doc['id']}", headers=world.auth(world.member))).json()
    if allowed is True:
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "Renamed"
        assert after["title"] == "Renamed"
        assert after["version"] == 2
    else:
        assert_problem(response, allowed)
        assert after == doc


@pytest.mark.parametrize(("who", "allowed"), WRITE_MATRIX)
async def test_delete_by_role(
    client: httpx.AsyncClient,
    world: World,
    settings: Settings,
    doc: dict[str, Any],
    who: str,
    allowed: Any,
) -> None:
    files_before = stored_files(settings)
    response = await client.delete(f"{URL}/{doc['id']}", headers=headers_for(world, who))
    after = await client.get(f"{URL}/{doc['id']}", headers=world.auth(world.member))
    if allowed is True:
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_problem(after, 404)
        assert stored_files(settings) == []
    else:
        assert_problem(response, allowed)
        assert after.json() == doc
        assert stored_files(settings) == files_before


# --- listing -----------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_list_pages_newest_first_and_filters_status(
    client: httpx.AsyncClient, world: World
) -> None:
    member = world.auth(world.member)
    ids = [(await uploaded(client, member, title=f"Doc {n}"))["id"] for n in range(3)]
    moved = await client.patch(
        f"{URL}/{ids[0]}", headers=member, json={"status": "processing", "version": 1}
    )
    assert moved.status_code == 200, moved.text

    first = (await client.get(URL, headers=member, params={"page_size": 2})).json()
    second = (await client.get(URL, headers=member, params={"page_size": 2, "page": 2})).json()
    assert (first["total"], first["pages"], first["page"]) == (3, 2, 1)
    assert [d["id"] for d in first["items"] + second["items"]] == ids[::-1]

    processing = (await client.get(URL, headers=member, params={"status": "processing"})).json()
    assert [d["id"] for d in processing["items"]] == [ids[0]]
    uploaded_only = (await client.get(URL, headers=member, params={"status": "uploaded"})).json()
    assert sorted(d["id"] for d in uploaded_only["items"]) == sorted(ids[1:])

    bad = await client.get(URL, headers=member, params={"status": "deleted"})
    assert_problem(bad, 422)


async def test_list_company_scope(client: httpx.AsyncClient, world: World) -> None:
    ours = await uploaded(client, world.auth(world.member))
    theirs = await uploaded(client, world.auth(world.outsider))
    admin = world.auth(world.admin)

    def ids(response: httpx.Response) -> set[int]:
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert ids(await client.get(URL, headers=admin)) >= {ours["id"], theirs["id"]}
    scoped = await client.get(URL, headers=admin, params={"company_id": world.other_tenant.id})
    assert ids(scoped) == {theirs["id"]}
    # Anyone else's company_id is ignored: a member only ever sees its own company.
    probing = await client.get(
        URL, headers=world.auth(world.member), params={"company_id": world.other_tenant.id}
    )
    assert ids(probing) == {ours["id"]}


async def test_list_and_detail_statement_budget(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], count_statements: Any
) -> None:
    member = world.auth(world.member)
    await uploaded(client, member, title="Second")
    with count_statements() as listing:
        response = await client.get(URL, headers=member)
    assert response.status_code == 200
    assert listing.count <= 3, listing
    with count_statements() as detail:
        response = await client.get(f"{URL}/{doc['id']}", headers=member)
    assert response.status_code == 200
    assert detail.count <= 3, detail


# --- download ----------------------------------------------------------------------------------


@pytest.mark.embedded
async def test_download_headers_and_bytes_round_trip(
    client: httpx.AsyncClient, world: World
) -> None:
    member = world.auth(world.member)
    content = b"%PDF-1.7\n" + os.urandom(300 * 1024)  # several 64 KiB chunks
    body = await uploaded(client, member, content=content, filename="Résumé 2024 100%.pdf")
    response = await client.get(
        f"{URL}/{body['id']}/content", headers={**member, "Accept-Encoding": "identity"}
    )
    assert response.status_code == 200
    assert response.content == content
    assert hashlib.sha256(response.content).hexdigest() == body["sha256"]
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in response.headers["cache-control"]
    assert response.headers["content-disposition"] == (
        'attachment; filename="Resume 2024 100_.pdf"; '
        "filename*=UTF-8''R%C3%A9sum%C3%A9%202024%20100%25.pdf"
    )


@pytest.mark.embedded
async def test_large_text_downloads_intact_whatever_the_encoding(
    client: httpx.AsyncClient, world: World
) -> None:
    member = world.auth(world.member)
    content = b"step,minutes\n" + b"".join(b"review %d,%d\n" % (n, n % 60) for n in range(8000))
    body = await uploaded(
        client, member, content=content, filename="big.csv", content_type="text/csv"
    )
    for accept in ("gzip", "identity"):
        response = await client.get(
            f"{URL}/{body['id']}/content", headers={**member, "Accept-Encoding": accept}
        )
        assert response.status_code == 200
        assert response.content == content  # httpx undoes any gzip
        assert hashlib.sha256(response.content).hexdigest() == body["sha256"]


async def test_detail_carries_the_version_as_etag(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    response = await client.get(f"{URL}/{doc['id']}", headers=world.auth(world.member))
    assert response.headers["etag"] == '"1"'


@pytest.mark.embedded
async def test_missing_bytes_are_404_not_500(
    client: httpx.AsyncClient, world: World, settings: Settings, doc: dict[str, Any]
) -> None:
    (only,) = stored_files(settings)
    (settings.storage_dir / only).unlink()
    response = await client.get(f"{URL}/{doc['id']}/content", headers=world.auth(world.member))
    body = assert_problem(response, 404)
    assert "content" in body["detail"]
    # The metadata is still there; only the bytes are gone.
    meta = await client.get(f"{URL}/{doc['id']}", headers=world.auth(world.member))
    assert meta.status_code == 200


async def test_unknown_document_is_404(client: httpx.AsyncClient, world: World) -> None:
    member = world.auth(world.member)
    for path in (f"{URL}/2147483647", f"{URL}/2147483647/content"):
        assert_problem(await client.get(path, headers=member), 404)
    assert_problem(await client.get(f"{URL}/0", headers=member), 422)
    assert_problem(await client.get(f"{URL}/abc", headers=member), 422)


# --- status machine ----------------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, headers: dict[str, str], doc_id: int, *steps: str) -> int:
    """Apply status moves that must succeed; return the final version."""
    version = 1
    for step in steps:
        response = await client.patch(
            f"{URL}/{doc_id}", headers=headers, json={"status": step, "version": version}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == step
        assert response.json()["version"] == version + 1
        version += 1
    return version


@pytest.mark.parametrize(
    "steps",
    [
        ["processing"],
        ["processing", "processed"],
        ["processing", "failed"],
        ["processing", "failed", "processing", "processed"],
    ],
)
async def test_legal_transitions(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], steps: list[str]
) -> None:
    await walk(client, world.auth(world.member), doc["id"], *steps)


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [
        ([], "processed", "allowed: processing"),
        ([], "failed", "allowed: processing"),
        (["processing"], "uploaded", "allowed: failed, processed"),
        (["processing", "processed"], "processing", "allowed: none"),
        (["processing", "processed"], "uploaded", "allowed: none"),
        (["processing", "failed"], "processed", "allowed: processing"),
    ],
)
async def test_illegal_transitions_are_409_naming_the_allowed_ones(
    client: httpx.AsyncClient,
    world: World,
    doc: dict[str, Any],
    path: list[str],
    target: str,
    allowed: str,
) -> None:
    member = world.auth(world.member)
    version = await walk(client, member, doc["id"], *path)
    response = await client.patch(
        f"{URL}/{doc['id']}", headers=member, json={"status": target, "version": version}
    )
    body = assert_problem(response, 409)
    assert allowed in body["detail"]
    after = (await client.get(f"{URL}/{doc['id']}", headers=member)).json()
    assert after["version"] == version  # nothing changed
    assert after["status"] == (path[-1] if path else "uploaded")


async def test_same_status_is_not_a_move(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}",
        headers=world.auth(world.member),
        json={"status": "uploaded", "version": 1},
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1  # no change, no new version


@pytest.mark.embedded
async def test_title_and_status_together(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}",
        headers=world.auth(world.chro),
        json={"title": "  Reviewed  ", "status": "processing", "version": 1},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["status"], body["version"]) == ("Reviewed", "processing", 2)
    assert response.headers["etag"] == '"2"'


# --- lost-update guard -------------------------------------------------------------------------


async def test_missing_version_is_428(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}", headers=world.auth(world.member), json={"title": "No version"}
    )
    body = assert_problem(response, 428)
    assert body["type"] == "urn:etter:problem:precondition-required"
    assert "If-Match" in body["detail"]


@pytest.mark.embedded
async def test_stale_version_is_409_and_nothing_is_lost(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    member, chro = world.auth(world.member), world.auth(world.chro)
    first = await client.patch(
        f"{URL}/{doc['id']}", headers=chro, json={"title": "Chro's title", "version": 1}
    )
    assert first.status_code == 200
    stale = await client.patch(
        f"{URL}/{doc['id']}", headers=member, json={"title": "Member's title", "version": 1}
    )
    body = assert_problem(stale, 409)
    assert "version 2" in body["detail"]
    after = (await client.get(f"{URL}/{doc['id']}", headers=member)).json()
    assert (after["title"], after["version"]) == ("Chro's title", 2)


async def test_if_match_guards_like_the_body_version(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    member = world.auth(world.member)
    path = f"{URL}/{doc['id']}"
    ok = await client.patch(path, headers={**member, "If-Match": '"1"'}, json={"title": "One"})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"2"'
    stale = await client.patch(path, headers={**member, "If-Match": '"1"'}, json={"title": "Two"})
    assert_problem(stale, 412)  # a failed precondition (RFC 9110); a stale body version is 409
    both = await client.patch(
        path, headers={**member, "If-Match": ' "2" '}, json={"title": "Three", "version": 2}
    )
    assert both.status_code == 200, both.text
    assert (await client.get(path, headers=member)).json()["title"] == "Three"


@pytest.mark.parametrize("if_match", ['W/"1"', "1", "*", '"abc"', '"1", "2"', '""'])
async def test_malformed_if_match_is_400(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], if_match: str
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}",
        headers={**world.auth(world.member), "If-Match": if_match},
        json={"title": "Nope"},
    )
    assert_problem(response, 400)


async def test_if_match_and_body_version_must_agree(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}",
        headers={**world.auth(world.member), "If-Match": '"1"'},
        json={"title": "Mixed", "version": 2},
    )
    assert "If-Match" in assert_problem(response, 400)["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"version": 1},  # a version but nothing to change
        {"title": None, "version": 1},
        {"status": None, "version": 1},
        {"title": "ok", "version": None},
        {"title": "   ", "version": 1},
        {"title": "nul\x00", "version": 1},
        {"status": "archived", "version": 1},
        {"title": "ok", "version": 0},
        {"title": "ok", "version": 1, "tenant_id": 99},
        {"title": "ok", "version": 1, "storage_key": "1/" + "0" * 32},
    ],
)
async def test_invalid_patch_bodies_are_422(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any], payload: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{URL}/{doc['id']}", headers=world.auth(world.member), json=payload
    )
    assert_problem(response, 422)


# --- row and bytes in step ---------------------------------------------------------------------


def principal_of(user: User) -> Principal:
    return Principal(
        user_id=user.id, company_id=user.company_id, role=Role(user.role), email=user.email
    )


async def test_removal_failing_after_commit_leaves_an_orphan_the_sweep_removes(
    client: httpx.AsyncClient,
    world: World,
    settings: Settings,
    storage: FileStorage,
    db: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = world.auth(world.member)
    kept = await uploaded(client, member, title="Kept")
    doomed = await uploaded(client, member, title="Doomed")
    kept_file = await db.execute(select(Document.storage_key).where(Document.id == kept["id"]))
    kept_key = kept_file.scalar_one()
    doomed_key = (
        await db.execute(select(Document.storage_key).where(Document.id == doomed["id"]))
    ).scalar_one()

    async def disk_error(self: FileStorage, key: str, *, partial: bool = False) -> bool:
        raise OSError("disk went away")

    with monkeypatch.context() as patch:
        patch.setattr(FileStorage, "remove", disk_error)
        response = await client.delete(f"{URL}/{doomed['id']}", headers=member)
    # The row is gone (committed), the bytes stayed behind: the failure between the two steps.
    assert response.status_code == 204
    assert_problem(await client.get(f"{URL}/{doomed['id']}", headers=member), 404)
    assert sorted(stored_files(settings)) == sorted([kept_key, doomed_key])

    # A young orphan is left alone (its upload might still be committing) ...
    young = await sweep_orphans(db, storage)
    assert young.removed == []
    assert young.scanned == 2
    # ... an old one goes; the file that has a row stays.
    later = datetime.now(UTC) + timedelta(hours=2)
    report = await sweep_orphans(db, storage, now=later)
    assert report.removed == [doomed_key]
    assert stored_files(settings) == [kept_key]


@pytest.mark.embedded
async def test_sweep_removes_stale_staged_writes_and_ignores_foreign_files(
    db: AsyncSession, world: World, settings: Settings, storage: FileStorage
) -> None:
    kept = await create_document(db, storage, world.tenant, world.member)
    await db.commit()
    part = storage.path(storage.new_key(world.tenant.id))
    part = part.with_name(part.name + ".part")
    part.write_bytes(b"half an upload")
    foreign = settings.storage_dir / "README.txt"
    foreign.write_text("not Etter's")
    (settings.storage_dir / str(world.tenant.id) / "notes").write_text("not a key")

    report = await sweep_orphans(db, storage, now=datetime.now(UTC) + timedelta(hours=2))
    assert report.removed == [f"{world.tenant.id}/{part.name}"]
    assert not part.exists()
    assert foreign.exists()
    assert storage.path(kept.storage_key).exists()


@pytest.mark.embedded
async def test_a_delete_whose_commit_fails_keeps_row_and_bytes(
    client: httpx.AsyncClient,
    world: World,
    settings: Settings,
    doc: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: the commit of the DELETE fails, so the transaction rolls back, and the
    removal queued for after the commit never runs. The document is whole afterwards."""
    member = world.auth(world.member)
    files_before = stored_files(settings)

    async def commit_fails(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, Exception("the server went away"))

    with monkeypatch.context() as patch:
        patch.setattr(AsyncSession, "commit", commit_fails)
        response = await client.delete(f"{URL}/{doc['id']}", headers=member)
    assert response.status_code >= 500
    assert stored_files(settings) == files_before
    assert (await client.get(f"{URL}/{doc['id']}", headers=member)).json() == doc
    content = await client.get(f"{URL}/{doc['id']}/content", headers=member)
    assert content.content == PDF_BYTES


async def test_failed_commit_after_delete_keeps_row_and_bytes(
    db: AsyncSession, world: World, settings: Settings, storage: FileStorage
) -> None:
    document = await create_document(db, storage, world.tenant, world.member)
    await db.commit()
    document_id, key = document.id, document.storage_key
    pending: list[Any] = []
    service = DocumentService(db, principal_of(world.member), settings)

    await service.delete(document_id, after_commit=pending.append)
    assert storage.path(key).exists()  # nothing touched the bytes before the commit
    await db.rollback()  # the commit fails: the transaction rolls back

    assert (await db.execute(select(Document.id).where(Document.id == document_id))).one()
    assert storage.path(key).exists()
    assert len(pending) == 1  # queued for after a commit that never came; never run

    # Had the commit succeeded, the queued removal would delete exactly these bytes.
    await pending[0]()
    assert not storage.path(key).exists()


@pytest.mark.embedded
async def test_failed_flush_on_upload_removes_the_bytes(
    db: AsyncSession, world: World, settings: Settings
) -> None:
    # A principal of a company that does not exist: the row's foreign key fails at flush.
    ghost = Principal(
        user_id=world.member.id, company_id=2_000_000_000, role=Role.MEMBER, email="g@x"
    )
    service = DocumentService(db, ghost, settings)

    class Upload:
        filename = "report.pdf"
        size = None
        content_type = "application/pdf"

        def __init__(self) -> None:
            self.pending = [PDF_BYTES]

        async def read(self, size: int = -1) -> bytes:
            return self.pending.pop() if self.pending else b""

    with pytest.raises(ConflictError):
        await service.upload("Orphan?", Upload())
    await db.rollback()
    assert stored_files(settings) == []


# --- real concurrency --------------------------------------------------------------------------


@dataclass
class Committed:
    """Data committed for real (not in a rolled-back transaction), and an app on it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    tenant: Company
    uploader: User
    chro: User

    def auth(self, user: User) -> dict[str, str]:
        return bearer(self.settings, user)


@pytest.fixture
async def committed(settings: Settings) -> AsyncIterator[Committed]:
    """An app on the real engine (no rolled-back outer transaction), so that two requests run
    in two sessions on two connections and really commit. The rows it creates are deleted
    afterwards; names are unique so parallel runs on one database cannot collide."""
    application = create_app(settings)
    async with LifespanManager(application):
        sessions = application.state.database.sessionmaker
        async with sessions() as session:
            tenant = await create_company(session, name=f"Race {uuid.uuid4().hex}")
            uploader = await create_user(session, tenant, Role.MEMBER)
            chro = await create_user(session, tenant, Role.CHRO)
            await session.commit()
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield Committed(application, c, settings, tenant, uploader, chro)
        finally:
            async with sessions() as session:
                await session.execute(delete(Document).where(Document.tenant_id == tenant.id))
                await session.execute(delete(User).where(User.company_id == tenant.id))
                await session.execute(delete(Company).where(Company.id == tenant.id))
                await session.commit()


@pytest.mark.parametrize("both_read_first", [False, True], ids=["as-scheduled", "both-read-first"])
@pytest.mark.embedded
async def test_concurrent_patches_with_one_version_one_wins(
    committed: Committed, monkeypatch: pytest.MonkeyPatch, both_read_first: bool
) -> None:
    """Two PATCHes with version 1 at once, in two sessions that really commit: one 200, one 409.

    As scheduled, the loser usually reads after the winner committed (the comparison refuses
    it). With `both_read_first`, each request waits after loading the document until the other
    has loaded it too, so both pass the comparison and the version-guarded UPDATE must decide.
    """
    client = committed.client
    doc = await uploaded(client, committed.auth(committed.uploader))
    path = f"{URL}/{doc['id']}"

    with monkeypatch.context() as patch:
        if both_read_first:
            barrier = asyncio.Barrier(2)
            load = DocumentService.get

            async def load_then_wait(self: DocumentService, object_id: int) -> Document:
                found = await load(self, object_id)
                await asyncio.wait_for(barrier.wait(), timeout=30)  # a safety net, not a check
                return found

            patch.setattr(DocumentService, "get", load_then_wait)
        responses = await asyncio.gather(
            client.patch(
                path,
                headers=committed.auth(committed.uploader),
                json={"title": "Uploader's", "version": 1},
            ),
            client.patch(
                path,
                headers=committed.auth(committed.chro),
                json={"title": "Chro's", "version": 1},
            ),
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409], [r.text for r in responses]
    (winner,) = (r for r in responses if r.status_code == 200)
    (loser,) = (r for r in responses if r.status_code == 409)
    assert loser.headers["content-type"] == PROBLEM
    if both_read_first:
        assert "at the same time" in loser.json()["detail"]
    final = (await client.get(path, headers=committed.auth(committed.chro))).json()
    assert final["version"] == 2
    assert final["title"] == winner.json()["title"]


@pytest.mark.embedded
async def test_a_change_landing_between_check_and_update_is_409(committed: Committed) -> None:
    """The race the comparison cannot see: both sessions read version 1, one commits, and the
    other's UPDATE (WHERE version = 1) then matches nothing: StaleDataError, answered 409."""
    doc = await uploaded(committed.client, committed.auth(committed.uploader))
    sessions = committed.app.state.database.sessionmaker
    async with sessions() as first, sessions() as second:
        one = DocumentService(first, principal_of(committed.uploader), committed.settings)
        two = DocumentService(second, principal_of(committed.chro), committed.settings)
        # Both sessions read version 1 (and hold on to it: the identity map is weak).
        read_by_one = await one.get(doc["id"])
        read_by_two = await two.get(doc["id"])
        assert read_by_one.version == read_by_two.version == 1
        await one.update(doc["id"], DocumentUpdate(title="First", version=1), 1)
        await first.commit()
        with pytest.raises(ConflictError, match="at the same time"):
            await two.update(doc["id"], DocumentUpdate(title="Second", version=1), 1)
        await second.rollback()
    final = (
        await committed.client.get(f"{URL}/{doc['id']}", headers=committed.auth(committed.chro))
    ).json()
    assert (final["title"], final["version"]) == ("First", 2)


# --- caches ------------------------------------------------------------------------------------


async def test_document_writes_refresh_the_dashboard(
    client: httpx.AsyncClient, world: World, doc: dict[str, Any]
) -> None:
    """The CHRO dashboard (cached) counts documents by status: every write must drop it."""
    chro = world.auth(world.chro)

    async def documents_on_dashboard() -> dict[str, Any]:
        response = await client.get("/api/v1/chro/dashboard", headers=chro)
        assert response.status_code == 200, response.text
        return response.json()["documents"]

    assert (await documents_on_dashboard())["by_status"]["uploaded"] == 1
    second = await uploaded(client, world.auth(world.member), title="Second")
    assert (await documents_on_dashboard())["by_status"]["uploaded"] == 2
    moved = await client.patch(
        f"{URL}/{doc['id']}", headers=chro, json={"status": "processing", "version": 1}
    )
    assert moved.status_code == 200
    board = await documents_on_dashboard()
    assert (board["by_status"]["uploaded"], board["by_status"]["processing"]) == (1, 1)
    assert (await client.delete(f"{URL}/{second['id']}", headers=chro)).status_code == 204
    assert await documents_on_dashboard() == {
        "total": 1,
        "by_status": {"uploaded": 0, "processing": 1, "processed": 0, "failed": 0},
    }


# --- the contract ------------------------------------------------------------------------------


async def test_openapi_describes_the_upload(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/api/v1/documents"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = form["$ref"].rsplit("/", 1)[-1]
    assert set(spec["components"]["schemas"][ref]["required"]) == {"file", "title"}
    assert {"201", "413", "415"} <= set(post["responses"])
    assert {"409", "412", "428"} <= set(
        spec["paths"]["/api/v1/documents/{document_id}"]["patch"]["responses"]
    )
