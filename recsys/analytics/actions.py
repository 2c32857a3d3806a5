"""Action lists of the nightly customer_value job: what a shop can do with customer value.

- replenishment: (customer, consumable) pairs due within ``due_within_days`` or overdue, by
  the customer's own median repurchase gap (after ``own_cycle_min_intervals`` repeats) or the
  product's cycle (recsys.repurchase); expected date = last purchase day + cycle. Pairs overdue
  by more than ``max_overdue_cycles`` cycles are dropped: that customer moved on; so are
  products the catalog marks out of stock or inactive (a reminder for what cannot be bought).
  Merchandisers' blocks and stock changes after the job apply where the list is shown (the
  console, ``recsys.serving.actions``) and exported (``export-customers --list``).
- recommendations: per customer the top ``recommendations`` products they never bought,
  by ALS score (the models job's factors) or, without factors, by number of orders
  (best sellers); never an out-of-stock or inactive product.
- win-back: declining and at-risk customers, most predicted CLV first (so a shop spends on
  those worth it), with ``offers`` products: their own repeat products (bought in two orders
  or more, most orders first), then their recommendations.
- high-value: the top ``high_value_share`` of customers by predicted CLV, for loyalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.analytics.aggregates import (
    BoughtCodes,
    ClvAggregates,
    PairFilter,
    bought_codes,
    customer_products,
)
from recsys.analytics.lifecycle import STAGES, stage_flows
from recsys.analytics.settings import ActionsConfig, AnalyticsConfig
from recsys.artifact_io import load_npz, load_parquet, save_parquet
from recsys.vocab import Vocabulary

__all__ = ["replenishment_list", "recommendations_table", "winback_list", "high_value_list",
           "replenishment_of_pairs", "recommendations_of_pairs", "winback_of_pairs", "load_cycles", "write_action_lists", "ACTION_FILES", "REC_PREFIX", "ROW_GROUP_ROWS"]

REC_PREFIX = "rec_"  # recommendations table columns rec_1 .. rec_k
_EPOCH_DAY = np.datetime64("1970-01-01", "D")


def _known_lines(orders: pd.DataFrame, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """The dated lines of known customers (up to ``end``)."""
    keep = orders["customer_id"].notna() & orders["ordered_at"].notna()
    if end is not None:
        keep &= orders["ordered_at"] <= end
    return orders[keep]


def replenishment_list(orders: pd.DataFrame, cycles: pd.DataFrame, end: pd.Timestamp,
                       config: ActionsConfig, catalog: pd.DataFrame | None = None
                       ) -> pd.DataFrame:
    """Due and overdue (customer, consumable) pairs from canonical order lines and the product
    cycles (product_id, cycle_days), never a product ``catalog`` marks out of stock or
    inactive. Columns customer_id, product_id, last_purchase, purchase_days, cycle_days,
    cycle_source (own | product), expected_date, days_overdue (negative: days until due),
    status (due | overdue); most overdue first."""
    return replenishment_of_pairs(customer_products(_known_lines(orders, end)), cycles, end,
                                  config, catalog)


def replenishment_of_pairs(pairs: pd.DataFrame, cycles: pd.DataFrame, end: pd.Timestamp,
                           config: ActionsConfig, catalog: pd.DataFrame | None = None
                           ) -> pd.DataFrame:
    """:func:`replenishment_list` from the per-(customer, product) table
    (recsys.analytics.aggregates.customer_products of the lines up to ``end``)."""
    pairs = pairs[_sellable(pairs, cycles, catalog)]
    cycle, use_own, expected, overdue = _cycles(pairs, cycles, end, config)
    chosen = _due(cycle, overdue, config)
    last_day = pairs["last_day"].to_numpy(np.int64)
    table = pd.DataFrame({
        "customer_id": pairs["customer_id"].to_numpy()[chosen],
        "product_id": pairs["product_id"].to_numpy()[chosen],
        "last_purchase": _EPOCH_DAY + last_day[chosen].astype("timedelta64[D]"),
        "purchase_days": pairs["purchase_days"].to_numpy(np.int64)[chosen],
        "cycle_days": cycle[chosen],
        "cycle_source": np.where(use_own[chosen], "own", "product").astype(object),
        "expected_date": _EPOCH_DAY + expected[chosen].astype("timedelta64[D]"),
        "days_overdue": overdue[chosen].astype(np.int64),
    })
    table["status"] = np.where(table["days_overdue"] > 0, "overdue", "due").astype(object)
    table["last_purchase"] = table["last_purchase"].astype("datetime64[ns]")
    table["expected_date"] = table["expected_date"].astype("datetime64[ns]")
    return table.sort_values(["days_overdue", "customer_id", "product_id"],
                             ascending=[False, True, True], kind="stable").reset_index(drop=True)


def replenishment_due(pairs: pd.DataFrame, cycles: pd.DataFrame, end: pd.Timestamp,
                      config: ActionsConfig, catalog: pd.DataFrame | None = None) -> np.ndarray:
    """Per row of the per-(customer, product) table: does :func:`replenishment_of_pairs` list
    it (a filter that runs where the table is, e.g. on Spark's executors)?"""
    sellable = _sellable(pairs, cycles, catalog)
    out = np.zeros(len(pairs), dtype=bool)
    if sellable.any():
        cycle, _, _, overdue = _cycles(pairs[sellable], cycles, end, config)
        out[sellable] = _due(cycle, overdue, config)
    return out


def _due(cycle: np.ndarray, overdue: np.ndarray, config: ActionsConfig) -> np.ndarray:
    """Due within ``due_within_days``, and not overdue by more than ``max_overdue_cycles``."""
    return (overdue >= -config.due_within_days) & (overdue <= config.max_overdue_cycles * cycle)


def _sellable(pairs: pd.DataFrame, cycles: pd.DataFrame, catalog: pd.DataFrame | None
              ) -> np.ndarray:
    """Per pair: its product has a cycle and the catalog does not mark it unavailable."""
    sellable = cycles["product_id"]
    if catalog is not None:
        items = Vocabulary.from_ids(catalog["product_id"].astype(str))
        sellable = sellable[~sellable.astype(str).isin(items.ids[_unavailable(catalog, items)])]
    return pairs["product_id"].isin(sellable).to_numpy(bool)


def _cycles(pairs: pd.DataFrame, cycles: pd.DataFrame, end: pd.Timestamp,
            config: ActionsConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair (each with a product cycle): the cycle used (days), whether it is the
    customer's own, the expected day (days since 1970-01-01) and the days overdue."""
    typical = cycles.set_index("product_id")["cycle_days"].astype(np.float64)
    product_cycle = typical.reindex(pairs["product_id"]).to_numpy()
    use_own = pairs["gaps"].to_numpy() >= config.own_cycle_min_intervals
    cycle = np.maximum(np.where(use_own, pairs["median_gap"].to_numpy(np.float64),
                                product_cycle), 1.0)
    expected = pairs["last_day"].to_numpy(np.int64) + np.round(cycle).astype(np.int64)
    overdue = (pd.Timestamp(end).to_datetime64().astype("datetime64[D]").astype(np.int64)
               - expected)
    return cycle, use_own, expected, overdue


def _unavailable(catalog: pd.DataFrame | None, items: Vocabulary) -> np.ndarray:
    """Per product code: out of stock or inactive in the catalog."""
    out = np.zeros(len(items), dtype=bool)
    if catalog is None:
        return out
    bad = np.zeros(len(catalog), dtype=bool)
    for column in ("in_stock", "is_active"):
        if column in catalog:
            bad |= catalog[column].eq(False).to_numpy()  # a missing flag keeps the product
    codes = items.lookup(catalog["product_id"][bad], on_unknown="mask")
    out[codes[codes >= 0]] = True
    return out


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row the columns of the k highest scores, best first; equal scores: the lower column
    first (which of several products tied at the k-th place is kept is not specified)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    chosen = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -chosen), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recommendations_table(orders: pd.DataFrame, customer_ids: pd.Series,
                          catalog: pd.DataFrame | None, k: int,
                          model_dir: Path | None = None) -> pd.DataFrame:
    """customer_id (as given, same order) and rec_1 .. rec_k: products the customer never
    bought, best first (ALS scores from ``model_dir``'s ALS factors when present, else best
    sellers by order lines); None where fewer than k products qualify."""
    return recommendations_of_pairs(customer_products(_known_lines(orders)), customer_ids,
                                    catalog, k, model_dir)


def recommendations_of_pairs(pairs: pd.DataFrame, customer_ids: pd.Series,
                             catalog: pd.DataFrame | None, k: int,
                             model_dir: Path | None = None) -> pd.DataFrame:
    """:func:`recommendations_table` from the per-(customer, product) table
    (recsys.analytics.aggregates.customer_products)."""
    factors = als_factors(model_dir)
    codes = bought_codes(pairs, *((factors.rows, factors.items) if factors else (None, None)))
    return recommendations_of_codes(codes, customer_ids, catalog, k, factors)


@dataclass(frozen=True)
class AlsFactors:
    """The models job's ALS factors (float32) and their vocabularies."""

    rows: Vocabulary
    items: Vocabulary
    user: np.ndarray
    item: np.ndarray


def als_factors(model_dir: Path | None) -> AlsFactors | None:
    """The ALS factors in ``model_dir``, or None when it holds none."""
    if model_dir is None or not layout.ALS.at(model_dir).exists():
        return None
    als = load_npz(layout.ALS.at(model_dir))
    return AlsFactors(rows=Vocabulary.load(layout.CUSTOMERS.at(model_dir)),
                      items=Vocabulary.load(layout.ITEMS.at(model_dir)),
                      user=als["user_factors"].astype(np.float32),
                      item=als["item_factors"].astype(np.float32))


def recommendations_of_codes(codes: BoughtCodes, customer_ids: pd.Series,
                             catalog: pd.DataFrame | None, k: int,
                             factors: AlsFactors | None = None) -> pd.DataFrame:
    """:func:`recommendations_table` from the bought pairs as codes (in ``factors``'
    vocabularies when given)."""
    rows, items = codes.rows, codes.items
    user, item = (factors.user, factors.item) if factors is not None else (None, None)
    ok = (codes.item >= 0) & (codes.row >= 0)
    bought = sp.csr_matrix((np.ones(int(ok.sum()), np.float32),
                            (codes.row[ok], codes.item[ok])), shape=(len(rows), len(items)))
    known = codes.item >= 0
    popularity = np.bincount(codes.item[known], weights=codes.lines[known].astype(np.float64),
                             minlength=len(items)).astype(np.float32)
    blocked = _unavailable(catalog, items)
    wanted = rows.lookup(customer_ids.astype(str), on_unknown="mask")
    k_eff = min(k, len(items))
    top = np.full((len(wanted), k), -1, dtype=np.int64)
    chunk = max(1, 2**22 // max(len(items), 1))
    for start in range(0, len(wanted), chunk):
        part = wanted[start:start + chunk]
        known_rows = np.maximum(part, 0)
        if user is not None and item is not None:
            scores = user[known_rows] @ item.T
            scores[part < 0] = popularity / max(float(popularity.max(initial=0)), 1.0)
        else:
            scores = np.broadcast_to(popularity, (len(part), len(items))).copy()
        scores[:, blocked] = -np.inf
        seen = sp.diags((part >= 0).astype(np.float32)) @ bought[known_rows]
        seen.eliminate_zeros()
        r, c = seen.nonzero()
        scores[r, c] = -np.inf
        best = _top_k(scores, k_eff)
        best[np.take_along_axis(scores, best, axis=1) == -np.inf] = -1
        top[start:start + len(part), :k_eff] = best
    ids = np.asarray(items.ids, dtype=object)
    table = pd.DataFrame({"customer_id": customer_ids.to_numpy()})
    for i in range(k):
        column = ids[np.maximum(top[:, i], 0)]
        column[top[:, i] < 0] = None
        table[f"{REC_PREFIX}{i + 1}"] = column
    return table


def winback_list(customers: pd.DataFrame, stages: pd.DataFrame, orders: pd.DataFrame,
                 recommendations: pd.DataFrame, config: ActionsConfig,
                 catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """Declining and at-risk customers, most predicted CLV first: customer_id, stage,
    predicted_clv, p_alive, historical_clv, churn_risk, offer_1 .. offer_n (own repeat
    products first, then recommendations; never a product the catalog marks out of stock or
    inactive), offers_own (how many offers are their own). ``orders``: canonical lines."""
    return winback_of_pairs(customers, stages, customer_products(_known_lines(orders)),
                            recommendations, config, catalog)


def winback_of_pairs(customers: pd.DataFrame, stages: pd.DataFrame, pairs: pd.DataFrame,
                     recommendations: pd.DataFrame, config: ActionsConfig,
                     catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`winback_list` from the per-(customer, product) table
    (recsys.analytics.aggregates.customer_products)."""
    table = customers[["customer_id", "predicted_clv", "p_alive", "historical_clv",
                       "churn_risk"]].merge(stages[["customer_id", "stage"]], on="customer_id",
                                            validate="one_to_one")
    table = table[table["stage"].isin(["declining", "at_risk"])]
    table = table.sort_values(["predicted_clv", "customer_id"], ascending=[False, True],
                              kind="stable")
    own = pairs[pairs["customer_id"].isin(table["customer_id"]) & (pairs["orders"] >= 2)]
    if catalog is not None:
        items = Vocabulary.from_ids(catalog["product_id"].astype(str))
        gone = items.ids[_unavailable(catalog, items)]
        own = own[~own["product_id"].astype(str).isin(gone)]
    own = own.rename(columns={"orders": "n", "last_ordered_at": "last"})
    own = own.sort_values(["customer_id", "n", "last", "product_id"],
                          ascending=[True, False, False, True], kind="stable")
    own = own.assign(rank=own.groupby("customer_id").cumcount())
    own = own[own["rank"] < config.offers]
    rec_columns = [c for c in recommendations.columns if c.startswith(REC_PREFIX)]
    recs = recommendations[recommendations["customer_id"].isin(table["customer_id"])].melt(
        id_vars="customer_id", value_vars=rec_columns, var_name="col", value_name="product_id")
    recs = recs[recs["product_id"].notna()]
    recs["rank"] = config.offers + recs["col"].str.slice(len(REC_PREFIX)).astype(int)
    offers = pd.concat([own[["customer_id", "product_id", "rank"]],
                        recs[["customer_id", "product_id", "rank"]]], ignore_index=True)
    offers = offers.sort_values(["customer_id", "rank"], kind="stable")
    offers["slot"] = offers.groupby("customer_id").cumcount() + 1
    wide = offers[offers["slot"] <= config.offers].pivot(index="customer_id", columns="slot",
                                                         values="product_id")
    wide = wide.reindex(columns=range(1, config.offers + 1))
    wide.columns = [f"offer_{i}" for i in wide.columns]
    table = table.join(wide, on="customer_id")
    counts = own.groupby("customer_id").size()
    table["offers_own"] = counts.reindex(table["customer_id"]).fillna(0).astype(np.int64).to_numpy()
    return table.reset_index(drop=True)


def high_value_list(customers: pd.DataFrame, stages: pd.DataFrame,
                    config: ActionsConfig) -> pd.DataFrame:
    """The top ``high_value_share`` of customers (at least one) by predicted CLV: rank,
    customer_id, predicted_clv, historical_clv, p_alive, segment, stage."""
    n = max(1, math.ceil(config.high_value_share * len(customers))) if len(customers) else 0
    table = customers[["customer_id", "predicted_clv", "historical_clv", "p_alive", "segment"]]
    table = table.merge(stages[["customer_id", "stage"]], on="customer_id", validate="one_to_one")
    table = table.sort_values(["predicted_clv", "customer_id"], ascending=[False, True],
                              kind="stable").head(n).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1, dtype=np.int64))
    return table


def load_cycles(model_dir: Path | None) -> pd.DataFrame | None:
    """The models job's repurchase cycles in ``model_dir``, or None when it wrote none."""
    if model_dir is None or not layout.REPURCHASE.at(model_dir).exists():
        return None
    return load_parquet(layout.REPURCHASE.at(model_dir))


def _flag_columns(catalog: pd.DataFrame | None) -> pd.DataFrame | None:
    """The catalog's product_id and availability flags (what the pair filters need of it)."""
    if catalog is None:
        return None
    return catalog[[c for c in ("product_id", "in_stock", "is_active") if c in catalog]]


def _repeat_of(pairs: pd.DataFrame, customers: pd.Series) -> np.ndarray:
    """Per pair: one of ``customers``, bought in two orders or more (win-back's own offers)."""
    return ((pairs["orders"].to_numpy() >= 2)
            & pairs["customer_id"].isin(customers).to_numpy(bool))


def _any_of(pairs: pd.DataFrame, keeps: tuple[PairFilter, ...]) -> np.ndarray:
    """Per pair: does one of ``keeps`` keep it."""
    out = np.zeros(len(pairs), dtype=bool)
    for keep in keeps:
        out |= keep(pairs)
    return out


#: Row group size of the per-customer tables, so that exports stream them in bounded memory.
ROW_GROUP_ROWS = 100_000
#: The files :func:`write_action_lists` writes into the job's analytics folder.
ACTION_FILES = tuple(f.name for f in layout.ACTION_FILES)


def write_action_lists(customers: pd.DataFrame, stages: pd.DataFrame,
                       aggregates: ClvAggregates, catalog: pd.DataFrame | None,
                       end: pd.Timestamp, out: Path, *, config: AnalyticsConfig,
                       previous: Path | None = None,
                       model_dir: Path | None = None) -> dict[str, Any]:
    """Lifecycle stages and flows, recommendations and the action lists, written to ``out``
    (``ACTION_FILES``; stages and recommendations in the row order of ``customers``).

    ``stages``: the lifecycle stages of ``customers`` (same order); ``aggregates``: the lines'
    aggregations (recsys.analytics.aggregates); ``previous``: the previous artifact's
    analytics folder (for the flows); ``model_dir``: the folder with the models job's ALS
    factors and repurchase cycles."""
    before_path = None if previous is None else previous / layout.LIFECYCLE.name
    before = load_parquet(before_path) if before_path and before_path.exists() else None
    flows = stage_flows(before, stages)
    cycles = load_cycles(model_dir)
    if cycles is None:
        cycles = aggregates.repurchase_cycles(end)
    factors = als_factors(model_dir)
    codes = aggregates.bought_codes(
        end, *((factors.rows, factors.items) if factors is not None else (None, None)))
    recs = recommendations_of_codes(codes, customers["customer_id"], catalog,
                                    config.actions.recommendations, factors)
    del codes  # per-pair arrays, freed before the next pass over the pairs
    # the pairs the two lists use, in one pass over the (customer, product) table
    due = partial(replenishment_due, cycles=cycles, end=end, config=config.actions,
                  catalog=_flag_columns(catalog))
    lapsing = stages.loc[stages["stage"].isin(["declining", "at_risk"]), "customer_id"]
    repeat = partial(_repeat_of, customers=lapsing)
    used = aggregates.customer_products(end, keep=partial(_any_of, keeps=(due, repeat)))
    tables = {layout.LIFECYCLE: stages, layout.LIFECYCLE_FLOWS: flows,
              layout.CUSTOMER_RECOMMENDATIONS: recs,
              layout.REPLENISHMENT: replenishment_of_pairs(used[due(used)], cycles, end,
                                                           config.actions, catalog),
              layout.WINBACK: winback_of_pairs(customers, stages, used[repeat(used)], recs,
                                               config.actions, catalog),
              layout.HIGH_VALUE: high_value_list(customers, stages, config.actions)}
    for entry, table in tables.items():
        save_parquet(table, out / entry.name, row_group_size=ROW_GROUP_ROWS)
    counts = stages["stage"].value_counts()
    return {"stages": {s: int(counts.get(s, 0)) for s in STAGES},
            "stage_flows_from_previous": before is not None,
            "replenishment_pairs": len(tables[layout.REPLENISHMENT]),
            "winback_customers": len(tables[layout.WINBACK]),
            "high_value_customers": len(tables[layout.HIGH_VALUE])}
