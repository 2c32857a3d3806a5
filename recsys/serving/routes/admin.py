"""Admin (API key): reload the artifact, update the catalogue, list, add and undo merchandiser
decisions."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path
from fastapi.responses import JSONResponse

from recsys.serving.catalog_overlay import CatalogRow
from recsys.serving.schemas import INVALID, NOT_READY, DecisionIn
from recsys.serving.state import Admin, State
from recsys.serving.store import DECISION_KINDS

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], responses={
    **INVALID, 401: {"description": "missing or wrong X-API-Key"}})


@router.post("/reload", responses={409: {"description": "the new version was refused; "
                                                     "the old one keeps serving"}})
async def reload(state: State, _: Admin) -> JSONResponse:
    """Load the version CURRENT points at now (verified); the old one keeps serving on error."""
    await state.reload_if_moved(force=True)
    body = {"version": state.index.version if state.index else None, "error": state.error}
    return JSONResponse(body, status_code=200 if state.error is None else 409)


@router.post("/catalog", responses=NOT_READY)
async def update_catalog(
        state: State, _: Admin,
        rows: Annotated[list[CatalogRow], Body(min_length=1, max_length=10_000)]
) -> dict[str, Any]:
    """Catalogue rows (added, repriced, out of stock, inactive) served at once, without a
    retrain, until an artifact's catalogue holds them; new products get content neighbours."""
    ids = [r.product_id for r in rows]
    repeated = sorted(p for p, n in Counter(ids).items() if n > 1)
    if repeated:
        raise HTTPException(status_code=422, detail=f"duplicate_product_id: {repeated[:10]} "
                                                    "appear more than once in the body")
    index = await asyncio.to_thread(state.update_catalog, rows)
    return {"version": index.version, "rows": len(rows),
            "added": sum(p not in index.code_of for p in ids),
            "unavailable": sum(p not in index.available for p in ids),
            "pending": len(state.overlay)}


@router.get("/decisions")
def list_decisions(state: State, _: Admin) -> list[dict[str, Any]]:
    """Active merchandiser decisions."""
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in state.store.list_decisions()]


@router.post("/decisions", status_code=201)
def add_decision(state: State, _: Admin, decision: DecisionIn) -> dict[str, Any]:
    """Block a product or a rule, pin a product at a position for a seed, boost or bury."""
    need = {"block_product": ("product_id",), "block_rule": ("rule_key",),
            "pin": ("product_id", "seed_id", "position"), "boost": ("product_id", "factor")}
    missing = [f for f in need[decision.kind] if getattr(decision, f) is None]
    if missing:
        raise HTTPException(status_code=422, detail=f"{decision.kind} needs {missing}")
    assert decision.kind in DECISION_KINDS
    decision_id = state.store.add_decision(**decision.model_dump())
    return {"id": decision_id}


@router.delete("/decisions/{decision_id}",
               responses={404: {"description": "no active decision with this id"}})
def remove_decision(state: State, _: Admin,
                    decision_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
    """Undo a decision (kept, marked inactive, for the audit trail)."""
    if not state.store.deactivate_decision(decision_id):
        raise HTTPException(status_code=404, detail=f"no active decision {decision_id}")
    return {"id": decision_id, "active": False}
