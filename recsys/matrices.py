"""Sparse interaction matrices (scipy CSR), built vectorised and never densified.

- order x product: 1 where the order holds the product (int32; an order counts an item once);
- customer x product: weighted purchases (and customer events), float32;
- session x product: weighted events per session, float32; events with a customer but no
  session are split into sessions at 30 minutes of inactivity.

Weights: ``event_weights[type]`` x quantity factor x time decay ``0.5 ** (age / half_life)``,
where age is measured back from the newest timestamp in the data (or ``reference_time``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recsys.contract import require_columns
from recsys.vocab import Vocabulary

__all__ = [
    "Confidence",
    "Interactions",
    "InteractionWeights",
    "item_vocabulary",
    "order_item_matrix",
    "customer_item_matrix",
    "session_item_matrix",
    "view_sessions",
]

SESSION_GAP = pd.Timedelta(minutes=30)


class InteractionWeights(BaseModel):
    """How much each interaction counts in the customer and session matrices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "wishlist": 2.0,
                                 "add_to_cart": 3.0, "purchase": 5.0},
        description="weight per event type; types not listed count 0",
    )
    quantity: Literal["ignore", "linear", "log1p"] = Field(
        "log1p", description="how order-line quantity scales a purchase's weight")
    half_life_days: float | None = Field(
        None, gt=0, description="time decay half-life in days; None = no decay")


@dataclass(frozen=True)
class Interactions:
    """A rows x items CSR matrix with the vocabularies of both axes."""

    matrix: sp.csr_matrix
    rows: Vocabulary
    items: Vocabulary

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), len(self.items))


class Confidence(Protocol):
    """ALS's customers x products confidence matrix, wherever it is held (``Interactions``
    in this process; recsys.spark.interactions keeps it on Spark)."""

    @property
    def rows(self) -> Vocabulary:
        """The customers: the factors' rows."""

    @property
    def items(self) -> Vocabulary:
        """The products: the item factors' rows."""


def item_vocabulary(*tables: pd.DataFrame | None) -> Vocabulary:
    """Sorted union of the product ids of the given tables (catalog, orders, events)."""
    parts = [t["product_id"] for t in tables if t is not None and len(t)]
    if not parts:
        return Vocabulary([])
    return Vocabulary.from_ids(pd.concat(parts, ignore_index=True), sort=True)


def _build(row_ids: pd.Series, item_ids: pd.Series, values: np.ndarray, items: Vocabulary | None,
           dtype: type, row_times: pd.Series | None = None) -> Interactions:
    """The rows x items matrix of (row id, item id, value) triples, duplicates summed; the rows
    are the distinct row ids of known items, sorted, or in time order where ``row_times``
    gives each triple's time (``_time_order``)."""
    if items is None:  # one pass: codes and the sorted vocabulary together
        codes, uniques = pd.factorize(pd.Series(item_ids, dtype="string"), sort=True)
        items = Vocabulary(pd.Index(uniques, dtype="string"))
        cols = codes.astype(np.int64)
    else:
        cols = items.lookup(item_ids, on_unknown="mask")
    keep = cols >= 0
    row_codes, row_uniques = pd.factorize(pd.Series(row_ids, dtype="string")[keep], sort=True)
    if row_times is not None:
        order = _time_order(row_codes, len(row_uniques), row_times[keep])
        row_uniques, row_codes = row_uniques[order], np.argsort(order)[row_codes]
    rows = Vocabulary(pd.Index(row_uniques, dtype="string"))
    matrix = sp.coo_matrix(
        (values[keep].astype(dtype), (row_codes.astype(np.int32), cols[keep].astype(np.int32))),
        shape=(len(rows), len(items)),
    ).tocsr()
    matrix.sum_duplicates()
    matrix.sort_indices()
    return Interactions(matrix=matrix, rows=rows, items=items)


def order_item_matrix(orders: pd.DataFrame, items: Vocabulary | None = None) -> Interactions:
    """Binary order x product matrix (int32): an order counts a product once however many lines."""
    ones = np.ones(len(orders), dtype=np.int32)
    result = _build(orders["order_id"], orders["product_id"], ones, items, np.int32)
    result.matrix.data[:] = 1
    return result


def _time_order(codes: np.ndarray, n: int, times: pd.Series) -> np.ndarray:
    """The ``n`` rows (``codes``: each triple's row, in sorted id order) ordered by their last
    time (to the microsecond, as Spark keeps times; rows without one last), then by id: the
    latest sessions are the last rows, which V-SKNN's sample reads."""
    stamps = pd.to_datetime(times, utc=True).dt.tz_convert(None).to_numpy("datetime64[us]")
    micros = stamps.view(np.int64)
    never = np.iinfo(np.int64).min  # NaT
    last = pd.Series(micros).groupby(codes).max().to_numpy(copy=True)
    last[last == never] = np.iinfo(np.int64).max
    return np.lexsort((np.arange(n), last))


