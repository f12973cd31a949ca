"""Who is calling: the authenticated user as the services see it."""

from __future__ import annotations

from dataclasses import dataclass

from common.enums import Role


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    company_id: int
    role: Role
    email: str
    # What the caller's tokens must carry to be accepted (users.credentials_version).
    credentials_version: int = 0

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_chro_or_admin(self) -> bool:
        return self.role in (Role.ADMIN, Role.CHRO)
