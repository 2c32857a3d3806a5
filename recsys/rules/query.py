"""Rule queries, written once: category-subtree matching, "rules with a product on a side",
and the merchandiser's selection (threshold, product, category, sort, top).

Used by the rules job's filters (``rules/filters.py``), the exports (``select_rules``) and the
console's rules browser. A category path matches itself and every path below it, on whole
`` > `` components, ignoring case and the spacing around ``>``: "Home > Kitchen" holds
"home>kitchen > Mugs", not "Home > Kitchenware".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.errors import InputError
from recsys.rules.mining import RULE_COLUMNS

__all__ = ["PATH_SEP", "SIDES", "category_path", "in_category", "string_lists", "rows_where",
           "side_counts", "check_rules", "select_rules"]

#: Separator between the components of a category path: "Home > Kitchen > Mugs".
PATH_SEP = " > "
#: The two sides of a rule; a side's ids are in the column ``f"{side}s"``.
SIDES = ("antecedent", "consequent")


def category_path(text: str) -> str:
    """A category path as matched: lower-cased, one `` > `` between trimmed components."""
    parts = [p.strip().lower() for p in text.split(">")]
    if not all(parts):
        raise InputError(f"category {text!r} is not a category path like 'Home > Kitchen'")
    return PATH_SEP.join(parts)


def _normalise(values: pa.Array) -> pa.Array:
    spaced = pc.replace_substring_regex(values, pattern=r"\s*>\s*", replacement=PATH_SEP)
    return pc.utf8_lower(pc.utf8_trim_whitespace(spaced))


def in_category(categories: pd.Series | pa.Array, roots: Sequence[str]) -> np.ndarray:
    """Whether each category path lies in one of the ``roots`` subtrees (missing: False)."""
    values = categories if isinstance(categories, pa.Array) else pa.array(
        pd.Series(categories, dtype="string").to_numpy(object, na_value=None), type=pa.string())
    paths = _normalise(values.cast(pa.string()))
    hit = np.zeros(len(paths), dtype=bool)
    for root in roots:  # a handful of roots
        wanted = category_path(root)
        inside = pc.or_(pc.equal(paths, wanted), pc.starts_with(paths, wanted + PATH_SEP))
        hit |= pc.fill_null(inside, False).to_numpy(zero_copy_only=False)
    return hit


def string_lists(column: pd.Series) -> pa.ListArray:
    """A list column (Arrow-backed from Parquet, or Python lists) as one list<string> array."""
    arr = pa.array(column.array) if isinstance(column.dtype, pd.ArrowDtype) else pa.array(
        column.to_numpy(dtype=object), type=pa.list_(pa.string()))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_list(arr.type) or arr.type.value_type != pa.string():
        arr = arr.cast(pa.list_(pa.string()))
    return arr


def rows_where(lists: pa.ListArray, hit: Callable[[pa.Array], np.ndarray]) -> np.ndarray:
    """Mask of the rows whose list holds a value for which ``hit`` (over the flat values) is
    true."""
    parents = pc.list_parent_indices(lists).to_numpy()
    mask = np.zeros(len(lists), dtype=bool)
    mask[parents[hit(lists.flatten())]] = True
    return mask


def side_counts(column: pd.Series, allowed: np.ndarray,
                ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Per rule: (products on that side, of which ``allowed``, a mask over ``ids``)."""
    lists = string_lists(column)
    flat = pd.Index(lists.flatten().to_numpy(zero_copy_only=False))
    parents = pc.list_parent_indices(lists).to_numpy()
    pos = ids.get_indexer(flat)
    ok = np.where(pos >= 0, allowed[np.maximum(pos, 0)], False)
    size = np.bincount(parents, minlength=len(column))
    good = np.bincount(parents, weights=ok, minlength=len(column)).astype(np.int64)
    return size, good


def check_rules(rules: pd.DataFrame) -> None:
    """Rules must carry every column of ``RULE_COLUMNS`` (the output of ``mine_rules``)."""
    if not isinstance(rules, pd.DataFrame):
        raise InputError(f"rules must be a pandas DataFrame, got {type(rules).__name__}")
    missing = [c for c in RULE_COLUMNS if c not in rules.columns]
    if missing:
        raise InputError(f"rules DataFrame lacks column(s) {', '.join(missing)}; pass the "
                         "output of recsys.rules.mining.mine_rules (optionally annotate()d)")


def select_rules(rules: pd.DataFrame, *, min_lift: float | None = None,
                 product: str | None = None, category: str | None = None,
                 top: int | None = None, sort_by: str = "lift") -> pd.DataFrame:
    """Rules filtered and sorted for a merchandiser.

    ``product``: rules with that product id on either side. ``category``: rules with a product
    in that category subtree on either side (module docstring); needs the ``*_categories``
    columns of ``annotate``. Sorted by ``sort_by`` descending (``fisher_p`` ascending: the
    smallest p-value is the strongest evidence), ties by ``count`` descending; then the first
    ``top``.
    """
    check_rules(rules)
    if sort_by not in rules.columns or not pd.api.types.is_numeric_dtype(rules[sort_by]):
        numeric = [c for c in rules.columns if pd.api.types.is_numeric_dtype(rules[c])]
        raise InputError(f"cannot sort rules by {sort_by!r}; use one of {', '.join(numeric)}")
    if top is not None and top < 0:
        raise InputError(f"top must be zero or more, got {top}")
    keep = np.ones(len(rules), dtype=bool)
    if min_lift is not None:
        keep &= (rules["lift"] >= min_lift).to_numpy()
    if product is not None:
        for_product = np.zeros(len(rules), dtype=bool)
        for side in SIDES:
            for_product |= rows_where(string_lists(rules[f"{side}s"]), lambda v: pc.fill_null(
                pc.equal(v, product), False).to_numpy(zero_copy_only=False))
        keep &= for_product
    if category is not None:
        keep &= _in_category(rules, category)
    out = rules[keep]
    ascending = sort_by == "fisher_p"
    by, order = ([sort_by], [ascending]) if sort_by == "count" else (
        [sort_by, "count"], [ascending, False])
    out = out.sort_values(by, ascending=order, kind="stable", na_position="last")
    if top is not None:
        out = out.head(top)
    return out.reset_index(drop=True)


def _in_category(rules: pd.DataFrame, category: str) -> np.ndarray:
    """Rows with a product in the ``category`` subtree on either side."""
    missing = [f"{side}_categories" for side in SIDES
               if f"{side}_categories" not in rules.columns]
    if missing:
        raise InputError(f"filtering by category needs the {' and '.join(missing)} column(s); "
                         "run recsys.rules.mining.annotate(rules, catalog) with a catalog that "
                         "has a 'category' column first")
    category_path(category)  # a bad path fails before any work
    either = np.zeros(len(rules), dtype=bool)
    for side in SIDES:
        either |= rows_where(string_lists(rules[f"{side}_categories"]),
                             lambda values: in_category(values, [category]))
    return either
