"""One global time split and the evaluation cases built from it (no per-user splits).

The date range [start, end] of the data is cut twice at fixed fractions:

    train (fit for validation)      validation           test
    start ------------------- valid_start ------- test_start ------- end

- validation stage: models are fitted on rows before ``valid_start`` and scored on the window
  [valid_start, test_start); hyperparameters are chosen there;
- test stage: the chosen models are refitted on every row before ``test_start`` and scored on
  [test_start, end]. Nothing at or after a stage's cutoff is ever used to fit or to build
  the item vocabulary of that stage; the validation window ends where the test window starts.

Cases per task (item codes refer to the stage's training vocabulary; items first seen after
the cutoff are unknown and cannot be queries or single targets):
- basket completion: each evaluation order with at least two known items loses one of them,
  drawn with a seeded generator; the rest is the query (the cart);
- also viewed: in each session that starts inside the window (events cut at its end), every
  click followed by a different known product: query = that product, target = the next one;
- next basket: each customer with orders before the cutoff and inside the window: query =
  their history before the cutoff, target = their first order inside the window. Data with
  relative dates only (``holdout="last_order"``) uses each customer's last order as the test
  basket and the one before it for validation, history = the orders before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.matrices import session_keys
from recsys.vocab import Vocabulary

__all__ = [
    "Stage",
    "Holdout",
    "Windows",
    "time_windows",
    "split_orders",
    "split_events",
    "BasketCases",
    "basket_cases",
    "PairCases",
    "session_pairs",
    "NextBasketCases",
    "next_basket_split",
    "next_basket_cases",
]

Stage = Literal["validation", "test"]
Holdout = Literal["time", "last_order"]


@dataclass(frozen=True)
class Windows:
    """Global cutoffs: train < valid_start <= validation < test_start <= test <= end."""

    start: pd.Timestamp
    valid_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp

    def cutoff(self, stage: Stage) -> pd.Timestamp:
        """Rows strictly before this fit the models of ``stage``."""
        return self.valid_start if stage == "validation" else self.test_start

    def window(self, stage: Stage) -> tuple[pd.Timestamp, pd.Timestamp | None]:
        """[lo, hi) of the evaluated rows; hi None = up to the end, inclusive."""
        return (self.valid_start, self.test_start) if stage == "validation" else (
            self.test_start, None)

    def describe(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in
                ("start", "valid_start", "test_start", "end")}


def time_windows(times: pd.Series, *, test_fraction: float = 0.2,
                 valid_fraction: float = 0.2) -> Windows:
    """Cutoffs at fractions of the date range: the last ``test_fraction`` is test, the
    ``valid_fraction`` before it validation."""
    if not (0 < test_fraction < 1 and 0 < valid_fraction < 1
            and test_fraction + valid_fraction < 1):
        raise InputError(f"test_fraction ({test_fraction}) and valid_fraction "
                         f"({valid_fraction}) must be in (0, 1) and leave room for training")
    stamps = pd.to_datetime(pd.Series(times)).dropna()
    if stamps.empty:
        raise InputError("a time split needs timestamps, and the data has none")
    start, end = stamps.min(), stamps.max()
    if start == end:
        raise InputError(f"every timestamp is {start}: a time split needs a date range")
    span = end - start
    return Windows(start=start, valid_start=start + (1 - test_fraction - valid_fraction) * span,
                   test_start=start + (1 - test_fraction) * span, end=end)


def _in_window(times: pd.Series, lo: pd.Timestamp, hi: pd.Timestamp | None) -> pd.Series:
    inside = times >= lo
    return inside & (times < hi) if hi is not None else inside


def split_orders(orders: pd.DataFrame, windows: Windows,
                 stage: Stage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(lines before the stage's cutoff, lines inside its window) by ``ordered_at``."""
    times = orders["ordered_at"]
    lo, hi = windows.window(stage)
    return orders[times < windows.cutoff(stage)], orders[_in_window(times, lo, hi)]


