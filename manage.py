"""Etter's command-line tool: migrate, seed, create users.

python manage.py --help
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from common.enums import Role
from common.exceptions import EtterError
from common.principal import Principal
from common.storage import FileStorage
from common.validators import CountryCode, Name
from schemas.users import UserCreate
from seeding.bulk import (
    BULK_PASSWORD,
    BULK_SIZES,
    BulkSeedError,
    bulk_seed,
    vacuum_analyze,
)
from seeding.demo import DEMO_LOGINS, Scale, is_empty, seed
from services import cache_invalidation
from services.cache_service import RequestCache, create_cache
from services.companies import get_or_create_company
from services.documents import sweep_orphans
from services.users import UserService
from settings.config import Settings
from settings.database import Database
from settings.redis import create_redis

app = typer.Typer(
    help="Etter backend administration.", no_args_is_help=True, pretty_exceptions_enable=False
)
T = TypeVar("T")
ROOT = Path(__file__).resolve().parent


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _validation_message(error: ValidationError) -> str:
    # Field and reason only: pydantic's own text would echo the input, passwords included.
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
    )


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        typer.echo(f"Invalid settings:\n{error}", err=True)
        raise typer.Exit(2) from error


def _in_transaction(work: Callable[[AsyncSession, RequestCache], Awaitable[T]]) -> T:
    """Run `work` in one transaction; after the commit, invalidate what it queued in the API's
    shared cache, as a request does. Without Redis each API process caches in its own memory,
    out of the tool's reach: those entries expire with their TTL."""

    async def run() -> T:
        settings = _settings()
        database = Database.from_settings(settings)
        redis = create_redis(settings) if settings.cache_enabled else None
        cache = RequestCache(create_cache(settings, redis) if redis is not None else None)
        try:
            async with database.sessionmaker() as session, session.begin():
                result = await work(session, cache)
            await cache.flush()  # fails open: an unreachable Redis is logged, not raised
            return result
        finally:
            await database.dispose()
            if redis is not None:
                await redis.aclose()

    try:
        return asyncio.run(run())
    except EtterError as error:
        raise _fail(f"Error: {error.detail}") from error
    except (SQLAlchemyError, OSError) as error:
        # No traceback for an operator: the driver's one-line reason says enough.
        reason = getattr(error, "orig", None) or error
        raise _fail(
            f"Database error: {reason}. Is DATABASE_URL right, and has `migrate` run?"
        ) from error


@app.command()
def migrate() -> None:
    """Apply every database migration (alembic upgrade head)."""
    # Imported here: alembic is a third of the tool's start-up, and only this command needs it.
    from alembic.config import Config

    from alembic import command

    config = Config(str(ROOT / "alembic.ini"))  # wherever the tool is started from
    config.attributes["database_url"] = _settings().database_url
    try:
        command.upgrade(config, "head")
    except (SQLAlchemyError, OSError) as error:
        reason = getattr(error, "orig", None) or error
        raise _fail(f"Migration failed: {reason}") from error


class SeedScale(StrEnum):
    """demo and small: the ORM seed (seeding/demo.py), on SQLite or PostgreSQL.
    medium and large: the bulk COPY loader (seeding/bulk.py), PostgreSQL only."""

    DEMO = "demo"
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


@app.command("seed")
def seed_command(
    scale: Annotated[
        SeedScale,
        typer.Option(help="demo, small: any database; medium, large: PostgreSQL (bulk COPY)"),
    ] = SeedScale.DEMO,
    if_empty: Annotated[bool, typer.Option(help="only when the database has no data")] = False,
) -> None:
    """Load deterministic sample data. Running it again adds nothing."""
    settings = _settings()
    if settings.is_production:
        typer.echo("Refusing to seed sample data with ENVIRONMENT=production.", err=True)
        raise typer.Exit(1)
    if scale.value in BULK_SIZES:
        _bulk_seed_command(settings, scale, if_empty)
        return

    async def work(session: AsyncSession, cache: RequestCache) -> str:
        if if_empty and not await is_empty(session):
            return "The database already has data; nothing seeded."
        report = await seed(session, Scale(scale.value))
        if report.companies or report.users:
            cache_invalidation.everything_changed(cache)
        return (
            f"Seeded {scale.value}: {report.companies} companies, {report.users} users"
            + "".join(f", {count} {name}" for name, count in report.extra.items())
        )

    typer.echo(_in_transaction(work))


