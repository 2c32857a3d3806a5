"""The rules job: mine rules, itemsets, category-level rules, substitutes and bundles from the
canonical tables and write them (Parquet, with product names and categories when a catalog is
present) plus ``rules_report.json``. Run by `recsys mine-rules` and by `recsys run`.

The job reads the order lines only through ``RuleInputs``: ``LineInputs`` from the lines in
memory (the local engine), ``recsys.spark.rules.SparkRuleInputs`` from a Spark DataFrame (the
lines stay on the executors; the driver gets the mined itemsets, the order x product matrix's
codes and one median price per product)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from recsys import layout
from recsys.artifacts import save_parquet
from recsys.matrices import (
    InteractionWeights,
    item_vocabulary,
    order_item_matrix,
    view_sessions,
)
from recsys.rules.bounds import bounded_itemsets
from recsys.rules.bundles import (
    product_values,
    rank_bundles,
    substitute_pairs,
)
from recsys.rules.filters import category_baskets, filter_rules
from recsys.rules.mining import MiningResult, annotate, mine
from recsys.rules.settings import RulesConfig
from recsys.vocab import Vocabulary

__all__ = ["RulesConfig", "run_rules_job", "RuleInputs", "LineInputs"]

log = logging.getLogger(__name__)


def _names(codes_rows: pd.Series, ids: np.ndarray) -> pd.Series:
    lists = [ids[row[row >= 0]].tolist() for row in codes_rows]  # at most `top` bundles
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(lists, type=pa.list_(pa.string()))))


class RuleInputs(Protocol):
    """What the rules job needs of the order lines."""

    def mine(self, **thresholds: Any) -> MiningResult:
        """``recsys.rules.mining.mine`` of the product baskets."""

    def mine_categories(self, catalog: pd.DataFrame, depth: int | None,
                        **thresholds: Any) -> tuple[MiningResult, int]:
        """``mine`` of the category baskets (``recsys.rules.filters.category_baskets``) and
        the lines whose product has no category."""

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        """The binary order x product matrix (int32) over ``items``, one row per order (in
        any order)."""

    def median_prices(self) -> pd.Series | None:
        """The median unit price per product_id (None without a unit_price column)."""


class LineInputs:
    """The rules job's inputs from canonical order lines in memory."""

    def __init__(self, orders: pd.DataFrame) -> None:
        self.orders = orders

    def mine(self, **thresholds: Any) -> MiningResult:
        return mine(self.orders, **thresholds)

    def mine_categories(self, catalog: pd.DataFrame, depth: int | None,
                        **thresholds: Any) -> tuple[MiningResult, int]:
        baskets, uncategorised = category_baskets(self.orders, catalog, depth)
        return mine(baskets, **thresholds), uncategorised

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        return order_item_matrix(self.orders, items=items).matrix

    def median_prices(self) -> pd.Series | None:
        if "unit_price" not in self.orders:
            return None
        return self.orders.groupby("product_id")["unit_price"].median()


def run_rules_job(orders: pd.DataFrame | RuleInputs, events: pd.DataFrame | None,
                  catalog: pd.DataFrame | None, config: RulesConfig, out: Path, *,
                  weights: InteractionWeights | None = None,
                  items: Vocabulary | None = None,
                  sessions: Callable[[], sp.csr_matrix | None] | None = None
                  ) -> dict[str, Any]:
    """Mine and write every rules output into ``out``; returns the figures for the manifest.
    ``orders``: the canonical lines, or where they are read (``RuleInputs``); ``items``: the
    product vocabulary of catalog, orders and events (made from the three tables when not
    given, which needs the lines in memory); ``sessions``: where the session x product
    matrix of the view events comes from (None: no view events), given ``items``; by
    default made from ``events``."""
    out.mkdir(parents=True, exist_ok=True)
    lines = LineInputs(orders) if isinstance(orders, pd.DataFrame) else orders
    if items is None:
        if not isinstance(orders, pd.DataFrame):
            raise TypeError("run_rules_job: give items with order lines not in memory")
        items = item_vocabulary(catalog, orders, events)
    result = lines.mine(**config.thresholds())
    rules = filter_rules(result.rules, config.filter, catalog)
    save_parquet(annotate(rules, catalog), layout.RULES.at(out))
    save_parquet(result.itemsets, layout.ITEMSETS.at(out))
    metrics: dict[str, Any] = {**result.report.to_dict(), "rules": len(rules),
                               "rules_before_filters": len(result.rules)}

    category_rules = 0
    if config.category_depth and catalog is not None and "category" in catalog:
        cat_thresholds = {**config.thresholds(), "prune_redundant": False,
                          "multi_consequent": False, "max_len": min(config.max_len, 3)}
        mined, uncategorised = lines.mine_categories(catalog, config.category_depth,
                                                     **cat_thresholds)
        cat = mined.rules
        save_parquet(cat, layout.CATEGORY_RULES.at(out))
        category_rules = len(cat)
        metrics["category_lines_without_category"] = uncategorised
    metrics["category_rules"] = category_rules

    # Substitutes (needs view events) and bundles, over one item vocabulary.
    baskets = lines.baskets(items)
    if config.max_basket_items:
        baskets = baskets[np.diff(baskets.indptr) <= config.max_basket_items]
    substitutes = pd.DataFrame({  # no views: none, with the columns of substitute_pairs
        "a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64),
        "coviews": np.zeros(0, np.int64), "view_lift": np.zeros(0),
        "copurchases": np.zeros(0, np.int64), "purchase_lift": np.zeros(0)})
    views = sessions() if sessions is not None else view_sessions(events, items, weights)
    if views is not None:
        substitutes = substitute_pairs(views, baskets, config.substitutes)
    ids = items.ids
    sub_table = substitutes.assign(product_a=ids[substitutes["a"].to_numpy(np.int64)],
                                   product_b=ids[substitutes["b"].to_numpy(np.int64)])
    save_parquet(sub_table.drop(columns=["a", "b"]), layout.SUBSTITUTES.at(out))
    metrics["substitute_pairs"] = len(sub_table)

    bundle_cfg = config.bundles
    fi, bundle_warnings = bounded_itemsets(baskets, max(bundle_cfg.min_count,
                                                        result.report.min_count),
                                           bundle_cfg.max_size, bundle_cfg.max_itemsets)
    values = product_values(pd.Index(ids), catalog, lines.median_prices(),
                            bundle_cfg.use_margin)
    bundles = rank_bundles(fi, values, substitutes, bundle_cfg)
    table = pd.DataFrame({
        "products": _names(bundles["items"], ids),
        "size": bundles["size"], "count": bundles["count"],
        "support": bundles["count"] / max(baskets.shape[0], 1),
        "anchor": ids[bundles["anchor"].to_numpy(np.int64)] if len(bundles) else [],
        **{column: bundles[column] for column in (
            "anchor_confidence", "others_share", "expected_gain", "bundle_value",
            "min_pair_lift")},
    })
    save_parquet(annotate(table, catalog, columns=("products",)), layout.BUNDLES.at(out))
    metrics["bundles"] = len(table)
    metrics["bundle_min_count"] = fi.min_count
    metrics["warnings"] = [*result.report.warnings, *(f"bundles: {w}" for w in bundle_warnings)]
    layout.RULES_REPORT.at(out).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    log.info("rules: %s rules, %s bundles, %s substitute pairs", len(rules), len(table),
             len(sub_table))
    return metrics