def split_events(events: pd.DataFrame, windows: Windows,
                 stage: Stage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events before the cutoff, events of sessions starting inside the window, cut at its
    end); the second frame gets a ``session`` column (the session key)."""
    times = events["occurred_at"]
    lo, hi = windows.window(stage)
    keys = session_keys(events)
    starts = times.groupby(keys.to_numpy(), sort=False).transform("min")
    chosen = _in_window(starts, lo, hi) & keys.notna()
    if hi is not None:
        chosen &= times < hi
    return events[times < windows.cutoff(stage)], events[chosen].assign(session=keys[chosen])


# -- basket completion -----------------------------------------------------------------------


@dataclass(frozen=True)
class BasketCases:
    """One held-out item per evaluated order; ``queries`` is cases x items (1 = in the cart)."""

    queries: sp.csr_matrix
    targets: np.ndarray  # (cases,) item code held out
    revenue: np.ndarray  # (cases,) the held-out line's quantity x unit price; NaN if unknown
    order_ids: np.ndarray  # (cases,) str

    def __len__(self) -> int:
        return len(self.targets)


def basket_cases(orders: pd.DataFrame, items: Vocabulary, *, seed: int,
                 min_known: int = 2) -> BasketCases:
    """Hold one random known item out of each order with >= ``min_known`` known items."""
    codes = items.lookup(orders["product_id"], on_unknown="mask")
    known = codes >= 0
    if {"quantity", "unit_price"} <= set(orders.columns):
        revenue = (orders["quantity"].to_numpy(np.float64) *
                   orders["unit_price"].to_numpy(np.float64, na_value=np.nan))
    else:
        revenue = np.full(len(orders), np.nan)
    lines = pd.DataFrame({"order": orders["order_id"].astype("string").to_numpy()[known],
                          "code": codes[known], "revenue": revenue[known]})
    per_item = lines.groupby(["order", "code"], sort=True)["revenue"].sum(min_count=1)
    order_ids = per_item.index.get_level_values(0).to_numpy(dtype=object)
    item_codes = per_item.index.get_level_values(1).to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, order_ids[1:] != order_ids[:-1]])
    sizes = np.diff(np.r_[starts, len(order_ids)])
    keep = sizes >= min_known
    members = np.flatnonzero(np.repeat(keep, sizes))  # lines of the kept orders, in order
    starts, sizes = starts[keep], sizes[keep]
    rng = np.random.default_rng(seed)
    held = starts + np.minimum((rng.random(len(starts)) * sizes).astype(np.int64), sizes - 1)
    row_of = np.repeat(np.arange(len(starts)), sizes)
    in_cart = np.ones(len(members), dtype=bool)
    in_cart[np.searchsorted(members, held)] = False
    queries = sp.csr_matrix(
        (np.ones(int(in_cart.sum()), dtype=np.float32),
         (row_of[in_cart], item_codes[members[in_cart]])), shape=(len(starts), len(items)))
    return BasketCases(queries=queries, targets=item_codes[held],
                       revenue=per_item.to_numpy(np.float64, na_value=np.nan)[held],
                       order_ids=order_ids[held])


# -- also viewed -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PairCases:
    """(viewed product, next different product viewed) pairs, as item codes."""

    queries: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def query_matrix(self, n_items: int) -> sp.csr_matrix:
        """cases x items, one 1 per row (the viewed product)."""
        n = len(self.queries)
        return sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), self.queries)),
                             shape=(n, n_items))


def session_pairs(events: pd.DataFrame, items: Vocabulary) -> PairCases:
    """Consecutive clicks of a session (``session`` column) on two different known products."""
    ev = events.assign(_code=items.lookup(events["product_id"], on_unknown="mask"))
    ev = ev.sort_values(["session", "occurred_at"], kind="stable")
    session = ev["session"].to_numpy(dtype=object)
    code = ev["_code"].to_numpy(np.int64)
    same = session[1:] == session[:-1]
    q, t = code[:-1], code[1:]
    keep = same & (q >= 0) & (t >= 0) & (q != t)
    return PairCases(queries=q[keep], targets=t[keep])


# -- next basket -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextBasketCases:
    """Each returning customer's history (cases x items: how many of their orders held the
    item) and next basket (cases x items, 1 = in it; known items only)."""

    customers: np.ndarray  # (cases,) str
    history: sp.csr_matrix
    targets: sp.csr_matrix
    basket_sizes: np.ndarray  # (cases,) distinct products of the next basket, unknown included

    def __len__(self) -> int:
        return len(self.customers)


def _order_rank_from_end(orders: pd.DataFrame) -> pd.Series:
    """0 for each customer's last order, 1 for the one before, ... (NaN without customer)."""
    heads = orders.drop_duplicates("order_id")[["order_id", "customer_id", "ordered_at"]]
    heads = heads[heads["customer_id"].notna()].sort_values(
        ["customer_id", "ordered_at", "order_id"], kind="stable")
    rank = heads.groupby("customer_id", sort=False).cumcount(ascending=False)
    by_order = pd.Series(rank.to_numpy(), index=heads["order_id"].to_numpy())
    return orders["order_id"].map(by_order)


def next_basket_split(orders: pd.DataFrame, stage: Stage, *, holdout: Holdout = "time",
                      windows: Windows | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training lines, candidate next-basket lines) of a stage."""
    if holdout == "time":
        if windows is None:
            raise InputError("a time holdout needs the time windows")
        return split_orders(orders, windows, stage)
    rank = _order_rank_from_end(orders)
    target_rank = 0 if stage == "test" else 1
    return orders[rank > target_rank], orders[rank == target_rank]


def next_basket_cases(train: pd.DataFrame, later: pd.DataFrame,
                      items: Vocabulary) -> NextBasketCases:
    """Cases for customers with a history in ``train`` and an order in ``later`` (the first)."""
    later = later[later["customer_id"].notna()]
    heads = later.drop_duplicates("order_id").sort_values(
        ["customer_id", "ordered_at", "order_id"], kind="stable")
    first = heads.drop_duplicates("customer_id")["order_id"]
    basket = later[later["order_id"].isin(first)]
    hist = train[train["customer_id"].notna()]
    customers = pd.Index(sorted(set(basket["customer_id"].astype(str)) &
                                set(hist["customer_id"].astype(str))), dtype="string")
    hist = hist[hist["customer_id"].astype(str).isin(customers)]
    hist_pairs = hist[["customer_id", "order_id", "product_id"]].drop_duplicates()
    h_codes = items.lookup(hist_pairs["product_id"], on_unknown="mask")
    h_rows = customers.get_indexer(hist_pairs["customer_id"].astype(str))
    ok = h_codes >= 0
    history = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32),
                             (h_rows[ok], h_codes[ok])), shape=(len(customers), len(items)))
    history.sum_duplicates()
    basket = basket[basket["customer_id"].astype(str).isin(customers)]
    b_pairs = basket[["customer_id", "product_id"]].drop_duplicates()
    b_rows = customers.get_indexer(b_pairs["customer_id"].astype(str))
    sizes = np.bincount(b_rows, minlength=len(customers))
    b_codes = items.lookup(b_pairs["product_id"], on_unknown="mask")
    ok = b_codes >= 0
    targets = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32),
                             (b_rows[ok], b_codes[ok])), shape=(len(customers), len(items)))
    return NextBasketCases(customers=customers.to_numpy(dtype=object), history=history,
                           targets=targets, basket_sizes=sizes)