def _bulk_seed_command(settings: Settings, scale: SeedScale, if_empty: bool) -> None:
    """COPY the medium/large data set in one transaction, then VACUUM ANALYZE it."""
    if settings.is_sqlite:
        typer.echo(
            f"The {scale.value} scale needs PostgreSQL: it bulk-loads with COPY. Set DATABASE_URL "
            "to a PostgreSQL database (e.g. postgresql://user@host/etter), or use --scale small.",
            err=True,
        )
        raise typer.Exit(2)
    sizes = BULK_SIZES[scale.value]

    async def run() -> str:
        database = Database.from_settings(settings)
        try:
            if if_empty:
                async with database.sessionmaker() as session:
                    if not await is_empty(session):
                        return "The database already has data; nothing seeded."
            with typer.progressbar(
                length=sizes.total_rows, label=f"Seeding {scale.value}", file=sys.stderr
            ) as bar:
                async with database.engine.begin() as connection:
                    report = await bulk_seed(connection, sizes, progress=bar.update)
            if not report.loaded:
                return report.detail
            engine = database.engine.execution_options(isolation_level="AUTOCOMMIT")
            async with engine.connect() as connection:
                began = time.perf_counter()
                await vacuum_analyze(connection, report.transaction_id)
                vacuum_seconds = time.perf_counter() - began
            return (
                f"Seeded {scale.value} in {report.seconds:.1f} s "
                f"(+ {vacuum_seconds:.1f} s VACUUM ANALYZE): "
                + ", ".join(f"{count:,} {name}" for name, count in report.counts.items())
                + f". Every bulk user's password is {BULK_PASSWORD!r}."
            )
        finally:
            await database.dispose()

    try:
        typer.echo(asyncio.run(run()))
    except BulkSeedError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(1) from error


@app.command("sweep-documents")
def sweep_documents(
    grace_minutes: Annotated[
        int, typer.Option(min=0, help="leave files younger than this alone (uploads in flight)")
    ] = 60,
) -> None:
    """Delete stored document files that no document refers to (left by a crash between a
    delete's commit and the removal of its bytes, or by an interrupted upload)."""
    settings = _settings()

    async def work(session: AsyncSession, cache: RequestCache) -> str:
        report = await sweep_orphans(
            session, FileStorage(settings.storage_dir), older_than=timedelta(minutes=grace_minutes)
        )
        return f"Scanned {report.scanned} stored files; removed {len(report.removed)} orphans."

    typer.echo(_in_transaction(work))


@app.command("demo-logins")
def demo_logins() -> None:
    """Print the demo accounts that `seed` creates."""
    typer.echo(f"\nDemo logins (password for all: {DEMO_LOGINS[0].password})")
    for login in DEMO_LOGINS:
        typer.echo(f"  {login.role:<7} {login.email:<24} {login.company}")
    typer.echo("Open http://127.0.0.1:8000/docs and use Authorize with one of them.\n")


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="login email")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="8+ characters")],
    company_name: Annotated[str, typer.Option(help="created when missing")],
    role: Annotated[Role, typer.Option()] = Role.MEMBER,
    full_name: Annotated[str | None, typer.Option()] = None,
    country: Annotated[str, typer.Option(help="for a new company")] = "US",
) -> None:
    """Create a user, and its company when there is none of that name."""
    try:
        data = TypeAdapter(UserCreate).validate_python(
            {
                "email": email,
                "password": password,
                "role": role,
                "full_name": full_name or email.split("@")[0],
            }
        )
    except ValidationError as error:
        raise _fail(f"Invalid user: {_validation_message(error)}", 2) from error
    try:
        company_name = TypeAdapter(Name).validate_python(company_name)
    except ValidationError as error:
        raise _fail(f"Invalid --company-name: {_validation_message(error)}", 2) from error
    try:
        country = TypeAdapter(CountryCode).validate_python(country)
    except ValidationError as error:
        raise _fail("Invalid --country: use an ISO 3166 alpha-2 code such as US", 2) from error

    async def work(session: AsyncSession, cache: RequestCache) -> str:
        domain = data.email.rpartition("@")[2]
        company = await get_or_create_company(session, company_name, country, domain)
        cache_invalidation.company_changed(cache, company.id)  # when new: the catalogue
        # The tool acts as the platform operator of that company.
        operator = Principal(user_id=0, company_id=company.id, role=Role.ADMIN, email="cli")
        user = await UserService(session, operator, cache).create(data)
        return (
            f"Created {user.role} {user.email} (id {user.id}) in {company.name} (id {company.id})"
        )

    typer.echo(_in_transaction(work))


if __name__ == "__main__":
    app()
