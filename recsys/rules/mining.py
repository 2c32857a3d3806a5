"""Association rules from frequent itemsets, with exact thresholds and the interest measures.

Semantics (exact, integer arithmetic at every threshold):
- an order counts an itemset once; with N orders an itemset is frequent when
  ``count >= ceil(min_support * N)`` (``min_support`` read as the decimal it is written as);
- a rule A -> C is kept when ``count(A u C) >= min_confidence * count(A)`` and, with
  ``min_lift``, ``count(A u C) * N >= min_lift * count(A) * count(C)``, compared as fractions;
- single-item consequents by default (the arules convention); every non-empty proper subset
  as consequent with ``multi_consequent=True``; ``max_len`` bounds |A| + |C|;
- ``prune_redundant`` drops A -> c when some A' -> c with A' a proper non-empty subset of A
  has at least its confidence (see ``redundancy``).

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
from recsys.rules.itemsets import FrequentItemsets, frequent_itemsets, row_keys
from recsys.rules.redundancy import redundant_mask
from recsys.rules.significance import fisher_upper_tail
from recsys.vocab import Vocabulary

__all__ = [
    "MiningResult",
    "MiningReport",
    "mine",
    "mine_rules",
    "rules_from_itemsets",
    "min_count_for",
    "DEFAULT_MAX_BASKET_ITEMS",
    "RULE_COLUMNS",
    "annotate",
]

DEFAULT_MAX_BASKET_ITEMS = 1000

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


class _CountIndex:
    """Exact counts of frequent itemsets, looked up by (m, k) arrays of item codes."""

    def __init__(self, fi: FrequentItemsets, n_items: int) -> None:
        self._bits = max(1, int(n_items).bit_length())
        self._single = np.zeros(n_items, dtype=np.int64)
        ones, ones_counts = fi.of_length(1)
        self._single[ones[:, 0]] = ones_counts
        self._by_len: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for k in range(2, int(fi.lengths.max(initial=1)) + 1):
            sets, counts = fi.of_length(k)
            keys = row_keys(sets, self._bits)
            order = np.argsort(keys)
            self._by_len[k] = (keys[order], counts[order])

    def counts(self, sets: np.ndarray) -> np.ndarray:
        k = sets.shape[1]
        if k == 1:
            return self._single[sets[:, 0]]
        keys, counts = self._by_len[k]
        query = row_keys(sets, self._bits)
        pos = np.searchsorted(keys, query)
        pos = np.minimum(pos, len(keys) - 1)
        if not np.all(keys[pos] == query):  # impossible: subsets of frequent sets are frequent
            raise AssertionError("an itemset's subset was not among the frequent itemsets")
        return counts[pos]


def _list_column(codes: np.ndarray, lengths: np.ndarray, ids: pa.Array) -> pd.Series:
    """A list<string> column from (m, w) padded codes without building Python lists: the
    values are dictionary-encoded (codes into the product ids), so no string is copied."""
    values = pa.DictionaryArray.from_arrays(pa.array(codes[codes >= 0].astype(np.int32)), ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pd.Series(pd.arrays.ArrowExtensionArray(lists))


def _rule_candidates(fi: FrequentItemsets, index: _CountIndex, multi: bool,
                     conf: Fraction | None) -> tuple[np.ndarray, ...]:
    """Every split of each frequent itemset of >= 2 items into antecedent and consequent
    (kept only if it reaches ``conf``; all of them when ``conf`` is None).

    Returns padded antecedent and consequent codes (-1 after the items), count(A u C),
    count(A), count(C), |A| and |C|; counts come from the itemset index block by block, where
    the lengths are known."""
    width = fi.items.shape[1]
    parts: list[tuple[np.ndarray, ...]] = []
    for k in range(2, width + 1):
        sets, set_counts = fi.of_length(k)
        if not len(sets):
            continue
        masks = range(1, (1 << k) - 1) if multi else [(1 << k) - 1 - (1 << j) for j in range(k)]
        for mask in masks:  # a loop over split patterns (at most 2^max_len), not over rules
            a_pos = [j for j in range(k) if mask >> j & 1]
            c_pos = [j for j in range(k) if not mask >> j & 1]
            c_a = index.counts(sets[:, a_pos])
            rows = slice(None) if conf is None else _at_least(set_counts, c_a, conf)
            kept = sets[rows]
            a = np.full((len(kept), width), -1, np.int32)
            c = np.full((len(kept), width), -1, np.int32)
            a[:, : len(a_pos)] = kept[:, a_pos]
            c[:, : len(c_pos)] = kept[:, c_pos]
            parts.append((a, c, set_counts[rows], c_a[rows], index.counts(kept[:, c_pos]),
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


def mine(orders: pd.DataFrame, *, min_support: float | None = None, min_count: int | None = None,
         min_confidence: float = 0.0, min_lift: float | None = None, max_len: int = 2,
         multi_consequent: bool = False, max_basket_items: int | None = DEFAULT_MAX_BASKET_ITEMS,
         significance: bool = True, prune_redundant: bool = False) -> MiningResult:
    """Frequent itemsets and rules of ``orders`` (``order_id``, ``product_id`` columns)."""
    if (min_support is None) == (min_count is None):
        raise ConfigError("give exactly one of min_support and min_count")
    if max_len < 2:
        raise ConfigError(f"max_len must be at least 2 (antecedent plus consequent), got {max_len}")
    conf = _fraction(min_confidence, "min_confidence")
    if not 0 <= conf <= 1:
        raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if min_lift is not None:
        _fraction(min_lift, "min_lift")  # a bad value fails before any counting
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
    threshold = min_count if min_count is not None else min_count_for(min_support or 0, n)
    if threshold < 1:
        raise ConfigError(f"min_count must be at least 1, got {threshold}")
    fi = frequent_itemsets(x, threshold, max_len) if n else frequent_itemsets(
        sp.csr_matrix((0, x.shape[1]), dtype=np.int32), threshold, max_len)
    return rules_from_itemsets(
        fi, baskets.items, min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
        multi_consequent=multi_consequent, significance=significance,
        prune_redundant=prune_redundant, baskets_excluded=int(excluded.sum()),
        lines_excluded=lines_excluded, max_basket_items=max_basket_items)


def rules_from_itemsets(fi: FrequentItemsets, items: Vocabulary, *, min_confidence: float,
                        min_lift: float | None, max_len: int, multi_consequent: bool,
                        significance: bool, prune_redundant: bool, baskets_excluded: int,
                        lines_excluded: int, max_basket_items: int | None) -> MiningResult:
    """Rules, itemsets table and report from frequent itemsets counted elsewhere (``mine``, or
    the Spark engine); ``items`` decodes the itemsets' product codes."""
    conf = _fraction(min_confidence, "min_confidence")
    lift = _fraction(min_lift, "min_lift") if min_lift is not None else None
    n = fi.n_orders
    if prune_redundant and multi_consequent:
        raise ConfigError("redundancy pruning is defined for single-item consequents only")
    rules = _rules(fi, items, n, conf, lift, multi_consequent, significance, prune_redundant)
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
        rules=len(rules))
    return MiningResult(rules=rules, itemsets=itemsets, report=report)


