"""add performance indexes

The roadmap's six indexes, and the composite and expression indexes the real hot queries need,
each named after its columns and justified below by the statement it serves (the query-plan
test, tests/integration/database/test_query_plans.py, checks that PostgreSQL picks them).

The roadmap's six, and where each one is:
- users.email: already indexed by the unique constraint uq_users_email (the login lookup); a
  second index would only cost writes. Autocomplete's prefix search has its own, below.
- users.company_id: the leading column of ix_users_company_id_full_name_id.
- user_workflow_history.user_id: the leading column of ..._user_id_company_id_started_at_id.
- user_workflow_history.workflow_id: the leading column of ..._workflow_id_started_at.
- documents.tenant_id: the leading column of ix_documents_tenant_id_created_at_id.
- documents.status: the leading column of ix_documents_status_created_at_id.
A composite index serves every query on its leading column, so none of these is repeated as a
single-column index: nothing is indexed twice. No index is partial: the only candidate,
`users WHERE is_active` for autocomplete, would not serve GET /users?q= (which lists inactive
users too) and would skip only the few deactivated accounts.

On PostgreSQL every index is built CONCURRENTLY, outside any transaction (Alembic's
autocommit block), so that applying this to a live database never blocks writes; the
downgrade drops them the same way. On SQLite they are plain CREATE INDEX statements.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:10:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    columns: list[Any]
    options: dict[str, Any] = field(default_factory=dict)


def _desc(name: str) -> Any:
    return sa.column(name).desc()


INDEXES = [
    # GET /users (tenant scoped): WHERE company_id = :c [AND department/role]
    # ORDER BY full_name, id LIMIT/OFFSET, and its COUNT(*) (an index-only scan); the CHRO
    # dashboard's headcount by department (WHERE company_id = :c AND is_active).
    IndexSpec("ix_users_company_id_full_name_id", "users", ["company_id", "full_name", "id"]),
    # GET /users/autocomplete and GET /users?q=: WHERE company_id = :c AND
    # (lower(full_name) LIKE 'q%' OR email LIKE 'q%'). A prefix LIKE can use a b-tree only
    # with the pattern operator class (or the "C" collation), hence text_pattern_ops; the
    # two indexes are combined by a BitmapOr. The expression is the service's, exactly.
    IndexSpec(
        "ix_users_company_id_lower_full_name",
        "users",
        ["company_id", sa.func.lower(sa.column("full_name")).label("lower_full_name")],
        {"postgresql_ops": {"lower_full_name": "text_pattern_ops"}},
    ),
    IndexSpec(
        "ix_users_company_id_email",
        "users",
        ["company_id", "email"],
        {"postgresql_ops": {"email": "text_pattern_ops"}},
    ),
    # GET /users/{id}/workflow-history: WHERE company_id = :c AND user_id = :u [AND the keyset
    # position] ORDER BY started_at DESC, id DESC LIMIT n: the index holds both equalities and
    # the order, so a page reads n + 1 entries however long the user's history. company_id
    # (the tenant filter; a function of user_id) is in the key for PostgreSQL's *generic*
    # plan: asyncpg prepares every statement and after five runs PostgreSQL may plan for an
    # average user; without it that plan was a bitmap scan and a sort of all of a user's runs
    # (870 ms instead of 0.3 ms for an integration account with 210,000 runs, medium data
    # set). Leading with user_id, it also serves the ON DELETE CASCADE from users.
    IndexSpec(
        "ix_user_workflow_history_user_id_company_id_started_at_id",
        "user_workflow_history",
        ["user_id", "company_id", _desc("started_at"), _desc("id")],
    ),
    # GET /workflows/{id} usage stats: WHERE workflow_id = :w AND started_at >= now() - 30 days
    # (runs, distinct users, mean duration); the simulation's per-workflow completed runs in
    # the last 90 days. Also the ON DELETE CASCADE from workflows.
    IndexSpec(
        "ix_user_workflow_history_workflow_id_started_at",
        "user_workflow_history",
        ["workflow_id", "started_at"],
    ),
    # GET /chro/dashboard: the 30-day activity (count(id), count(DISTINCT user_id), runs by
    # status) and the top workflows by runs (grouped by workflow_id), WHERE company_id = :c AND
    # started_at >= :since; POST /simulations: the completed runs per workflow over 90 days.
    # INCLUDE carries every column these aggregates read, so they are index-only scans: no
    # heap visit for the tens of thousands of runs a big tenant has in a month (a tenth of the
    # buffers, a third of the time, on the medium data set). Also the cascade from companies.
    IndexSpec(
        "ix_user_workflow_history_company_id_started_at",
        "user_workflow_history",
        ["company_id", "started_at"],
        {"postgresql_include": ["workflow_id", "user_id", "status", "id"]},
    ),
    # GET /documents (tenant scoped): WHERE tenant_id = :t ORDER BY created_at DESC, id DESC
    # LIMIT/OFFSET, and its COUNT(*).
    IndexSpec(
        "ix_documents_tenant_id_created_at_id",
        "documents",
        ["tenant_id", _desc("created_at"), _desc("id")],
    ),
    # GET /documents?status=: WHERE tenant_id = :t AND status = :s ORDER BY created_at DESC,
    # id DESC, and its COUNT(*); the dashboard's documents by status (GROUP BY status over
    # the (tenant_id, status) prefix, index-only).
    IndexSpec(
        "ix_documents_tenant_id_status_created_at_id",
        "documents",
        ["tenant_id", "status", _desc("created_at"), _desc("id")],
    ),
    # GET /documents?status= for the admin across tenants (no company_id): WHERE status = :s
    # ORDER BY created_at DESC, id DESC, e.g. every failed document of the platform.
    IndexSpec(
        "ix_documents_status_created_at_id",
        "documents",
        ["status", _desc("created_at"), _desc("id")],
    ),
    # GET /simulations (tenant scoped) and the dashboard's latest simulations:
    # WHERE company_id = :c ORDER BY created_at DESC, id DESC LIMIT n.
    IndexSpec(
        "ix_simulations_company_id_created_at_id",
        "simulations",
        ["company_id", _desc("created_at"), _desc("id")],
    ),
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for spec in INDEXES:
            op.create_index(spec.name, spec.table, spec.columns, **spec.options)
        return
    # No `SET LOCAL lock_timeout` here, unlike the other migrations: CONCURRENTLY takes only a
    # SHARE UPDATE EXCLUSIVE lock, which conflicts with no read or write, so waiting for it
    # queues no application query; a timeout would only abort a build half-way.
    with op.get_context().autocommit_block(), _no_timeouts():
        for spec in INDEXES:
            _drop_if_invalid(spec.name)
            op.create_index(
                spec.name,
                spec.table,
                spec.columns,
                postgresql_concurrently=True,
                if_not_exists=True,  # a rerun after an interrupted upgrade skips the built ones
                **spec.options,
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for spec in reversed(INDEXES):
            op.drop_index(spec.name, table_name=spec.table)
        return
    with op.get_context().autocommit_block(), _no_timeouts():
        for spec in reversed(INDEXES):
            op.drop_index(
                spec.name, table_name=spec.table, postgresql_concurrently=True, if_exists=True
            )


@contextmanager
def _no_timeouts() -> Iterator[None]:
    """No statement or lock timeout for this session while the indexes build: on a big table
    a build takes minutes, and one cancelled half-way leaves an INVALID index behind."""
    op.execute("SET statement_timeout = 0")
    op.execute("SET lock_timeout = 0")
    try:
        yield
    finally:
        op.execute("RESET statement_timeout")
        op.execute("RESET lock_timeout")


def _drop_if_invalid(name: str) -> None:
    """Drop what an interrupted CONCURRENTLY build left behind: an INVALID index of this name,
    which IF NOT EXISTS would otherwise take for a finished one."""
    invalid = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :name AND NOT i.indisvalid"
        ),
        {"name": name},
    )
    if invalid:
        op.execute(sa.text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