def _decay(times: pd.Series, half_life_days: float | None,
           reference_time: pd.Timestamp | None) -> np.ndarray:
    if half_life_days is None:
        return np.ones(len(times))
    ref = reference_time if reference_time is not None else times.max()
    age_days = (ref - times).dt.total_seconds().to_numpy() / 86400.0
    return np.power(0.5, np.clip(np.nan_to_num(age_days, nan=0.0), 0, None) / half_life_days)


def _quantity_factor(quantity: pd.Series | None, mode: str) -> np.ndarray | float:
    if quantity is None or mode == "ignore":
        return 1.0
    q = quantity.to_numpy(dtype=np.float64)
    return np.log1p(q) / np.log(2.0) if mode == "log1p" else q


def customer_item_matrix(orders: pd.DataFrame, events: pd.DataFrame | None = None, *,
                         weights: InteractionWeights | None = None,
                         items: Vocabulary | None = None,
                         reference_time: pd.Timestamp | None = None) -> Interactions:
    """customer x product (float32): purchases from orders plus customers' non-purchase events.

    Purchase events in ``events`` are skipped (orders are the purchase record). Rows without a
    customer (guest orders, anonymous events) do not enter this matrix.
    """
    weights = weights or InteractionWeights()
    require_columns(orders, ["customer_id"], table="orders", feature="the customer x product matrix")
    if weights.half_life_days is not None:
        require_columns(orders, ["ordered_at"], table="orders", feature="time decay")
    if weights.half_life_days is not None and reference_time is None:
        stamps = [orders["ordered_at"].max()]
        if events is not None and len(events):
            stamps.append(events["occurred_at"].max())
        reference_time = max(stamps)
    used = [c for c in ("customer_id", "product_id", "quantity", "ordered_at") if c in orders]
    known = orders[used][orders["customer_id"].notna().to_numpy()]
    decay = (_decay(known["ordered_at"], weights.half_life_days, reference_time)
             if "ordered_at" in known else 1.0)  # undated orders: no decay (checked above)
    w = weights.event_weights.get("purchase", 0.0) * _quantity_factor(
        known.get("quantity"), weights.quantity) * decay
    customers = [known["customer_id"]]
    products = [known["product_id"]]
    values = [np.broadcast_to(np.asarray(w, dtype=np.float64), (len(known),))]
    if events is not None and "customer_id" in events:
        ev = events[events["customer_id"].notna() & (events["event_type"] != "purchase")]
        ev_w = ev["event_type"].map(weights.event_weights).fillna(0.0).to_numpy(dtype=np.float64)
        ev_w = ev_w * _decay(ev["occurred_at"], weights.half_life_days, reference_time)
        customers.append(ev["customer_id"])
        products.append(ev["product_id"])
        values.append(ev_w)
    result = _build(pd.concat(customers, ignore_index=True), pd.concat(products, ignore_index=True),
                    np.concatenate(values), items, np.float32)
    result.matrix.eliminate_zeros()
    return result


def session_keys(events: pd.DataFrame) -> pd.Series:
    """A session key per event: session_id, else customer + 30-minute inactivity split."""
    key = events["session_id"].astype("string") if "session_id" in events else pd.Series(
        pd.NA, index=events.index, dtype="string")
    missing = key.isna()
    if missing.any() and "customer_id" in events:
        ev = events.loc[missing, ["customer_id", "occurred_at"]].sort_values(
            ["customer_id", "occurred_at"], kind="stable")
        new_customer = ev["customer_id"].ne(ev["customer_id"].shift()).fillna(True).to_numpy(bool)
        gap = (ev["occurred_at"].diff() > SESSION_GAP).to_numpy(bool)
        counter = pd.Series(np.cumsum(new_customer | gap), index=ev.index)
        derived = "c:" + ev["customer_id"].astype("string") + ":" + counter.astype("string")
        key = key.copy()
        key.loc[derived.index] = derived
    return key


def session_item_matrix(events: pd.DataFrame, *, weights: InteractionWeights | None = None,
                        items: Vocabulary | None = None,
                        reference_time: pd.Timestamp | None = None) -> Interactions:
    """session x product (float32) from events, weighted per event type and decayed; the
    sessions in the order of their last event, then of their keys."""
    weights = weights or InteractionWeights()
    keys = session_keys(events)
    keep = keys.notna().to_numpy()
    ev = events[keep]
    w = ev["event_type"].map(weights.event_weights).fillna(0.0).to_numpy(dtype=np.float64)
    w = w * _decay(ev["occurred_at"], weights.half_life_days, reference_time)
    result = _build(keys[keep], ev["product_id"], w, items, np.float32, ev["occurred_at"])
    result.matrix.eliminate_zeros()
    return result


def view_sessions(events: pd.DataFrame | None, items: Vocabulary,
                  weights: InteractionWeights | None) -> sp.csr_matrix | None:
    """The session x product matrix of the view events (what also-viewed, V-SKNN,
    substitutes and the cold-start weights count); None without view events (also-viewed
    then counts orders: ``order_item_matrix``)."""
    views = None if events is None else events[events["event_type"] == "view"]
    if views is None or not len(views):
        return None
    return session_item_matrix(views, weights=weights, items=items).matrix
