"""Operations: liveness, readiness, Prometheus metrics, and the served version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from recsys.serving.observe import exposition
from recsys.serving.schemas import INVALID
from recsys.serving.state import Index, State

__all__ = ["router", "version_router"]

router = APIRouter(tags=["operations"])
version_router = APIRouter(prefix="/v1", tags=["recommendations"], responses=INVALID)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "no artifact loaded"}})
async def readyz(state: State) -> JSONResponse:
    """Readiness: an artifact version is loaded; its version, age, any failed reload, and
    the database (``degraded`` while down: recommendations are served, events buffered) and
    the live session store (``redis``: ok, degraded (lists served without sessions), off)."""
    database = {"database": "ok" if state.store.database_ok else "degraded",
                "buffered_events": state.spool.count()}
    if state.index is None:
        return JSONResponse({"status": "not_ready", "reason": state.error, **database},
                            status_code=503)
    idx = state.index
    return JSONResponse({"status": "ready", "version": idx.version,
                         "age_seconds": round(idx.age_seconds(), 1),
                         "loaded_at": idx.loaded_at.isoformat(), "error": state.error,
                         "failed_version": state.failed_version, **database,
                         "redis": state.live.status()})  # degraded: lists ignore sessions


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, fallbacks, served version. With several
    workers (``PROMETHEUS_MULTIPROC_DIR`` set, as ``recsys serve --workers N`` does) the
    figures of all workers, added up; the version is 1 while any live worker serves it."""
    return Response(exposition(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@version_router.get("/version")
async def version(index: Index) -> dict[str, Any]:
    """The artifact version being served and how it was built."""
    m = index.manifest
    return {"model_version": m.version, "created_at": m.created_at, "git_commit": m.git_commit,
            "config_hash": m.config_hash, "metrics": m.metrics}
