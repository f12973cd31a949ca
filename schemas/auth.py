from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import StringConstraints, model_validator

from common.validators import Password
from schemas.base import InputSchema, Schema


class Token(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class PasswordChange(InputSchema):
    """`POST /auth/password`: the current password proves it is the account's owner."""

    current_password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    new_password: Password

    @model_validator(mode="after")
    def _different(self) -> Self:
        if self.new_password == self.current_password:
            raise ValueError("the new password must differ from the current one")
        return self