def _rules(fi: FrequentItemsets, items: Vocabulary, n: int, conf: Fraction,
           lift: Fraction | None, multi: bool, significance: bool,
           prune_redundant: bool) -> pd.DataFrame:
    index = _CountIndex(fi, len(items))
    # Redundancy needs every candidate's confidence; otherwise filter block by block.
    ant, con, c_ac, c_a, c_c, ant_len, con_len = _rule_candidates(
        fi, index, multi, None if prune_redundant else conf)
    if prune_redundant:
        keep = ~redundant_mask(ant, con, c_ac, c_a, len(items)) & _at_least(c_ac, c_a, conf)
        ant, con, c_ac, c_a, c_c, ant_len, con_len = (
            x[keep] for x in (ant, con, c_ac, c_a, c_c, ant_len, con_len))
    if lift is not None and len(ant):
        keep = _at_least(c_ac * np.int64(n), c_a * c_c, lift)  # < 2^63 for N < 3e9
        ant, con, c_ac, c_a, c_c, ant_len, con_len = (
            x[keep] for x in (ant, con, c_ac, c_a, c_c, ant_len, con_len))
    ids = pa.array(items.ids, type=pa.string())
    table = pd.DataFrame({
        "antecedents": _list_column(ant, ant_len, ids),
        "consequents": _list_column(con, con_len, ids),
        "antecedent_count": c_a,
        "consequent_count": c_c,
        "count": c_ac,
        **_metrics(max(n, 1), c_ac, c_a, c_c, significance),
    })
    return table[RULE_COLUMNS]


def mine_rules(orders: pd.DataFrame, *, min_support: float | None = None,
               min_count: int | None = None, min_confidence: float = 0.0,
               min_lift: float | None = None, max_len: int = 2, multi_consequent: bool = False,
               max_basket_items: int | None = DEFAULT_MAX_BASKET_ITEMS,
               significance: bool = True, prune_redundant: bool = False) -> pd.DataFrame:
    """The rules DataFrame of ``orders`` (see the module docstring for the exact semantics)."""
    return mine(orders, min_support=min_support, min_count=min_count,
                min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
                multi_consequent=multi_consequent, max_basket_items=max_basket_items,
                significance=significance, prune_redundant=prune_redundant).rules


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
