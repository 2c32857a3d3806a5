"""The rules job on the demo shop: planted complements and substitutes recovered, bundles
ranked by the stated gain formula without substitutes, filters, and `recsys mine-rules`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.artifacts import load_parquet
from recsys.cli import main
from recsys.errors import InputError
from recsys.rules.filters import RuleFilterConfig, category_baskets, filter_rules
from recsys.rules.job import RulesConfig, run_rules_job
from recsys.rules.mining import mine_rules
from recsys.rules.query import in_category
from tests.conftest import DemoShop


@pytest.fixture(scope="module")
def shop(demo_shop: DemoShop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("rules")
    tables = demo_shop.tables()
    metrics = run_rules_job(tables["orders"], tables["events"], tables["catalog"],
                            RulesConfig(min_support=0.002, min_confidence=0.05), out)
    return {"data": demo_shop.data, "out": out, "metrics": metrics,
            "tables": tables, "planted": demo_shop.planted}


def test_planted_complements_are_strong_rules(shop: dict) -> None:
    rules = load_parquet(shop["out"] / "rules.parquet")
    pairs = rules[rules["antecedents"].list.len() == 1]
    lift = {(a[0], c[0]): lf for a, c, lf in zip(pairs["antecedents"], pairs["consequents"],
                                                 pairs["lift"], strict=True)}
    for a, b in shop["planted"]["complements"]:
        assert max(lift.get((a, b), 0), lift.get((b, a), 0)) > 5, (a, b)
    assert {"antecedent_names", "consequent_names", "consequent_categories"} <= set(rules)


def test_planted_substitutes_found_and_kept_out_of_bundles(shop: dict) -> None:
    subs = load_parquet(shop["out"] / "substitutes.parquet")
    found = {frozenset(p) for p in zip(subs["product_a"], subs["product_b"], strict=True)}
    planted = [frozenset(p) for p in shop["planted"]["substitutes"]]
    assert sum(p in found for p in planted) >= 0.9 * len(planted)
    bundles = load_parquet(shop["out"] / "bundles.parquet")
    assert len(bundles) > 0
    for products in bundles["products"]:
        members = set(products)
        assert not any(pair <= members for pair in found)


def test_bundle_gain_follows_the_formula(shop: dict) -> None:
    bundles = load_parquet(shop["out"] / "bundles.parquet")
    orders = shop["tables"]["orders"]
    catalog = shop["tables"]["catalog"].set_index("product_id")
    baskets = orders.groupby("order_id")["product_id"].agg(set)
    assert bundles["expected_gain"].is_monotonic_decreasing
    for _, row in bundles.head(5).iterrows():
        members = set(row["products"])
        together = int(baskets.map(members.issubset).sum())
        assert together == row["count"]
        value = {p: catalog.loc[p, "price"] * catalog.loc[p, "margin"] for p in members}
        gains = {}
        for anchor in members:
            with_anchor = int(baskets.map(lambda b, a=anchor: a in b).sum())
            others = members - {anchor}  # gain over buying the others anyway (issue 16)
            anyway = int(baskets.map(others.issubset).sum()) / len(baskets)
            gains[anchor] = (together / with_anchor - anyway) * sum(value[p] for p in others)
        best = max(gains, key=lambda p: gains[p])
        assert row["anchor"] == best
        assert row["expected_gain"] == pytest.approx(gains[best])


def test_category_rules_and_report(shop: dict) -> None:
    cat_rules = load_parquet(shop["out"] / "category_rules.parquet")
    assert len(cat_rules) > 0
    depth = {len(x.split(" > ")) for side in ("antecedents", "consequents")
             for items in cat_rules[side] for x in items}
    assert depth == {2}
    report = json.loads((shop["out"] / "rules_report.json").read_text())
    assert report["rules"] == shop["metrics"]["rules"] > 0
    assert report["n_orders"] == shop["tables"]["orders"]["order_id"].nunique()


def _orders(baskets: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(f"o{i}", p) for i, b in enumerate(baskets) for p in b],
                        columns=["order_id", "product_id"])


CATALOG = pd.DataFrame({"product_id": ["mug", "tea", "kettle", "spoon"],
                        "category": ["Home > Kitchen > Mugs", "Food > Tea", "Home > Kitchenware",
                                     "Home > Kitchen"]})
BASKETS = [["mug", "tea", "spoon"], ["mug", "tea"], ["kettle", "tea"], ["mug", "spoon", "kettle"],
           ["tea", "spoon"]]


@pytest.mark.parametrize(
    ("rule_filter", "expected"),
    [
        (RuleFilterConfig(antecedent_include=["mug", "tea"]),
         lambda a, c, n: set(a) <= {"mug", "tea"}),
        (RuleFilterConfig(consequent_exclude=["tea"]), lambda a, c, n: "tea" not in c),
        (RuleFilterConfig(antecedent_exclude=["mug", "spoon"]),
         lambda a, c, n: not ({"mug", "spoon"} & set(a))),
        (RuleFilterConfig(consequent_categories=["Home > Kitchen"]),
         lambda a, c, n: set(c) <= {"mug", "spoon"}),
        (RuleFilterConfig(antecedent_categories=["Home"]),
         lambda a, c, n: set(a) <= {"mug", "kettle", "spoon"}),
        (RuleFilterConfig(min_count=2), lambda a, c, n: n >= 2),
    ],
)
def test_filters_against_plain_python(rule_filter: RuleFilterConfig,
                                      expected: Callable[[list[str], list[str], int], bool]
                                      ) -> None:
    rules = mine_rules(_orders(BASKETS), min_count=1, max_len=3)
    kept = filter_rules(rules, rule_filter, CATALOG)
    want = {(tuple(a), tuple(c)) for a, c, n in zip(rules["antecedents"], rules["consequents"],
                                                   rules["count"], strict=True)
            if expected(list(a), list(c), n)}
    got = {(tuple(a), tuple(c)) for a, c in zip(kept["antecedents"], kept["consequents"],
                                                strict=True)}
    assert got == want and 0 < len(got) < len(rules)


def test_in_category_matches_whole_path_components() -> None:
    hit = in_category(CATALOG["category"], ["Home > Kitchen"])
    assert hit.tolist() == [True, False, False, True]


def test_category_constraints_need_a_catalog() -> None:
    rules = mine_rules(_orders(BASKETS), min_count=1)
    with pytest.raises(InputError, match="catalog"):
        filter_rules(rules, RuleFilterConfig(consequent_categories=["Home"]), None)


def test_category_baskets_cut_the_path() -> None:
    orders, missing = category_baskets(_orders([["mug", "tea", "nope"]]), CATALOG, depth=1)
    assert sorted(orders["product_id"]) == ["Food", "Home"] and missing == 1


def test_mine_rules_cli(shop: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_rules"
    assert main(["-q", "mine-rules", "--data", str(shop["data"]), "--out", str(out),
                 "--min-count", "30", "--max-len", "2"]) == 0
    printed = capsys.readouterr().out
    rules = load_parquet(out / "rules.parquet")
    assert f"{len(rules):,} rules" in printed
    assert int(rules["count"].min()) >= 30
    assert int(np.max(rules["antecedents"].list.len())) == 1
    assert main(["-q", "mine-rules", "--data", str(shop["data"]), "--out", str(out),
                 "--min-confidence", "1.5"]) == 1
    assert "min_confidence" in capsys.readouterr().err


def test_mine_rules_cli_full_set_on_request(shop: dict, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Defaults serve a reviewed set; --all-rules gives every rule the count and confidence
    allow, which is the estimate the default run printed."""
    args = ["-q", "mine-rules", "--data", str(shop["data"]), "--min-count", "20"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    printed = capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "all"), "--all-rules"]) == 0
    default = load_parquet(tmp_path / "default" / "rules.parquet")
    full = load_parquet(tmp_path / "all" / "rules.parquet")
    assert len(full) > len(default) > 0
    report = json.loads((tmp_path / "all" / "rules_report.json").read_text())
    assert report["rules_estimated"] == report["rules"] == len(full)
    assert f"{len(default):,} rules" in printed
    default_report = json.loads((tmp_path / "default" / "rules_report.json").read_text())
    assert default_report["rules_estimated"] > default_report["rules"] == len(default)
    assert (default["lift"] >= 1.5).all() and (default["fisher_p"] <= 0.001).all()
    assert pd.Series([tuple(a) for a in default["antecedents"]]).value_counts().max() <= 10
    assert (full["lift"] < 1.5).any() or (full["fisher_p"] > 0.001).any()
