"""Lookups into the bulk data set shared by the query-plan test and the database benchmark."""

from __future__ import annotations

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from seeding.bulk import INTEGRATION_ACCOUNT, MARKER_COMPANY

# The biggest tenant's chro, a member, the integration account, an active workflow, and its
# newest document and simulation: the objects the hot paths are measured on.
_BIGGEST_TENANT_IDS = text(
    """
    WITH c AS (SELECT id FROM companies WHERE name = :marker)
    SELECT
      (SELECT id FROM users WHERE company_id = (SELECT id FROM c) AND role = 'chro'),
      (SELECT max(id) FROM users WHERE company_id = (SELECT id FROM c)
        AND role = 'member' AND full_name <> :bot),
      (SELECT id FROM users WHERE full_name = :bot),
      (SELECT min(id) FROM workflows WHERE company_id = (SELECT id FROM c) AND status = 'active'),
      (SELECT max(id) FROM documents WHERE tenant_id = (SELECT id FROM c)),
      (SELECT max(id) FROM simulations WHERE company_id = (SELECT id FROM c))
    """
)


async def biggest_tenant_ids(conn: AsyncConnection) -> Row[tuple[int, int, int, int, int, int]]:
    result = await conn.execute(
        _BIGGEST_TENANT_IDS, {"marker": MARKER_COMPANY, "bot": INTEGRATION_ACCOUNT}
    )
    return result.one()  # type: ignore[return-value]
