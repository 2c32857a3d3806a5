"""Association rules from frequent itemsets, with exact thresholds and the interest measures.

Semantics (exact, integer arithmetic at every threshold):
- an order counts an itemset once; with N orders an itemset is frequent when
  ``count >= max(min_count, ceil(min_support * N))`` (``min_support`` read as the decimal it
  is written as; either may be left out), so a small shop never mines itemsets of a handful
  of orders;
- a rule A -> C is kept when ``count(A u C) >= min_confidence * count(A)`` and, with
  ``min_lift``, ``count(A u C) * N >= min_lift * count(A) * count(C)``, compared as fractions;
- single-item consequents by default (the arules convention); every non-empty proper subset
  as consequent with ``multi_consequent=True``; ``max_len`` bounds |A| + |C|;
- ``prune_redundant`` drops A -> c when some A' -> c with A' a proper non-empty subset of A
  has at least its confidence (see ``redundancy``).
- ``max_p_value`` keeps rules whose one-sided Fisher p-value is at most that;
  ``max_per_antecedent`` keeps the most confident rules of each antecedent set;
- ``max_itemsets`` and ``max_rules`` bound memory: past them the count threshold rises, with
  a warning in the report; the rule count is known before any rule is built (``bounds``).

Orders with more than ``max_basket_items`` distinct products (bulk or wholesale orders) are
left out of mining altogether, N included, and reported: the number of itemsets such an order
contains grows as 2^size, and one of them says little about what shoppers buy together.

Measures (A = antecedent, C = consequent, s = support = count / N):
- support s(A u C) in [0, 1]; confidence s(AC)/s(A) in [0, 1];
- lift conf / s(C) in [0, inf), 1 = independent;
- leverage s(AC) - s(A) s(C) in [-0.25, 0.25], 0 = independent;
- conviction (1 - s(C)) / (1 - conf) in [0, inf], inf when conf = 1;
- zhangs_metric leverage / max(s(AC)(1 - s(A)), s(A)(s(C) - s(AC))) in [-1, 1];
- jaccard s(AC) / (s(A) + s(C) - s(AC)) in [0, 1]; kulczynski (conf(A->C) + conf(C->A)) / 2;
- fisher_p: one-sided Fisher exact test p-value of a positive association (hypergeometric
  P[X >= count(AC)] with N orders, count(C) successes and count(A) draws).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from recsys.errors import ConfigError
from recsys.matrices import order_item_matrix
from recsys.rules.bounds import (
    RULE_BYTES,
    bounded_itemsets,
    count_for_cap,
    rule_count_histogram,
    splits,
    top_per_antecedent,
)
from recsys.rules.itemsets import CountIndex, FrequentItemsets
from recsys.rules.redundancy import redundant_mask
from recsys.rules.significance import fisher_upper_tail, p_threshold
from recsys.vocab import Vocabulary

__all__ = [
    "MiningResult",
    "MiningReport",
    "mine",
    "mine_rules",
    "rules_from_itemsets",
    "check_settings",
    "min_count_of",
    "min_count_for",
    "DEFAULT_MAX_BASKET_ITEMS",
    "RULE_COLUMNS",
    "annotate",
]

DEFAULT_MAX_BASKET_ITEMS = 1000

log = logging.getLogger(__name__)

RULE_COLUMNS = [
    "antecedents", "consequents", "antecedent_count", "consequent_count", "count", "support",
    "confidence", "lift", "leverage", "conviction", "zhangs_metric", "jaccard", "kulczynski",
    "fisher_p",
]


@dataclass(frozen=True)
class MiningReport:
    """What the miner did: thresholds as counts, baskets left out, sizes of the output."""

    n_orders: int
    min_count: int
    min_confidence: float
    max_len: int
    baskets_excluded: int
    lines_excluded: int
    max_basket_items: int | None
    itemsets_by_length: dict[int, int] = field(default_factory=dict)
    rules: int = 0
    min_count_requested: int = 0  # before a cap raised it (``warnings`` say why)
    rules_estimated: int = 0  # counted before materialising, before pruning and per-antecedent cap
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out["itemsets_by_length"] = {str(k): v for k, v in self.itemsets_by_length.items()}
        return out


@dataclass(frozen=True)
class MiningResult:
    """Rules and frequent itemsets (product ids), and the report."""

    rules: pd.DataFrame
    itemsets: pd.DataFrame
    report: MiningReport


def _fraction(value: float | str | Fraction, name: str) -> Fraction:
    """A threshold as the exact decimal it is written as (0.1 is 1/10, not a binary float)."""
    try:
        frac = value if isinstance(value, Fraction) else Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    return frac


def min_count_for(min_support: float | str | Fraction, n_orders: int) -> int:
    """Smallest count whose support reaches ``min_support``: ceil(min_support * N), at least 1."""
    frac = _fraction(min_support, "min_support")
    if not 0 <= frac <= 1:
        raise ConfigError(f"min_support must be in [0, 1], got {min_support}")
    return max(1, math.ceil(frac * n_orders))


def _at_least(num: np.ndarray, den: np.ndarray, threshold: Fraction) -> np.ndarray:
    """Exactly ``num / den >= threshold`` for non-negative integer arrays (den > 0).

    Floats decide the clear cases; the few within rounding distance of the threshold are
    compared as Python integers.
    """
    p, q = threshold.numerator, threshold.denominator
    ratio = num.astype(np.float64) / den.astype(np.float64)
    approx = float(threshold)
    keep = ratio >= approx
    close = np.abs(ratio - approx) <= 1e-9 * max(abs(approx), 1e-300)
    for i in np.flatnonzero(close):  # only rules at the boundary, a handful
        keep[i] = int(num[i]) * q >= p * int(den[i])
    return keep


def _list_column(codes: np.ndarray, lengths: np.ndarray, ids: pa.Array) -> pd.Series:
    """A list<string> column from (m, w) padded codes without building Python lists: the
    values are dictionary-encoded (codes into the product ids), so no string is copied."""
    values = pa.DictionaryArray.from_arrays(pa.array(codes[codes >= 0].astype(np.int32)), ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pd.Series(pd.arrays.ArrowExtensionArray(lists))


@dataclass(frozen=True)
class _Criteria:
    """The per-rule thresholds, applied to count arrays: confidence, lift, Fisher p."""

    n: int
    conf: Fraction
    lift: Fraction | None
    max_p: float | None

    def passes(self, c_ac: np.ndarray, c_a: np.ndarray, c_c: np.ndarray) -> np.ndarray:
        keep = _at_least(c_ac, c_a, self.conf)
        if self.lift is not None:
            rows = np.flatnonzero(keep)  # c_ac * N < 2^63 for N < 3e9
            keep[rows] = _at_least(c_ac[rows] * np.int64(self.n), c_a[rows] * c_c[rows],
                                   self.lift)
        if self.max_p is not None:
            rows = np.flatnonzero(keep)
            keep[rows] = fisher_upper_tail(c_ac[rows], self.n, c_c[rows],
                                           c_a[rows]) <= p_threshold(self.max_p)
        return keep


def _rule_candidates(fi: FrequentItemsets, index: CountIndex, multi: bool,
                     criteria: _Criteria | None) -> tuple[np.ndarray, ...]:
    """Every split of each frequent itemset of >= 2 items into antecedent and consequent
    (kept only if it passes ``criteria``; all of them when ``criteria`` is None).

    Returns padded antecedent and consequent codes (-1 after the items), count(A u C),
    count(A), count(C), |A| and |C|; counts come from the itemset index block by block, where
    the lengths are known."""
    width = fi.items.shape[1]
    parts: list[tuple[np.ndarray, ...]] = []
    for sets, a_pos, c_pos, set_counts, c_a in splits(fi, index, multi):
        c_c = index.counts(sets[:, c_pos])
        rows = slice(None) if criteria is None else criteria.passes(set_counts, c_a, c_c)
        kept = sets[rows]
        a = np.full((len(kept), width), -1, np.int32)
        c = np.full((len(kept), width), -1, np.int32)
        a[:, : len(a_pos)] = kept[:, a_pos]
        c[:, : len(c_pos)] = kept[:, c_pos]
        parts.append((a, c, set_counts[rows], c_a[rows], c_c[rows],
                      np.full(len(kept), len(a_pos), np.int64),
                      np.full(len(kept), len(c_pos), np.int64)))
    if not parts:
        empty = np.empty((0, max(width, 1)), np.int32)
        none = np.empty(0, np.int64)
        return empty, empty.copy(), none, none, none, none, none
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _metrics(n: int, c_ac: np.ndarray, c_a: np.ndarray, c_c: np.ndarray,
             significance: bool) -> dict[str, np.ndarray]:
    nf = float(n)
    s_ac, s_a, s_c = c_ac / nf, c_a / nf, c_c / nf
    confidence = c_ac / c_a
    leverage = s_ac - s_a * s_c
    with np.errstate(divide="ignore", invalid="ignore"):
        conviction = np.where(c_ac == c_a, np.inf, (1.0 - s_c) / (1.0 - confidence))
        zhang_den = np.maximum(s_ac * (1.0 - s_a), s_a * (s_c - s_ac))
        zhang = np.where(zhang_den > 0, leverage / zhang_den, 0.0)
    out = {
        "support": s_ac,
        "confidence": confidence,
        "lift": (c_ac * nf) / (c_a.astype(np.float64) * c_c),
        "leverage": leverage,
        "conviction": conviction,
        "zhangs_metric": zhang,
        "jaccard": c_ac / (c_a + c_c - c_ac).astype(np.float64),
        "kulczynski": 0.5 * (c_ac / c_a + c_ac / c_c),
    }
    if significance:
        out["fisher_p"] = fisher_upper_tail(c_ac, n, c_c, c_a)
    else:
        out["fisher_p"] = np.full(len(c_ac), np.nan)
    return out


def min_count_of(min_support: float | None, min_count: int | None, n: int) -> int:
    """The count an itemset needs: the larger of ``min_count`` and ceil(min_support x N)."""
    if min_support is None and min_count is None:
        raise ConfigError("give min_support, min_count or both")
    if min_count is not None and min_count < 1:
        raise ConfigError(f"min_count must be at least 1, got {min_count}")
    by_support = min_count_for(min_support, n) if min_support is not None else 1
    return max(by_support, min_count or 1)


def _positive(value: int | None, name: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be at least 1 (or None for no cap), got {value}")


def mine(orders: pd.DataFrame, *, min_support: float | None = None, min_count: int | None = None,
         min_confidence: float = 0.0, min_lift: float | None = None, max_len: int = 2,
         multi_consequent: bool = False, max_basket_items: int | None = DEFAULT_MAX_BASKET_ITEMS,
         significance: bool = True, prune_redundant: bool = False,
         max_p_value: float | None = None, max_per_antecedent: int | None = None,
         max_itemsets: int | None = None, max_rules: int | None = None) -> MiningResult:
    """Frequent itemsets and rules of ``orders`` (``order_id``, ``product_id`` columns).

    An itemset needs both ``min_count`` orders and ``min_support``; ``max_p_value`` keeps
    rules with a Fisher p-value at most that; ``max_per_antecedent`` the most confident rules
    of each antecedent set; ``max_itemsets`` and ``max_rules`` bound memory (``bounds``)."""
    check_settings(max_len=max_len, min_confidence=min_confidence, min_lift=min_lift,
                   significance=significance, max_p_value=max_p_value,
                   max_per_antecedent=max_per_antecedent, max_itemsets=max_itemsets,
                   max_rules=max_rules, prune_redundant=prune_redundant,
                   multi_consequent=multi_consequent)
    baskets = order_item_matrix(orders[["order_id", "product_id"]])
    x: sp.csr_matrix = baskets.matrix
    sizes = np.diff(x.indptr)
    excluded = np.zeros(len(sizes), dtype=bool)
    lines_excluded = 0
    if max_basket_items is not None:
        excluded = sizes > max_basket_items
        if excluded.any():
            x = x[~excluded]
            # order lines (rows of ``orders``, repeated lines included) of the orders left out
            line_rows = baskets.rows.lookup(orders["order_id"], on_unknown="mask")
            lines_excluded = int(excluded[line_rows[line_rows >= 0]].sum())
    n = int(x.shape[0])
    requested = min_count_of(min_support, min_count, n)
    fi, warnings = bounded_itemsets(x if n else sp.csr_matrix((0, x.shape[1]), dtype=np.int32),
                                    requested, max_len, max_itemsets)
    return rules_from_itemsets(
        fi, baskets.items, min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
        multi_consequent=multi_consequent, significance=significance,
        prune_redundant=prune_redundant, max_p_value=max_p_value,
        max_per_antecedent=max_per_antecedent, max_rules=max_rules, requested=requested,
        warnings=warnings, baskets_excluded=int(excluded.sum()), lines_excluded=lines_excluded,
        max_basket_items=max_basket_items)


def check_settings(*, max_len: int, min_confidence: float, min_lift: float | None,
                   significance: bool, max_p_value: float | None,
                   max_per_antecedent: int | None, max_itemsets: int | None,
                   max_rules: int | None, prune_redundant: bool, multi_consequent: bool) -> None:
    """Fail before any counting on a setting the miners cannot use (ConfigError names it)."""
    if max_len < 2:
        raise ConfigError(f"max_len must be at least 2 (antecedent plus consequent), got {max_len}")
    conf = _fraction(min_confidence, "min_confidence")
    if not 0 <= conf <= 1:
        raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if min_lift is not None:
        _fraction(min_lift, "min_lift")
    if max_p_value is not None and not (0 <= max_p_value <= 1 and significance):
        raise ConfigError(f"max_p_value must be in [0, 1] and needs significance, got "
                          f"{max_p_value} (significance={significance})")
    for value, name in ((max_per_antecedent, "max_per_antecedent"),
                        (max_itemsets, "max_itemsets"), (max_rules, "max_rules")):
        _positive(value, name)
    if prune_redundant and multi_consequent:
        raise ConfigError("redundancy pruning is defined for single-item consequents only")


def rules_from_itemsets(fi: FrequentItemsets, items: Vocabulary, *, min_confidence: float,
                        min_lift: float | None, max_len: int, multi_consequent: bool,
                        significance: bool, prune_redundant: bool,
                        max_p_value: float | None = None, max_per_antecedent: int | None = None,
                        max_rules: int | None = None, requested: int | None = None,
                        warnings: list[str] | None = None, baskets_excluded: int = 0,
                        lines_excluded: int = 0,
                        max_basket_items: int | None = None) -> MiningResult:
    """Rules, itemsets table and report from frequent itemsets counted elsewhere (``mine``, or
    the Spark engine); ``items`` decodes the itemsets' product codes. Itemsets and rules come
    out in the itemsets' canonical order (``FrequentItemsets.canonical``, the same on both
    engines). The rules are counted before any is built: past ``max_rules`` the count
    threshold rises to the smallest that fits."""
    conf = _fraction(min_confidence, "min_confidence")
    lift = _fraction(min_lift, "min_lift") if min_lift is not None else None
    fi = fi.canonical()  # rules and itemsets in an order independent of the counting
    n = fi.n_orders
    warnings = list(warnings or [])
    criteria = _Criteria(max(n, 1), conf, lift, max_p_value)
    index = CountIndex(fi, len(items))
    hist = rule_count_histogram(fi, index, multi_consequent, criteria.passes)
    estimate = int(hist.sum())
    # Pruning builds every split first (it compares confidences): bound those instead.
    built = rule_count_histogram(fi, index, False, lambda c, *_: np.ones(len(c), bool)) if (
        prune_redundant) else hist
    what = "rules (before pruning)" if prune_redundant else "rules"
    if max_rules is not None and built.sum() > max_rules:
        count = count_for_cap(built, fi.min_count, max_rules)
        message = (f"{int(built.sum()):,} {what} at {fi.min_count:,} orders exceed max_rules "
                   f"{max_rules:,} (about {built.sum() * RULE_BYTES / 2**30:.1f} GiB); rules now "
                   f"need {count:,} orders ({int(built[count:].sum()):,} {what}). Raise "
                   f"max_rules or min_count to choose yourself")
        log.warning(message)
        warnings.append(message)
        fi = fi.at_least(count)
        index = CountIndex(fi, len(items))
    rules = _rules(fi, index, items, criteria, multi_consequent, significance,
                   prune_redundant, max_per_antecedent)
    itemsets = pd.DataFrame({
        "items": _list_column(fi.items, fi.lengths.astype(np.int64),
                              pa.array(items.ids, type=pa.string())),
        "length": fi.lengths.astype(np.int64),
        "count": fi.counts,
        "support": fi.counts / max(n, 1),
    })
    report = MiningReport(
        n_orders=n, min_count=fi.min_count, min_confidence=float(conf), max_len=max_len,
        baskets_excluded=baskets_excluded, lines_excluded=lines_excluded,
        max_basket_items=max_basket_items,
        itemsets_by_length={int(k): int(v) for k, v in
                            zip(*np.unique(fi.lengths, return_counts=True), strict=True)},
        rules=len(rules), min_count_requested=fi.min_count if requested is None else requested,
        rules_estimated=estimate, warnings=warnings)
    return MiningResult(rules=rules, itemsets=itemsets, report=report)


def _rules(fi: FrequentItemsets, index: CountIndex, items: Vocabulary, criteria: _Criteria,
           multi: bool, significance: bool, prune_redundant: bool,
           max_per_antecedent: int | None) -> pd.DataFrame:
    # Redundancy needs every candidate's confidence; otherwise filter block by block.
    ant, con, c_ac, c_a, c_c, ant_len, con_len = _rule_candidates(
        fi, index, multi, None if prune_redundant else criteria)
    if prune_redundant:
        keep = ~redundant_mask(ant, con, c_ac, c_a, len(items))
        keep[keep] = criteria.passes(c_ac[keep], c_a[keep], c_c[keep])
        ant, con, c_ac, c_a, c_c, ant_len, con_len = (
            x[keep] for x in (ant, con, c_ac, c_a, c_c, ant_len, con_len))
    if max_per_antecedent is not None and len(ant):
        keep = top_per_antecedent(ant, con, c_ac, c_a, len(items), max_per_antecedent)
        ant, con, c_ac, c_a, c_c, ant_len, con_len = (
            x[keep] for x in (ant, con, c_ac, c_a, c_c, ant_len, con_len))
    ids = pa.array(items.ids, type=pa.string())
    table = pd.DataFrame({
        "antecedents": _list_column(ant, ant_len, ids),
        "consequents": _list_column(con, con_len, ids),
        "antecedent_count": c_a,
        "consequent_count": c_c,
        "count": c_ac,
        **_metrics(criteria.n, c_ac, c_a, c_c, significance),
    })
    return table[RULE_COLUMNS]


def mine_rules(orders: pd.DataFrame, *, min_support: float | None = None,
               min_count: int | None = None, min_confidence: float = 0.0,
               min_lift: float | None = None, max_len: int = 2, multi_consequent: bool = False,
               max_basket_items: int | None = DEFAULT_MAX_BASKET_ITEMS,
               significance: bool = True, prune_redundant: bool = False,
               max_p_value: float | None = None, max_per_antecedent: int | None = None,
               max_itemsets: int | None = None, max_rules: int | None = None) -> pd.DataFrame:
    """The rules DataFrame of ``orders`` (see ``mine`` and the module docstring)."""
    return mine(orders, min_support=min_support, min_count=min_count,
                min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
                multi_consequent=multi_consequent, max_basket_items=max_basket_items,
                significance=significance, prune_redundant=prune_redundant,
                max_p_value=max_p_value, max_per_antecedent=max_per_antecedent,
                max_itemsets=max_itemsets, max_rules=max_rules).rules


def annotate(table: pd.DataFrame, catalog: pd.DataFrame | None,
             columns: tuple[str, ...] = ("antecedents", "consequents")) -> pd.DataFrame:
    """Add ``<column>_names`` and ``<column>_categories`` (lists, from the catalog) beside
    each list-of-product-ids column; ids the catalog lacks get their id as name."""
    if catalog is None or table.empty:
        return table
    names = catalog.set_index("product_id")["name"] if "name" in catalog else None
    cats = catalog.set_index("product_id")["category"] if "category" in catalog else None
    out = table.copy()
    for column in columns:
        lists = pa.chunked_array([pa.array(table[column].array)]).combine_chunks()
        flat = pd.Series(lists.flatten().to_numpy(zero_copy_only=False))
        offsets = lists.offsets
        for label, source in (("names", names), ("categories", cats)):
            if source is None:
                continue
            looked_up = flat.map(source)
            if label == "names":
                looked_up = looked_up.fillna(flat)
            values = pa.array(looked_up.astype("string").to_numpy(dtype=object,
                                                                   na_value=None),
                              type=pa.string())
            out[f"{column[:-1]}_{label}"] = pd.Series(pd.arrays.ArrowExtensionArray(
                pa.ListArray.from_arrays(offsets, values)), index=table.index)
    return out
