"""Redundancy pruning against a brute-force check of every more general rule."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import ConfigError
from recsys.rules.mining import mine_rules

orders_strategy = st.lists(st.sets(st.integers(0, 7), min_size=1, max_size=6), min_size=3,
                           max_size=40)


def _orders(baskets: list[set[int]]) -> pd.DataFrame:
    return pd.DataFrame([(f"o{i}", f"p{p}") for i, b in enumerate(baskets) for p in b],
                        columns=["order_id", "product_id"])


def _rule_set(rules: pd.DataFrame) -> set[tuple[tuple[str, ...], str]]:
    return {(tuple(a), c[0]) for a, c in zip(rules["antecedents"], rules["consequents"],
                                              strict=True)}


@given(orders_strategy, st.integers(1, 3), st.sampled_from([0.0, 0.3, 0.5]))
@settings(max_examples=80, deadline=None)
def test_pruning_matches_brute_force(baskets: list[set[int]], min_count: int,
                                     min_confidence: float) -> None:
    orders = _orders(baskets)
    full = mine_rules(orders, min_count=min_count, max_len=4, significance=False)
    pruned = mine_rules(orders, min_count=min_count, max_len=4, significance=False,
                        min_confidence=min_confidence, prune_redundant=True)
    conf = {(tuple(a), c[0]): Fraction(int(x), int(y)) for a, c, x, y in
            zip(full["antecedents"], full["consequents"], full["count"],
                full["antecedent_count"], strict=True)}
    expected = set()
    for (ant, con), value in conf.items():
        if value < Fraction(str(min_confidence)):
            continue
        general = (conf.get((sub, con), Fraction(-1)) >= value
                   for k in range(1, len(ant)) for sub in itertools.combinations(ant, k))
        if not any(general):
            expected.add((ant, con))
    assert _rule_set(pruned) == expected


def test_a_specific_rule_with_no_gain_is_pruned() -> None:
    # tea -> mug in every order with tea; adding spoon to the antecedent adds nothing.
    baskets = [{"tea", "mug", "spoon"}, {"tea", "mug"}, {"tea", "mug", "spoon"}, {"spoon"}]
    orders = pd.DataFrame([(f"o{i}", p) for i, b in enumerate(baskets) for p in sorted(b)],
                          columns=["order_id", "product_id"])
    pruned = _rule_set(mine_rules(orders, min_count=1, max_len=3, prune_redundant=True))
    assert (("tea",), "mug") in pruned
    assert (("spoon", "tea"), "mug") not in pruned


def test_multi_consequent_pruning_is_refused() -> None:
    with pytest.raises(ConfigError):
        mine_rules(_orders([{1, 2}]), min_count=1, multi_consequent=True, prune_redundant=True)
