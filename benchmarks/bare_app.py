"""The baseline of the serving benchmark: a bare FastAPI app answering a constant ten-item list.

The payload has the shape and about the size of a ``/v1/items/{id}/bought-together`` answer
(ten items, each with a reason and its evidence). ``/v1/bare`` is the plain FastAPI way
(``async def`` returning a dict, serialised by FastAPI); ``/v1/bare-sync`` is the same with
``def``, so that it pays the thread-pool hop of a sync route. Served by
``benchmarks/serving_bench.py`` with the same uvicorn command line as the recsys API:

    uvicorn --app-dir benchmarks bare_app:app --host 127.0.0.1 --port 8001 --workers 1
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["app", "PAYLOAD"]

SEED = "85123A"
ITEMS = [
    {"product_id": f"2{i:04d}", "score": round(0.6 - i / 50, 6),
     "reason": {"source": "rule", "evidence": {
         "seed": SEED, "co_purchases": 400 - 17 * i, "confidence": round(0.6 - i / 50, 6),
         "lift": round(12.5 - i / 3, 6), "rule": f"{SEED}->2{i:04d}"}}}
    for i in range(10)
]
PAYLOAD = {"items": ITEMS, "model_version": "20240101T000000000000Z",
           "request_id": "0123456789abcdef0123456789abcdef", "fallback": None, "applied": []}

app = FastAPI(title="bare")


# response_model=None: no response model to validate against, as in an unannotated route.
@app.get("/v1/bare", response_model=None)
async def bare() -> dict[str, Any]:
    """The constant list, the plain FastAPI way."""
    return PAYLOAD


@app.get("/v1/bare-sync", response_model=None)
def bare_sync() -> dict[str, Any]:
    """The same list from a sync route (run in the thread pool)."""
    return PAYLOAD
