"""The console's forms (posted as ``application/x-www-form-urlencoded``), validated with
pydantic; ``parse`` turns a bad form into a 400 page that names the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import FormData

from recsys.console.rules import PAGE_SIZE, RuleBrowserQuery
from recsys.serving.params import ID_PATTERN  # as the API: printable, no control characters

__all__ = ["LoginForm", "RulesDecision", "ProductDecision", "Undo", "parse"]

REASON = Field("", max_length=1024, pattern=r"^[^\x00]*$")  # PostgreSQL text cannot hold NUL
F = TypeVar("F", bound=BaseModel)


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a password is taken as typed, spaces too

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    next: str = Field("", max_length=2048)


class RulesDecision(RuleBrowserQuery):
    """A decision on rules: the ticked ones, or every rule of the filter (up to
    ``pages.rules.BULK_CAP``)."""

    action: Literal["approve", "reject"]
    scope: Literal["selected", "matching"] = "selected"
    key: list[Annotated[str, Field(min_length=4, max_length=1024)]] = Field(
        default_factory=list, max_length=PAGE_SIZE)
    reason: str = REASON

    @field_validator("reason", mode="after")
    @classmethod
    def _strip_reason(cls, value: str) -> str:
        return value.strip()


class ProductDecision(_Form):
    """Pin ``product`` at ``position`` for ``seed``; boost or bury it; or block it."""

    action: Literal["pin", "boost", "block"]
    seed: str = Field("", max_length=128)
    product: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    position: int | None = Field(None, ge=1, le=100)
    factor: float | None = Field(None, gt=0, le=100)
    reason: str = REASON
    next: str = Field("", max_length=2048)


class Undo(_Form):
    decision_id: int | None = Field(None, ge=1, le=2**31 - 1)
    batch_id: str = Field("", max_length=32, pattern=r"^[0-9a-f]*$")
    reason: str = REASON
    next: str = Field("", max_length=2048)


def parse(model: type[F], form: FormData, **extra: Any) -> F:
    """The form as ``model``, or a 400 page naming each bad field."""
    try:
        return model.model_validate({**dict(form), **extra})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise HTTPException(status_code=400, detail=f"Invalid form: {problems}") from None
