"""Association rules against a brute-force reference (Hypothesis) and hand-made known answers.

The reference enumerates every itemset of every order (an order counts an itemset once), keeps
them and the rules by exact ``Fraction`` comparison, and computes each measure from its formula
in the module docstring of ``recsys.rules.mining``; fisher_p is checked against scipy.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import hypergeom

from recsys.errors import ConfigError
from recsys.rules.mining import RULE_COLUMNS, min_count_for, mine, mine_rules

# Ids whose string order differs from any "natural" order, to check that lists come sorted.
ITEMS = ["10", "9", "A", "Z", "a", "b-2", "bb", "x"]
SUPPORTS = ["0.05", "0.1", "0.125", "0.2", "0.25", "0.333", "0.5"]
CONFIDENCES = ["0", "0.1", "0.2", "0.25", "0.333", "0.4", "0.5", "0.6", "0.75", "1"]
LIFTS = [None, "0.5", "1", "1.25", "1.5", "2", "3"]
MEASURES = ["support", "confidence", "lift", "leverage", "conviction", "zhangs_metric",
            "jaccard", "kulczynski"]

Lines = list[tuple[int, str]]


def _orders(lines: Lines) -> pd.DataFrame:
    """An orders table (one row per order line; repeated lines allowed) from (order, item)."""
    return pd.DataFrame({"order_id": [f"o{o}" for o, _ in lines],
                         "product_id": [item for _, item in lines]}, dtype="string")


@dataclass
class Reference:
    n: int
    min_count: int
    itemsets: dict[tuple[str, ...], int]
    rules: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[int, int, int]]
    baskets_excluded: int
    lines_excluded: int


def _brute(lines: Lines, *, min_support: str | None, min_count: int | None, min_confidence: str,
           min_lift: str | None, max_len: int, multi: bool,
           max_basket_items: int | None) -> Reference:
    baskets: dict[int, set[str]] = {}
    n_lines: Counter[int] = Counter()
    for order, item in lines:
        baskets.setdefault(order, set()).add(item)
        n_lines[order] += 1
    excluded = {o for o, b in baskets.items()
                if max_basket_items is not None and len(b) > max_basket_items}
    kept = [b for o, b in baskets.items() if o not in excluded]
    n = len(kept)
    by_support = max(1, math.ceil(Fraction(min_support) * n)) if min_support is not None else 1
    min_count = max(by_support, min_count or 1)
    counts: Counter[tuple[str, ...]] = Counter()
    for basket in kept:
        for k in range(1, max_len + 1):
            counts.update(itertools.combinations(sorted(basket), k))
    frequent = {s: c for s, c in counts.items() if c >= min_count}
    conf = Fraction(min_confidence)
    lift = Fraction(min_lift) if min_lift is not None else None
    rules = {}
    for itemset, c_ac in frequent.items():
        for size in range(1, len(itemset)) if multi else ([1] if len(itemset) > 1 else []):
            for consequent in itertools.combinations(itemset, size):
                antecedent = tuple(x for x in itemset if x not in consequent)
                c_a, c_c = frequent[antecedent], frequent[consequent]
                if c_ac < conf * c_a:
                    continue
                if lift is not None and c_ac * n < lift * c_a * c_c:
                    continue
                rules[(antecedent, consequent)] = (c_a, c_c, c_ac)
    return Reference(n=n, min_count=min_count, itemsets=frequent, rules=rules,
                     baskets_excluded=len(excluded),
                     lines_excluded=sum(n_lines[o] for o in excluded))


def _expected_measures(n: int, c_a: int, c_c: int, c_ac: int) -> dict[str, float]:
    """Each measure from its formula in the module docstring, in exact arithmetic."""
    s_ac, s_a, s_c = Fraction(c_ac, n), Fraction(c_a, n), Fraction(c_c, n)
    conf = s_ac / s_a
    leverage = s_ac - s_a * s_c
    zhang_den = max(s_ac * (1 - s_a), s_a * (s_c - s_ac))
    if zhang_den == 0:  # A in every order and C only with A: 0/0, reported as 0
        assert leverage == 0
    return {
        "support": float(s_ac),
        "confidence": float(conf),
        "lift": float(conf / s_c),
        "leverage": float(leverage),
        "conviction": math.inf if conf == 1 else float((1 - s_c) / (1 - conf)),
        "zhangs_metric": float(leverage / zhang_den) if zhang_den else 0.0,
        "jaccard": float(s_ac / (s_a + s_c - s_ac)),
        "kulczynski": float((conf + s_ac / s_c) / 2),
    }


def _rules_by_key(rules: pd.DataFrame) -> dict[tuple[tuple[str, ...], tuple[str, ...]],
                                              dict[str, Any]]:
    out: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, Any]] = {}
    records = rules.to_dict("records")
    for row in records:
        ant, con = list(row["antecedents"]), list(row["consequents"])
        assert ant == sorted(ant) and con == sorted(con), (ant, con)
        assert ant and con and not set(ant) & set(con), (ant, con)
        key = (tuple(ant), tuple(con))
        assert key not in out, f"rule {key} listed twice"
        out[key] = row
    return out


def _check_rule(row: dict[str, object], n: int, counts: tuple[int, int, int]) -> None:
    c_a, c_c, c_ac = counts
    assert (row["antecedent_count"], row["consequent_count"], row["count"]) == counts
    expected = _expected_measures(n, c_a, c_c, c_ac)
    for name in MEASURES:
        assert row[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
    assert row["fisher_p"] == pytest.approx(hypergeom.sf(c_ac - 1, n, c_c, c_a),
                                            rel=1e-6, abs=1e-15)


def _lines_of(baskets: list[list[str]]) -> Lines:
    return [(order, item) for order, basket in enumerate(baskets) for item in basket]


# Orders of 1..10 lines over 8 items (so repeated lines are common), lines shuffled.
lines_strategy = st.lists(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=10),
                          min_size=1, max_size=30).map(_lines_of).flatmap(st.permutations)
threshold_strategy = st.one_of(
    st.tuples(st.sampled_from(SUPPORTS), st.none()),
    st.tuples(st.none(), st.integers(1, 5)),
    st.tuples(st.sampled_from(SUPPORTS), st.integers(1, 5)),  # both: the larger count
)


@given(lines=lines_strategy, threshold=threshold_strategy,
       min_confidence=st.sampled_from(CONFIDENCES), min_lift=st.sampled_from(LIFTS),
       max_len=st.integers(2, 4), multi=st.booleans(),
       max_basket_items=st.sampled_from([None, 2, 3, 4, 6, 1000]))
@settings(max_examples=100, deadline=None)
def test_matches_brute_force(lines: Lines, threshold: tuple[str | None, int | None],
                             min_confidence: str, min_lift: str | None, max_len: int,
                             multi: bool, max_basket_items: int | None) -> None:
    min_support, min_count = threshold
    expected = _brute(lines, min_support=min_support, min_count=min_count,
                      min_confidence=min_confidence, min_lift=min_lift, max_len=max_len,
                      multi=multi, max_basket_items=max_basket_items)
    thresholds: dict[str, Any] = {
        "min_support": float(min_support) if min_support is not None else None,
        "min_count": min_count, "min_confidence": float(min_confidence),
        "min_lift": float(min_lift) if min_lift is not None else None,
        "max_len": max_len, "multi_consequent": multi, "max_basket_items": max_basket_items}
    result = mine(_orders(lines), **thresholds)

    assert list(result.rules.columns) == RULE_COLUMNS
    got = _rules_by_key(result.rules)
    assert set(got) == set(expected.rules)
    for key, counts in expected.rules.items():
        _check_rule(got[key], expected.n, counts)
        assert len(key[0]) + len(key[1]) <= max_len
        assert multi or len(key[1]) == 1

    itemsets = {tuple(items): count for items, count in
                zip(result.itemsets["items"], result.itemsets["count"], strict=True)}
    assert len(itemsets) == len(result.itemsets)
    assert itemsets == expected.itemsets
    assert (result.itemsets["length"] == result.itemsets["items"].map(len)).all()
    # the canonical order: itemsets by length, then by their products (the rules follow
    # them); the same frames, row for row, from the lines in another order
    keys = [(len(items), tuple(items)) for items in result.itemsets["items"]]
    assert keys == sorted(keys)
    shuffled = mine(_orders([(-o, item) for o, item in reversed(lines)]), **thresholds)
    pd.testing.assert_frame_equal(shuffled.rules, result.rules)
    pd.testing.assert_frame_equal(shuffled.itemsets, result.itemsets)

    report = result.report
    assert report.n_orders == expected.n
    assert report.min_count == expected.min_count
    assert report.baskets_excluded == expected.baskets_excluded
    assert report.lines_excluded == expected.lines_excluded
    assert report.rules == len(expected.rules)
    assert report.itemsets_by_length == dict(Counter(len(s) for s in expected.itemsets))


def test_known_answer_with_repeated_lines() -> None:
    """Four orders by hand; o1 lists mug twice and still counts it once."""
    lines = [(1, "mug"), (1, "tea"), (1, "mug"), (2, "mug"), (2, "tea"), (3, "mug"),
             (4, "tea"), (4, "spoon")]
    rules = mine_rules(_orders(lines), min_count=2, min_confidence=0.0)
    got = _rules_by_key(rules)
    assert set(got) == {(("mug",), ("tea",)), (("tea",), ("mug",))}
    mug_tea = got[(("mug",), ("tea",))]
    assert (mug_tea["antecedent_count"], mug_tea["consequent_count"], mug_tea["count"]) == (3, 3, 2)
    assert mug_tea["confidence"] == pytest.approx(2 / 3)
    assert mug_tea["lift"] == pytest.approx((2 / 3) / (3 / 4))
    assert mug_tea["support"] == pytest.approx(0.5)


def test_confidence_exactly_at_the_threshold_is_kept() -> None:
    """count(a) = 4, count(a, b) = 3 over 5 orders: confidence exactly 0.75. Via supports in
    floats (3/5) / (4/5) is just below 0.75, which would drop the rule."""
    assert (3 / 5) / (4 / 5) < 0.75
    lines = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b"), (4, "a"), (5, "b")]
    kept = _rules_by_key(mine_rules(_orders(lines), min_count=1, min_confidence=0.75))
    assert set(kept) == {(("a",), ("b",)), (("b",), ("a",))}
    assert kept[(("a",), ("b",))]["confidence"] == pytest.approx(0.75)
    assert mine_rules(_orders(lines), min_count=1, min_confidence=0.7500001).empty

    half = [(1, "a"), (1, "b"), (2, "a"), (3, "c")]  # a -> b: 1 of 2, b -> a: 1 of 1
    at_half = _rules_by_key(mine_rules(_orders(half), min_count=1, min_confidence=0.5))
    assert set(at_half) == {(("a",), ("b",)), (("b",), ("a",))}
    above = _rules_by_key(mine_rules(_orders(half), min_count=1, min_confidence=0.51))
    assert set(above) == {(("b",), ("a",))}


def test_min_lift_exactly_at_the_threshold_is_kept() -> None:
    # a and b always together in 2 of 4 orders: lift = 2 * 4 / (2 * 2) = 2 exactly.
    lines = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "c"), (4, "d")]
    kept = _rules_by_key(mine_rules(_orders(lines), min_count=1, min_lift=2.0))
    assert set(kept) == {(("a",), ("b",)), (("b",), ("a",))}
    assert kept[(("a",), ("b",))]["lift"] == pytest.approx(2.0)
    assert mine_rules(_orders(lines), min_count=1, min_lift=2.0000001).empty
    assert mine_rules(_orders(lines), min_count=1, min_lift="2.01").empty  # type: ignore[arg-type]

    # 5 orders, count(a) = 4, count(b) = 3, count(a, b) = 3: lift = 15 / 12 = 1.25 exactly,
    # while ((3/5) / (4/5)) / (3/5) in floats falls just below 1.25.
    assert ((3 / 5) / (4 / 5)) / (3 / 5) < 1.25
    lines = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b"), (4, "a"), (5, "c")]
    kept = _rules_by_key(mine_rules(_orders(lines), min_count=1, min_lift=1.25))
    assert set(kept) == {(("a",), ("b",)), (("b",), ("a",))}
    assert mine_rules(_orders(lines), min_count=1, min_lift=1.2500001).empty


@pytest.mark.parametrize(("multi", "expected_rules"), [(False, 20 + 30), (True, 20 + 60)])
def test_max_len_bounds_antecedent_plus_consequent(multi: bool, expected_rules: int) -> None:
    """One order of five items, everything frequent: C(5,2) pairs give 2 rules each, C(5,3)
    triples give 3 single-consequent rules each, or 6 with multi-item consequents."""
    lines = [(1, item) for item in ["e", "d", "c", "b", "a"]]
    rules = mine_rules(_orders(lines), min_count=1, max_len=3, multi_consequent=multi)
    assert len(rules) == expected_rules
    lengths = rules["antecedents"].map(len) + rules["consequents"].map(len)
    assert lengths.max() == 3 and lengths.min() == 2
    assert (rules["antecedents"].map(lambda a: list(a) == sorted(a))).all()
    assert (rules["consequents"].map(lambda c: list(c) == sorted(c))).all()
    if not multi:
        assert (rules["consequents"].map(len) == 1).all()


def test_max_basket_items_leaves_big_orders_out() -> None:
    lines = [(1, "a"), (1, "b"), (1, "a"),                         # 2 items, 3 lines
             (2, "a"), (2, "b"), (2, "c"), (2, "d"), (2, "c"),     # 4 items, 5 lines
             (3, "a"), (3, "b"), (4, "c")]
    result = mine(_orders(lines), min_count=1, max_basket_items=3)
    report = result.report
    assert (report.n_orders, report.baskets_excluded, report.lines_excluded) == (3, 1, 5)
    assert report.max_basket_items == 3
    got = _rules_by_key(result.rules)
    assert set(got) == {(("a",), ("b",)), (("b",), ("a",))}  # c and d never meet again
    row = got[(("a",), ("b",))]
    assert (row["antecedent_count"], row["count"]) == (2, 2)
    assert row["support"] == pytest.approx(2 / 3)
    itemsets = {tuple(i): c for i, c in zip(result.itemsets["items"], result.itemsets["count"],
                                             strict=True)}
    assert itemsets[("c",)] == 1 and ("d",) not in itemsets

    # At the limit an order stays in.
    at_limit = mine(_orders(lines), min_count=1, max_basket_items=4).report
    assert (at_limit.n_orders, at_limit.baskets_excluded, at_limit.lines_excluded) == (4, 0, 0)
    unlimited = mine(_orders(lines), min_count=1, max_basket_items=None).report
    assert unlimited.n_orders == 4 and unlimited.baskets_excluded == 0


@pytest.mark.parametrize(("min_support", "n_orders", "expected"), [
    (0.0005, 22103, 12),   # 11.0515
    (0.1, 30, 3),
    (0.07, 100, 7),        # 0.07 * 100 == 7.000000000000001 in floats
    (0.14, 700, 98),       # 98.00000000000001
    (0.56, 3000, 1680),    # 1680.0000000000002
    (0.333, 1000, 333),    # read as 333/1000, not 1/3
    ("0.28", 100, 28),
    (Fraction(1, 3), 1000, 334),
    (0.5, 7, 4),
    (1, 9, 9),
    (0, 50, 1),            # at least 1
    (0.05, 0, 1),
])
def test_min_count_for_is_exact(min_support: float | str | Fraction, n_orders: int,
                                expected: int) -> None:
    assert min_count_for(min_support, n_orders) == expected


def test_min_count_for_floats_would_be_wrong() -> None:
    """The cases above are not vacuous: the float product rounds up past the integer."""
    assert math.ceil(0.07 * 100) == 8 and math.ceil(0.56 * 3000) == 1681


@pytest.mark.parametrize("bad", [-0.1, 1.5, "abc", "", float("nan"), float("inf"), None])
def test_min_count_for_rejects_bad_values(bad: object) -> None:
    with pytest.raises(ConfigError):
        min_count_for(bad, 100)  # type: ignore[arg-type]


SMALL = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a")]


@pytest.mark.parametrize("kwargs", [
    {},                                               # neither threshold
    {"min_count": 0},
    {"min_count": -3},
    {"min_support": 1.2},
    {"min_support": -0.5},
    {"min_support": "lots"},
    {"min_count": 1, "min_confidence": 1.01},
    {"min_count": 1, "min_confidence": -0.1},
    {"min_count": 1, "min_confidence": "high"},
    {"min_count": 1, "min_confidence": float("nan")},
    {"min_count": 1, "min_lift": "big"},
    {"min_count": 1, "max_len": 1},
    {"min_count": 1, "max_p_value": 1.5},
    {"min_count": 1, "max_p_value": 0.05, "significance": False},
    {"min_count": 1, "max_per_antecedent": 0},
    {"min_count": 1, "max_itemsets": 0},
    {"min_count": 1, "max_rules": -1},
])
def test_bad_settings_raise_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        mine(_orders(SMALL), **kwargs)  # type: ignore[arg-type]


def test_nothing_frequent_gives_an_empty_table_with_the_columns() -> None:
    result = mine(_orders(SMALL), min_count=4, max_len=3)
    assert list(result.rules.columns) == RULE_COLUMNS
    assert len(result.rules) == 0
    assert len(result.itemsets) == 0
    assert result.report.rules == 0 and result.report.itemsets_by_length == {}
    assert result.report.n_orders == 3 and result.report.min_count == 4


def test_thresholds_that_no_rule_meets_give_an_empty_table() -> None:
    result = mine(_orders(SMALL), min_support=0.5, min_confidence=1.0)  # a -> b is 2/3
    assert list(result.rules.columns) == RULE_COLUMNS
    assert len(result.rules) == 1  # b -> a has confidence 1
    none = mine(_orders(SMALL), min_support=0.5, min_confidence=1.0, min_lift=1.5)
    assert list(none.rules.columns) == RULE_COLUMNS and len(none.rules) == 0
    assert none.report.itemsets_by_length == {1: 2, 2: 1}


def test_every_order_left_out_gives_an_empty_result() -> None:
    lines = [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (2, "a")]
    result = mine(_orders(lines), min_support=0.1, max_basket_items=1)
    assert result.report.n_orders == 0
    assert result.report.baskets_excluded == 2 and result.report.lines_excluded == 5
    assert len(result.itemsets) == 0
    assert list(result.rules.columns) == RULE_COLUMNS and len(result.rules) == 0


def test_without_significance_fisher_p_is_missing() -> None:
    rules = mine_rules(_orders(SMALL), min_count=1, significance=False)
    assert len(rules) == 2
    assert rules["fisher_p"].isna().all()
    assert rules["confidence"].notna().all()


def test_a_p_value_on_the_floor_passes_it() -> None:
    """Five orders, a and b together in one, each in no other: p = P[X >= 1] = 1/5 exactly,
    computed as 0.20000000000000007; a floor of 0.2 keeps the rule (Hypothesis found it)."""
    lines = [(0, "a"), (0, "b"), (1, "c"), (2, "c"), (3, "c"), (4, "c")]
    kept = _rules_by_key(mine_rules(_orders(lines), min_count=1, max_p_value=0.2))
    assert {(("a",), ("b",)), (("b",), ("a",))} <= set(kept)
    assert not _rules_by_key(mine_rules(_orders(lines), min_count=1, max_p_value=0.19))


@given(lines=lines_strategy, min_count=st.integers(1, 3),
       max_p=st.sampled_from([0.01, 0.05, 0.2, 0.5, 1.0]), cap=st.integers(1, 3),
       prune=st.booleans())
@settings(max_examples=60, deadline=None)
def test_significance_floor_and_cap_per_antecedent(lines: Lines, min_count: int, max_p: float,
                                                   cap: int, prune: bool) -> None:
    """The p-value floor keeps exactly the rules with p <= max_p (scipy's tail); the cap keeps,
    per antecedent set, min(cap, rules) of them and none less confident than one dropped."""
    full = _rules_by_key(mine_rules(_orders(lines), min_count=min_count, max_len=3,
                                    prune_redundant=prune))
    got = _rules_by_key(mine_rules(_orders(lines), min_count=min_count, max_len=3,
                                   prune_redundant=prune, max_p_value=max_p,
                                   max_per_antecedent=cap))
    n = len({o for o, _ in lines})
    significant = {k: r for k, r in full.items() if hypergeom.sf(
        int(r["count"]) - 1, n, int(r["consequent_count"]), int(r["antecedent_count"]))
        <= max_p * (1 + 1e-9)}
    assert set(got) <= set(significant)
    by_antecedent: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for key in significant:
        by_antecedent.setdefault(key[0], []).append(key[1])
    for ant, cons in by_antecedent.items():
        kept = [c for c in cons if (ant, c) in got]
        assert len(kept) == min(cap, len(cons))
        conf = {c: Fraction(int(significant[(ant, c)]["count"]),
                            int(significant[(ant, c)]["antecedent_count"])) for c in cons}
        dropped = [conf[c] for c in cons if c not in kept]
        assert not dropped or min(conf[c] for c in kept) >= max(dropped)


def test_the_estimate_is_the_rule_count_and_max_rules_raises_the_count() -> None:
    """12 products bought together in 3..8 orders: the report's estimate equals the rules built;
    past max_rules the count rises to the smallest one that fits, with a warning, and the
    rules are exactly those mined at that count."""
    baskets = [list("abcdefghijkl")] * 3 + [list("abcdefgh")] * 2 + [list("abcd")] * 3
    lines = _lines_of(baskets)
    full = mine(_orders(lines), min_count=3, max_len=3)
    assert full.report.rules_estimated == full.report.rules == len(full.rules)
    assert full.report.warnings == []
    sizes = {count: len(mine_rules(_orders(lines), min_count=count, max_len=3))
             for count in range(3, 9)}
    assert sizes[3] > sizes[5] > sizes[8] > 0
    capped = mine(_orders(lines), min_count=3, max_len=3, max_rules=sizes[5])
    smallest = min(count for count, size in sizes.items() if size <= sizes[5])  # 4: none has 4
    assert capped.report.min_count == smallest == 4 and capped.report.min_count_requested == 3
    assert capped.report.rules == sizes[5] and capped.report.rules_estimated == sizes[3]
    assert "max_rules" in capped.report.warnings[0]
    assert _rules_by_key(capped.rules).keys() == _rules_by_key(
        mine_rules(_orders(lines), min_count=5, max_len=3)).keys()


def test_max_itemsets_doubles_the_count_with_a_warning() -> None:
    baskets = [list("abcdefghij")] * 4 + [list("abcdef")] * 4
    result = mine(_orders(_lines_of(baskets)), min_count=2, max_len=4, max_itemsets=100)
    assert result.report.min_count == 8 and result.report.min_count_requested == 2
    assert len(result.report.warnings) == 2 and "max_itemsets" in result.report.warnings[0]
    assert set(_rules_by_key(result.rules)) == set(_rules_by_key(
        mine_rules(_orders(_lines_of(baskets)), min_count=8, max_len=4)))


def test_max_rules_bounds_the_splits_that_pruning_builds() -> None:
    """Pruning compares every split, so the cap bounds those (here 3 per triple, 2 per pair):
    at a confidence no rule reaches, max_rules still raises the count."""
    baskets = [list("abcdefgh")] * 3 + [list("abcd")] * 3
    lines = _lines_of(baskets)
    pruned = mine(_orders(lines), min_count=3, max_len=3, prune_redundant=True,
                  min_confidence=1.0, max_rules=60)
    splits_at_6 = 2 * 6 + 3 * 4  # pairs and triples of a..d
    assert pruned.report.min_count == 4 and splits_at_6 <= 60  # no itemset is in 4 or 5
    assert "before pruning" in pruned.report.warnings[0]
    assert _rules_by_key(pruned.rules).keys() == _rules_by_key(mine_rules(
        _orders(lines), min_count=6, max_len=3, prune_redundant=True,
        min_confidence=1.0)).keys()
