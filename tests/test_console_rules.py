"""The rules browser's table against brute force: rule keys, statuses, filters, sort, pages,
on a hand-made table with a known answer and on 300,000 generated rules."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recsys.console.rules import PAGE_SIZE, RuleBrowserQuery, RuleBrowserTable, RuleStatuses
from recsys.rules.mining import RULE_COLUMNS
from recsys.serving.served_rules import rule_key

METRIC_COLUMNS = RULE_COLUMNS[2:]


def _lists(values: list[list[str]]) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, pa.list_(pa.string()))))


def rules_frame(antecedents: list[list[str]], consequents: list[list[str]],
                rng: np.random.Generator) -> pd.DataFrame:
    """A rules table in the shape of rules.parquet, with random measures."""
    n = len(antecedents)
    frame = pd.DataFrame({"antecedents": _lists(antecedents), "consequents": _lists(consequents)})
    for column in METRIC_COLUMNS:
        frame[column] = rng.random(n)
    frame["count"] = rng.integers(1, 50, n)  # ties, to check the stable order
    frame.loc[rng.random(n) < 0.05, "conviction"] = np.inf
    frame.loc[rng.random(n) < 0.05, "fisher_p"] = np.nan
    return frame


def pylists(column: pd.Series) -> list[list[str]]:
    """A list column as Python lists (fast for the Arrow-backed columns of rules.parquet)."""
    return pa.array(column.array).to_pylist()


def brute_keys(frame: pd.DataFrame) -> list[str]:
    return ["+".join(sorted(a)) + "->" + "+".join(sorted(c)) for a, c in zip(
        pylists(frame["antecedents"]), pylists(frame["consequents"]), strict=True)]


@dataclass
class Rules:
    """A rules table with what brute force needs: names, categories, keys, product sets."""

    frame: pd.DataFrame
    names: dict[str, str]
    categories: dict[str, str]

    def __post_init__(self) -> None:
        self.keys = brute_keys(self.frame)
        self.products = [{*a, *c} for a, c in zip(pylists(self.frame["antecedents"]),
                                                   pylists(self.frame["consequents"]),
                                                   strict=True)]


def brute_select(rules: Rules, f: RuleBrowserQuery, status: dict[str, str] | None = None
                 ) -> list[str]:
    """The keys the filter should keep, in order: plain pandas, and Python sets of products."""
    frame, names, categories, keys = rules.frame, rules.names, rules.categories, rules.keys
    keep = np.ones(len(frame), dtype=bool)
    for metric, threshold in (("support", f.min_support), ("confidence", f.min_confidence),
                              ("lift", f.min_lift)):
        if threshold is not None:
            keep &= (frame[metric] >= threshold).to_numpy()
    if f.status:
        keep &= np.array([(status or {}).get(k, "new") == f.status for k in keys])
    products = rules.products
    everything = set(names) | set(categories)
    if f.q:
        hit = {p for p in everything
               if f.q.lower() in p.lower() or f.q.lower() in names.get(p, p).lower()}
        keep &= np.array([bool(hit & rule) for rule in products])
    if f.category:
        inside = {p for p in everything if categories.get(p, "") == f.category
                  or categories.get(p, "").startswith(f.category + " > ")}
        keep &= np.array([bool(inside & rule) for rule in products])
    kept = frame.assign(key=keys)[keep]
    kept = kept.sort_values(f.sort, ascending=f.order == "asc", kind="stable",
                            na_position="last")
    return kept["key"].tolist()


# -- a hand-made table with a known answer --------------------------------------------------------

NAMES = {"a": "Green Tea", "b": "Ceramic Mug", "c": "Kettle", "d": "Tea Spoon"}
CATEGORIES = {"a": "Food > Tea", "b": "Home > Kitchen > Mugs", "c": "Home > Kitchen",
              "d": "Home > Kitchenware"}


@pytest.fixture
def small() -> tuple[pd.DataFrame, RuleBrowserTable]:
    frame = rules_frame([["b", "a"], ["a"], ["c"], ["d"], ["a"]], [["c"], ["b"], ["a"], ["a"],
                                                                  ["c"]],
                        np.random.default_rng(0))
    frame["lift"] = [3.0, 2.0, 2.0, 0.5, 1.0]
    return frame, RuleBrowserTable(frame, "v1", NAMES, CATEGORIES)


def test_rule_keys_are_the_api_keys(small: tuple[pd.DataFrame, RuleBrowserTable]) -> None:
    _, table = small
    assert table.keys.tolist() == ["a+b->c", "a->b", "c->a", "d->a", "a->c"]
    assert table.keys[0] == rule_key(["b", "a"], "c")
    assert table.row_of_key["c->a"] == 2
    assert table.rows_with("a", "antecedent").tolist() == [0, 1, 4]
    assert table.rows_with("a", "consequent").tolist() == [2, 3]
    assert table.rows_with("zzz", "antecedent").tolist() == []


def test_filters_sort_and_statuses(small: tuple[pd.DataFrame, RuleBrowserTable]) -> None:
    _, table = small
    new = table.statuses(RuleStatuses())

    def keys(**fields: Any) -> list[str]:
        return table.keys[table.select(RuleBrowserQuery(**fields), statuses)].tolist()

    statuses = new
    assert keys() == ["a+b->c", "a->b", "c->a", "a->c", "d->a"]  # lift, ties in file order
    assert keys(order="asc") == ["d->a", "a->c", "a->b", "c->a", "a+b->c"]
    assert keys(q="MUG") == ["a+b->c", "a->b"]  # by name, case-insensitive
    assert keys(q="d") == ["d->a"]  # by id
    assert keys(category="Home > Kitchen") == ["a+b->c", "a->b", "c->a", "a->c"]  # not "-ware"
    assert keys(min_lift=2) == ["a+b->c", "a->b", "c->a"]
    decided = RuleStatuses.from_decisions([
        {"id": 1, "kind": "block_rule", "rule_key": "a->b"},
        {"id": 2, "kind": "approve_rule", "rule_key": "a->b"},  # later: approved wins
        {"id": 3, "kind": "approve_rule", "rule_key": "c->a"},
        {"id": 4, "kind": "block_rule", "rule_key": "d->a"},
        {"id": 5, "kind": "pin", "seed_id": "b", "product_id": "c", "position": 1},
        {"id": 6, "kind": "pin", "seed_id": "d", "product_id": "a", "position": 1},
        {"id": 7, "kind": "block_rule", "rule_key": "gone->x"},  # not in this version
    ])
    statuses = table.statuses(decided)
    assert keys(status="approved") == ["a->b", "c->a"]
    assert keys(status="pinned") == ["a+b->c"]  # b is one of its antecedents
    assert keys(status="rejected") == ["d->a"]  # rejected beats pinned
    assert keys(status="new") == ["a->c"]


def test_filter_fields_and_blanks() -> None:
    f = RuleBrowserQuery.model_validate({"q": " mug ", "min_lift": "", "min_support": "0.01",
                                   "page": "2", "csrf_token": "ignored"})
    assert f.q == "mug" and f.min_lift is None and f.min_support == 0.01
    assert f.query() == "q=mug&min_support=0.01&page=2"
    assert f.query(page=1) == "q=mug&min_support=0.01"
    assert RuleBrowserQuery().query() == ""


def test_empty_table(small: tuple[pd.DataFrame, RuleBrowserTable]) -> None:
    frame, _ = small
    table = RuleBrowserTable(frame.iloc[:0], "v0", {}, {})
    assert len(table) == 0
    assert table.select(RuleBrowserQuery(q="a", category="Home", status="new"),
                        table.statuses(RuleStatuses())).tolist() == []


# -- 300,000 rules -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> Rules:
    rng = np.random.default_rng(7)
    n, n_products = 301_000, 6_000
    ids = np.array([f"P{i:05d}" for i in range(n_products)], dtype=object)
    first = rng.integers(0, n_products, n)
    second = rng.integers(0, n_products, n)
    has_second = (rng.random(n) < 0.3) & (second != first)
    consequent = (first + 1 + rng.integers(0, n_products - 1, n)) % n_products
    # one rule per (antecedent set, consequent), consequent not among the antecedents
    low = np.where(has_second, np.minimum(first, second), first)
    high = np.where(has_second, np.maximum(first, second), -1)
    identity = (low * (n_products + 1) + high + 1) * n_products + consequent
    unique = ~pd.Series(identity).duplicated().to_numpy() & ~(
        has_second & (second == consequent))
    rows = np.flatnonzero(unique)[:300_000]
    assert len(rows) == 300_000
    a, b, two = ids[first[rows]].tolist(), ids[second[rows]].tolist(), has_second[rows].tolist()
    frame = rules_frame([[x, y] if both else [x] for x, y, both in zip(a, b, two, strict=True)],
                        [[c] for c in ids[consequent[rows]].tolist()], rng)
    colours = ["Red", "Blue", "Green", "Grey"]
    return Rules(frame, names={p: f"Item {i} {colours[i % 4]}" for i, p in enumerate(ids)},
                 categories={p: f"Dept {i % 7} > Aisle {i % 13}" for i, p in enumerate(ids)})


def test_300k_rules_filter_sort_and_page(big: Rules) -> None:
    start = time.perf_counter()
    table = RuleBrowserTable(big.frame, "big", big.names, big.categories)
    loaded = time.perf_counter() - start
    decided = RuleStatuses.from_decisions(
        [{"id": i, "kind": "block_rule", "rule_key": k} for i, k in enumerate(
            table.keys[:: 1000].tolist())])
    statuses = table.statuses(decided)
    filters = [RuleBrowserQuery(min_lift=0.5, min_confidence=0.3, sort="confidence", page=3),
               RuleBrowserQuery(q="p0012", sort="count", order="asc"),
               RuleBrowserQuery(q="green", category="Dept 3", min_support=0.9),
               RuleBrowserQuery(status="rejected", sort="fisher_p")]
    timings = []
    for f in filters:
        start = time.perf_counter()
        rows = table.select(f, statuses)
        page = table.describe(rows[(f.page - 1) * PAGE_SIZE: f.page * PAGE_SIZE], statuses,
                              decided)
        timings.append(time.perf_counter() - start)
        expected = brute_select(big, f, {k: "rejected" for k in decided.decided})
        assert table.keys[rows].tolist() == expected, f
        assert [r["key"] for r in page] == expected[(f.page - 1) * PAGE_SIZE: f.page * PAGE_SIZE]
        assert len(expected) > 0, f
    print(f"\n300,000 rules: table built in {loaded:.2f} s; filtered page in "
          + ", ".join(f"{t * 1000:.0f} ms" for t in timings)
          + " (first query of a sort order includes its one-off sort)")
