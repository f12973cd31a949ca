"""token revocation and company email domains

- `users.credentials_version`: every access token carries the version it was issued under
  (claim `cv`); a password change, a deactivation and "log out everywhere" bump it, so every
  earlier token is refused. Existing users start at 0, which is also what a token issued before
  this migration (without the claim) is read as: those tokens keep working until the user's
  first revocation or their expiry.
- `companies.email_domains`: the lower-case domains a CHRO may create addresses in (JSON list;
  JSONB on PostgreSQL). Existing companies start with none: their CHROs create no users until
  the platform admin sets the domains.

Both columns have a server default, so adding them rewrites nothing on PostgreSQL 11+ (a
constant default is stored in the catalogue) and takes only a brief ACCESS EXCLUSIVE lock.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("credentials_version", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("companies") as batch:
        batch.add_column(
            sa.Column("email_domains", JSON_TYPE, server_default=sa.text("'[]'"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("email_domains")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("credentials_version")
