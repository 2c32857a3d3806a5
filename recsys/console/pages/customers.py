"""Customer value in the console, for viewers and editors: the dashboard (CLV distribution,
RFM segments with revenue share, cohort retention, lifecycle stages and flows, price and
discount sensitivity), a customer's page (profile, purchases, and what every list would show
them now: ``service.customer_lists``) and the action lists as CSV, less what cannot be sold
now (unavailable or blocked products). Everything is read from the served version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.console.deps import ConsoleDep, Index, Viewer
from recsys.console.site import page_router, render
from recsys.serving import customer_view, service
from recsys.serving.index import ServingIndex
from recsys.serving.profiles import profile

__all__ = ["router"]

router = page_router()
ACTIONS = customer_view.ACTION_LISTS
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


def _offers(index: ServingIndex, row: dict[str, Any]) -> list[dict[str, Any]]:
    """A win-back row's offers (offer_1, offer_2, ...) in order, described; emptied ones left
    out."""
    slots = sorted((int(c[6:]), c) for c in row if c.startswith("offer_") and c[6:].isdigit())
    return [index.describe(str(row[c])) for _, c in slots
            if row[c] is not None and not pd.isna(row[c])]


@router.get("/customers/view", response_class=HTMLResponse)
def customer_page(request: Request, console: ConsoleDep, user: Viewer, index: Index,
                  customer_id: Annotated[str, Query(alias="id", min_length=1, max_length=128)]
                  ) -> HTMLResponse:
    found = profile(console.serving.settings.artifacts, index, customer_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"Customer {customer_id!r} is not in "
                                                    f"version {index.version}.")
    lists = service.customer_lists(console.serving, index, customer_id)
    due = [{**row, **index.describe(str(row["product_id"])),
            "expected_date": pd.Timestamp(row["expected_date"]).date()}
           for row in lists["replenishment"] or ()]
    winback = [{**row, "offers": _offers(index, row)} for row in lists["winback"] or ()]
    return render(request, "customer.html", user=user, profile=found,
                  history=customer_view.purchases(index, customer_id), lists=lists,
                  replenishment=due, winback=winback[0] if winback else None,
                  high_value=(lists["high_value"] or [None])[0])


@router.get("/customers/actions/{name}.csv")
def action_csv(console: ConsoleDep, user: Viewer, index: Index,
               name: Literal["replenishment", "winback", "high_value", "lifecycle_flows"]
               ) -> Response:
    table = customer_view.action_rows(console.serving.settings.artifacts, index, name)
    if table is None:
        raise HTTPException(status_code=404, detail=f"Version {index.version} has no {name} "
                                                    "list.")
    table = customer_view.sellable(table, name, index,
                                   console.serving.store.decisions().blocked_products)
    for column in table.columns:  # list cells (offers) as "a|b|c"
        if table[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
            table[column] = table[column].map(lambda v: "|".join(map(str, v)))
    return Response(table.to_csv(index=False), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}-{index.version}.csv"'})
