"""Etter's command-line tool: migrate, seed, create users.

python manage.py --help
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from alembic.config import Config
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from alembic import command
from common.enums import Role
from common.exceptions import EtterError
from common.principal import Principal
from schemas.users import UserCreate
from services.companies import get_or_create_company
from services.seeding import DEMO_LOGINS, Scale, is_empty, seed
from services.users import UserService
from settings.config import Settings
from settings.database import Database

app = typer.Typer(
    help="Etter backend administration.", no_args_is_help=True, pretty_exceptions_enable=False
)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        typer.echo(f"Invalid settings:\n{error}", err=True)
        raise typer.Exit(2) from error


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run() -> T:
        database = Database.from_settings(_settings())
        try:
            async with database.sessionmaker() as session, session.begin():
                return await work(session)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except EtterError as error:
        typer.echo(f"Error: {error.detail}", err=True)
        raise typer.Exit(1) from error


@app.command()
def migrate() -> None:
    """Apply every database migration (alembic upgrade head)."""
    command.upgrade(Config("alembic.ini"), "head")


@app.command("seed")
def seed_command(
    scale: Annotated[Scale, typer.Option(help="how much data")] = Scale.DEMO,
    if_empty: Annotated[bool, typer.Option(help="only when the database has no data")] = False,
) -> None:
    """Load deterministic sample data. Running it again adds nothing."""
    settings = _settings()
    if settings.is_production:
        typer.echo("Refusing to seed sample data with ENVIRONMENT=production.", err=True)
        raise typer.Exit(1)

    async def work(session: AsyncSession) -> str:
        if if_empty and not await is_empty(session):
            return "The database already has data; nothing seeded."
        report = await seed(session, scale)
        return (
            f"Seeded {scale.value}: {report.companies} companies, {report.users} users"
            + "".join(f", {count} {name}" for name, count in report.extra.items())
        )

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
        typer.echo(f"Invalid user: {error}", err=True)
        raise typer.Exit(2) from error

    async def work(session: AsyncSession) -> str:
        company = await get_or_create_company(session, company_name, country.upper())
        # The tool acts as the platform operator of that company.
        operator = Principal(user_id=0, company_id=company.id, role=Role.ADMIN, email="cli")
        user = await UserService(session, operator).create(data)
        return (
            f"Created {user.role} {user.email} (id {user.id}) in {company.name} (id {company.id})"
        )

    typer.echo(_in_transaction(work))


if __name__ == "__main__":
    app()
