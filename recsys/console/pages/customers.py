"""Customer value in the console, for viewers and editors: the dashboard (CLV distribution,
RFM segments with revenue share, cohort retention, lifecycle stages and flows, price and
discount sensitivity), a customer's page (profile, purchases, their personalised list now)
and the action lists as CSV. Everything is read from the served version's ``analytics/``."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.console.deps import ConsoleDep, Index, Viewer
from recsys.console.site import page_router, render
from recsys.serving import service
from recsys.serving.finish import Options
from recsys.serving.index import ServingIndex
from recsys.serving.params import ListQuery
from recsys.serving.profiles import profile

__all__ = ["router"]

router = page_router()
ACTIONS = {"replenishment": layout.REPLENISHMENT, "winback": layout.WINBACK,
           "high_value": layout.HIGH_VALUE, "lifecycle_flows": layout.LIFECYCLE_FLOWS}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
COHORTS, PERIODS = 12, 12  # the newest cohorts, months after the first order


def _read(folder: Path, entry: layout.ArtifactFile,
          columns: list[str] | None = None) -> pd.DataFrame | None:
    path = entry.at(folder)
    return pd.read_parquet(path, columns=columns) if path.exists() else None


def _folder(console: ConsoleDep, index: ServingIndex) -> Path:
    return ArtifactStore(console.serving.settings.artifacts).path(index.version)


def _cohort_rows(cohorts: pd.DataFrame | None) -> list[tuple[str, int, list[float | None]]]:
    """(cohort, size, retention per period) of the newest cohorts."""
    if cohorts is None or cohorts.empty:
        return []
    grid = cohorts.pivot_table(index="cohort", columns="period", values="retention")
    sizes = cohorts.groupby("cohort")["cohort_size"].max()
    grid = grid.reindex(columns=range(PERIODS)).tail(COHORTS)
    return [(str(c), int(sizes[c]), [None if pd.isna(v) else float(v) for v in row])
            for c, row in zip(grid.index, grid.to_numpy(), strict=True)]


@router.get("/customers", response_class=HTMLResponse)
def customers_page(request: Request, console: ConsoleDep, user: Viewer,
                   index: Index) -> HTMLResponse:
    folder = _folder(console, index)
    values = _read(folder, layout.CLV_CUSTOMERS, ["historical_clv", "predicted_clv"])
    distribution = [] if values is None else [
        (f"{q:.0%}", float(values["historical_clv"].quantile(q)),
         float(values["predicted_clv"].quantile(q))) for q in QUANTILES]
    stages = _read(folder, layout.LIFECYCLE, ["stage"])
    flows = _read(folder, layout.LIFECYCLE_FLOWS)
    pricing = _read(folder, layout.PRICE_SENSITIVITY)
    return render(
        request, "customers.html", user=user,
        customers=0 if values is None else len(values), distribution=distribution,
        segments=[] if (s := _read(folder, layout.RFM_SEGMENTS)) is None else s.to_dict(
            "records"),
        cohorts=_cohort_rows(_read(folder, layout.COHORTS)), periods=list(range(PERIODS)),
        stages=[] if stages is None else list(stages["stage"].value_counts().items()),
        flows=[] if flows is None else flows.sort_values("customers", ascending=False)
        .head(30).to_dict("records"),
        pricing=[] if pricing is None else pricing[pricing["category"] == "*"].to_dict(
            "records"),
        actions=[(name, len(table)) for name, entry in ACTIONS.items()
                 if (table := _read(folder, entry)) is not None])


def _history(index: ServingIndex, customer_id: str) -> list[dict[str, Any]]:
    """The customer's purchases, last bought first (at most 50)."""
    model = index.customer_model
    row = model.customers.get(customer_id) if model is not None else None
    if model is None or row is None:
        return []
    lo, hi = int(model.purchases_indptr[row]), int(model.purchases_indptr[row + 1])
    bought = sorted(zip(model.purchases_day[lo:hi].tolist(),
                        model.purchases_indices[lo:hi].tolist(),
                        model.purchases_orders[lo:hi].tolist(), strict=True), reverse=True)
    return [{**index.describe(index.ids[code]), "orders": orders,
             "last_bought": date(1970, 1, 1) + timedelta(days=day - 1)}
            for day, code, orders in bought[:50]]


@router.get("/customers/view", response_class=HTMLResponse)
def customer_page(request: Request, console: ConsoleDep, user: Viewer, index: Index,
                  customer_id: Annotated[str, Query(alias="id", min_length=1, max_length=128)]
                  ) -> HTMLResponse:
    found = profile(console.serving.settings.artifacts, index, customer_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"Customer {customer_id!r} is not in "
                                                    f"version {index.version}.")
    result, arm = service.customer_list(console.serving, index, ListQuery(
        Options(k=10), customer_id=customer_id))
    return render(request, "customer.html", user=user, profile=found,
                  history=_history(index, customer_id), recommended=result.items, arm=arm)


@router.get("/customers/actions/{name}.csv")
def action_csv(console: ConsoleDep, user: Viewer, index: Index,
               name: Literal["replenishment", "winback", "high_value", "lifecycle_flows"]
               ) -> Response:
    table = _read(_folder(console, index), ACTIONS[name])
    if table is None:
        raise HTTPException(status_code=404, detail=f"Version {index.version} has no {name} "
                                                    "list.")
    for column in table.columns:  # list cells (offers) as "a|b|c"
        if table[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            table[column] = table[column].map(lambda v: "|".join(map(str, v)))
    return Response(table.to_csv(index=False), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}-{index.version}.csv"'})
