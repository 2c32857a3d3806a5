"""Bundles are real associations, ranked by gain over what the customer would buy anyway:
on the standard demo shop (the one `recsys demo` builds) every pair in every bundle is bought
together more often than chance and significantly so, and the planted complements lead."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from recsys.artifacts import load_parquet
from recsys.demo import DemoSpec, generate_demo
from recsys.ingest import ingest, load_table
from recsys.mapping import SourceMapping
from recsys.rules.job import RulesConfig, run_rules_job


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("bundles_demo")
    raw, data, out = tmp / "raw", tmp / "data", tmp / "rules"
    generate_demo(raw, DemoSpec(), progress=False)  # the standard demo shop
    ingest({t: str(raw / f"{t}.csv") for t in ("orders", "events", "catalog")}, SourceMapping(),
           data, show_progress=False)
    tables = {t: load_table(data, t) for t in ("orders", "events", "catalog")}
    run_rules_job(tables["orders"], tables["events"], tables["catalog"],
                  RulesConfig(), out)
    baskets = tables["orders"].groupby("order_id")["product_id"].agg(frozenset)  # type: ignore[union-attr]
    return {"bundles": load_parquet(out / "bundles.parquet"), "baskets": baskets,
            "catalog": tables["catalog"], "planted": json.loads((raw / "planted.json").read_text())}


def _first_bundle(bundles: pd.DataFrame, product: str) -> list[str]:
    """What the API serves first for a product: the best bundle holding it."""
    holding = bundles[bundles["products"].map(lambda p: product in list(p))]
    return list(holding.iloc[0]["products"]) if len(holding) else []


def test_every_pair_of_every_bundle_is_a_significant_positive_association(demo: dict) -> None:
    bundles, baskets = demo["bundles"], demo["baskets"]
    assert len(bundles) > 100
    n = len(baskets)
    count = pd.Series([p for b in baskets for p in b]).value_counts()
    pair_count: dict[tuple[str, str], int] = {}
    for basket in baskets:
        for pair in itertools.combinations(sorted(basket), 2):
            pair_count[pair] = pair_count.get(pair, 0) + 1
    for products in bundles["products"]:
        for a, b in itertools.combinations(sorted(products), 2):
            together = pair_count[(a, b)]
            assert together * n > count[a] * count[b], (a, b)  # lift > 1, exactly
            assert hypergeom.sf(together - 1, n, count[b], count[a]) <= 0.05 * (1 + 1e-9)


def test_gain_is_over_what_the_customer_would_buy_anyway(demo: dict) -> None:
    bundles, baskets = demo["bundles"], demo["baskets"]
    catalog = demo["catalog"].set_index("product_id")
    n = len(baskets)
    assert bundles["expected_gain"].is_monotonic_decreasing
    assert (bundles["expected_gain"] > 0).all()
    rows = pd.concat([bundles.head(5), bundles[bundles["size"] > 2].head(5)])
    for _, row in rows.iterrows():
        members = set(row["products"])
        together = int(baskets.map(members.issubset).sum())
        assert together == row["count"]
        value = {p: catalog.loc[p, "price"] * catalog.loc[p, "margin"] for p in members}
        gains = {}
        for anchor in members:
            others = members - {anchor}
            with_anchor = int(baskets.map(lambda b, a=anchor: a in b).sum())
            anyway = int(baskets.map(others.issubset).sum()) / n
            gains[anchor] = (together / with_anchor - anyway) * sum(value[p] for p in others)
        best = max(gains, key=lambda p: gains[p])
        assert row["anchor"] == best
        assert row["expected_gain"] == pytest.approx(gains[best])


def test_planted_complements_lead_their_bundles(demo: dict) -> None:
    """The issue's case: the descaling tablets' first bundle holds the planted espresso machine
    (it was "Laptop 13-inch + Descaling Tablets", lift 0.95); and so for most planted pairs."""
    bundles, planted = demo["bundles"], demo["planted"]
    names = demo["catalog"].set_index("product_id")["name"]
    machine, tablets = "P00180", "P00246"
    assert [machine, tablets] in planted["complements"]
    assert names[tablets].startswith("Descaling Tablets")
    assert machine in _first_bundle(bundles, tablets)
    led = [a in _first_bundle(bundles, b) for a, b in planted["complements"]]
    assert np.mean(led) >= 0.8, led


def test_substitute_pairs_count_copurchases_exactly() -> None:
    """Co-purchases of each substitute pair against brute force over the baskets (duplicate
    lines of a product in an order count once)."""
    import scipy.sparse as sp

    from recsys.rules.bundles import substitute_pairs
    from recsys.rules.settings import SubstituteConfig

    rng = np.random.default_rng(3)
    n_items = 12
    sessions = sp.csr_matrix((rng.random((400, n_items)) < 0.3).astype(np.float32))
    dense = (rng.random((300, n_items)) < 0.25).astype(np.int64)
    rows, cols = np.nonzero(dense)
    twice = np.concatenate([rows, rows[:40]]), np.concatenate([cols, cols[:40]])
    baskets = sp.csr_matrix((np.ones(len(twice[0])), twice), shape=dense.shape)
    config = SubstituteConfig(min_coviews=1, min_view_lift=0.0, max_purchase_lift=1e9)
    pairs = substitute_pairs(sessions, baskets, config)
    assert len(pairs) == n_items * (n_items - 1) // 2
    for a, b, bought in pairs[["a", "b", "copurchases"]].itertuples(index=False):
        assert bought == int((dense[:, a] & dense[:, b]).sum())
