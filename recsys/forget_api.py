"""``POST /admin/forget`` (admin key): the right to erasure through the API.

Runs ``recsys.forget.forget_customers`` with the server's own live session state (Redis, or
this worker's memory), database, data folder and artifact store, also erases the customers'
events still buffered while the database was down,
then reloads, so the version served no longer holds them. The answer says how many rows went
where, never an id. Kept out of ``recsys.serving``: erasure reaches above the serving layer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from recsys.artifacts import ArtifactStore
from recsys.errors import RecsysError
from recsys.forget import forget_customers
from recsys.serving.schemas import INVALID
from recsys.serving.state import Admin, ServingState, State

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], responses={
    **INVALID, 401: {"description": "missing or wrong X-API-Key"}})


# printable, and not blank: one character other than a space at least
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
CustomerId = Annotated[str, Field(min_length=1, max_length=128,
                                  pattern=rf"^{_PRINTABLE}*[^\s\x00-\x1f\x7f-\x9f]{_PRINTABLE}*$")]


class ForgetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_ids: Annotated[list[CustomerId], Field(min_length=1, max_length=1000)]


class ForgetAnswer(BaseModel):
    at: str
    customers: int
    rows: dict[str, int] = Field(description="rows removed per place")
    versions: dict[str, str] = Field(description="artifact versions rewritten: old -> new")
    version: str | None = Field(description="the version served after the erasure")


def _forget(state: ServingState, ids: list[str]) -> dict[str, Any]:
    settings = state.settings
    sessions = state.spool.sessions_of(ids)
    buffered = state.spool.erase(ids)
    erasure = forget_customers(ids, database_url=settings.database_url,
                               data_dir=Path(settings.data_dir),
                               store=ArtifactStore(settings.artifacts),
                               live=state.live.forget, sessions=sessions)
    erasure.add("buffered events", buffered)
    return erasure.to_dict()


@router.post("/forget", response_model=ForgetAnswer, responses={
    503: {"description": "the erasure could not complete (e.g. the database is down); "
                         "retry: erasing twice is harmless"}})
async def forget(state: State, _: Admin, request: ForgetRequest) -> Any:
    """Erase customers everywhere the engine keeps them (GDPR art. 17); counts, no ids."""
    try:
        done = await asyncio.to_thread(_forget, state, request.customer_ids)
    except RecsysError as exc:
        return JSONResponse({"detail": f"erasure incomplete: {exc}"}, status_code=503,
                            headers={"Retry-After": "60"})
    await state.reload_if_moved()
    return {**done, "version": state.index.version if state.index else None}
