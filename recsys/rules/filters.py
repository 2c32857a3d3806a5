"""Which mined rules the rules job keeps (``[rules.filter]``): thresholds, product
include/exclude lists and category constraints on either side; and category-level baskets for
rules between categories.

Include lists restrict a side to the listed products (every product of that side must be
listed); exclude lists drop rules with any listed product on that side. Category constraints
keep a rule when every product of that side lies in one of the given category subtrees
(matched as in ``recsys.rules.query``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.errors import InputError
from recsys.rules.query import in_category, side_counts

__all__ = ["RuleFilterConfig", "filter_rules", "category_baskets", "product_categories"]


class RuleFilterConfig(BaseModel):
    """Which mined rules to keep; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_lift: float | None = Field(None, ge=0)
    min_count: int | None = Field(None, ge=1)
    antecedent_include: list[str] = Field(default_factory=list)
    antecedent_exclude: list[str] = Field(default_factory=list)
    consequent_include: list[str] = Field(default_factory=list)
    consequent_exclude: list[str] = Field(default_factory=list)
    antecedent_categories: list[str] = Field(default_factory=list)
    consequent_categories: list[str] = Field(default_factory=list)


def filter_rules(rules: pd.DataFrame, rule_filter: RuleFilterConfig,
                 catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rules that pass ``rule_filter`` (category constraints need the catalog)."""
    keep = np.ones(len(rules), dtype=bool)
    f = rule_filter
    if f.min_lift is not None:
        keep &= rules["lift"].to_numpy() >= f.min_lift
    if f.min_count is not None:
        keep &= rules["count"].to_numpy() >= f.min_count
    sides = {"antecedent": "antecedents", "consequent": "consequents"}
    for side, column in sides.items():
        include: list[str] = getattr(f, f"{side}_include")
        exclude: list[str] = getattr(f, f"{side}_exclude")
        roots: list[str] = getattr(f, f"{side}_categories")
        if include:
            ids = pd.Index(include)
            size, good = side_counts(rules[column], np.ones(len(ids), bool), ids)
            keep &= size == good
        if exclude:
            ids = pd.Index(exclude)
            _, bad = side_counts(rules[column], np.ones(len(ids), bool), ids)
            keep &= bad == 0
        if roots:
            if catalog is None or "category" not in catalog:
                raise InputError(f"{side} category constraints need a catalog with categories")
            ids = pd.Index(catalog["product_id"])
            size, good = side_counts(rules[column], in_category(catalog["category"], roots), ids)
            keep &= size == good
    return rules[keep].reset_index(drop=True)


def product_categories(catalog: pd.DataFrame, depth: int | None = None) -> pd.Series:
    """Each catalog product's category, cut to ``depth`` path levels (None = the full path),
    indexed by product_id; NA where the catalog gives none."""
    if "category" not in catalog:
        raise InputError("category-level rules need a catalog with a category column")
    category = catalog.set_index("product_id")["category"]
    if depth is not None:
        category = category.str.split(" > ").str[:depth].str.join(" > ")
    return category


def category_baskets(orders: pd.DataFrame, catalog: pd.DataFrame,
                     depth: int | None = None) -> tuple[pd.DataFrame, int]:
    """Orders with each product replaced by its category (``product_categories``), for
    category-level rules. Returns (orders, lines without a category)."""
    category = orders["product_id"].map(product_categories(catalog, depth))
    known = category.notna().to_numpy()
    out = pd.DataFrame({"order_id": orders["order_id"][known],
                        "product_id": category[known].astype("string")})
    return out.reset_index(drop=True), int((~known).sum())
