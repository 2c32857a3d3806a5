"""Bundles on held-out orders: how often the other products of the bundle served first for a
product are bought in an order that holds that product (issue 16, item 2).

    .venv/bin/python benchmarks/bundles_bench.py [--only online_retail_ii demo]

Global time split: orders in the last 20% of the date range are the test orders; everything
is mined from the earlier ones. Three ways to pick the bundle served first for product a,
over the same frequent itemsets (2 to 4 products, the bundle count of the default config):

  ours        the rules job with the default config (``bundles.parquet``, as the API serves
              it: the first bundle in the table holding a);
  before      the previous ranking, P(S | anchor) x value of the others, anchor the argmax,
              best 1000 (what the issue saw: the Regency cakestand in every bundle of 85123A);
  expensive   "most expensive frequent co-purchase": of the frequent itemsets holding a, the
              one whose other products are worth most.

For every test order and every product a in it that has a served bundle: "all bought" = every
other product of the bundle is in the order; "share bought" = the fraction of them that is;
"value bought" = their value (price x margin) in the order, per occurrence. Coverage = the
share of (order, product) occurrences that had a bundle.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.artifacts import load_parquet  # noqa: E402
from recsys.demo import DemoSpec, generate_demo  # noqa: E402
from recsys.ingest import ingest, load_table  # noqa: E402
from recsys.mapping import SourceMapping, load_mapping  # noqa: E402
from recsys.matrices import order_item_matrix  # noqa: E402
from recsys.rules.bundles import product_values  # noqa: E402
from recsys.rules.itemsets import frequent_itemsets  # noqa: E402
from recsys.rules.job import LineInputs, RulesConfig, run_rules_job  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"


def _tables(name: str, work: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Canonical orders and catalog, through the project's own ingest."""
    if name == "online_retail_ii":
        mapping = load_mapping(str(REPO / "configs" / "mappings" / "online_retail_ii.toml"))
        ingest({"orders": str(DATASETS / "online_retail_ii_2009_2010" / "online_retail.parquet")},
               mapping, work / "data", show_progress=False)
    else:
        generate_demo(work / "raw", DemoSpec(), progress=False)
        ingest({t: str(work / "raw" / f"{t}.csv") for t in ("orders", "catalog")},
               SourceMapping(), work / "data", show_progress=False)
    orders = load_table(work / "data", "orders")
    assert orders is not None
    return orders, load_table(work / "data", "catalog", required=False)


def _first_bundles(products: list[list[str]]) -> dict[str, list[str]]:
    """product -> the other products of the first bundle (in table order) holding it."""
    first: dict[str, list[str]] = {}
    for members in products:  # at most `top` bundles
        for p in members:
            first.setdefault(p, [m for m in members if m != p])
    return first


def _itemset_bundles(train: pd.DataFrame, catalog: pd.DataFrame | None, min_count: int,
                     config: RulesConfig) -> tuple[dict[str, list[str]], dict[str, list[str]],
                                                   dict[str, float]]:
    """The "before" and "expensive" first bundles per product, and the product values."""
    baskets = order_item_matrix(train)
    x, ids = baskets.matrix, baskets.items.ids
    fi = frequent_itemsets(x, min_count, config.bundles.max_size,
                           max_itemsets=config.bundles.max_itemsets)
    values = product_values(pd.Index(ids), catalog, LineInputs(train).median_prices(),
                            config.bundles.use_margin)
    item_counts = np.diff(x.tocsc().indptr)
    keep = fi.lengths >= 2
    sets, counts = fi.items[keep], fi.counts[keep]
    valid = sets >= 0
    safe = np.maximum(sets, 0)
    value = np.where(valid, values[safe], 0.0)
    priced = ~np.isnan(value).any(axis=1)
    sets, counts, valid, safe, value = (a[priced] for a in (sets, counts, valid, safe, value))
    others_value = value.sum(axis=1)[:, None] - value
    gains = np.where(valid, counts[:, None] / np.maximum(item_counts[safe], 1) * others_value,
                     -np.inf)
    best = np.argmax(gains, axis=1)
    order = np.lexsort((-counts, -gains[np.arange(len(sets)), best]))[: config.bundles.top]
    before = _first_bundles([[ids[c] for c in row[row >= 0]] for row in sets[order]])
    rows, cols = np.nonzero(valid)
    frame = pd.DataFrame({"anchor": ids[safe[rows, cols]], "row": rows,
                          "others_value": others_value[rows, cols], "count": counts[rows]})
    top = frame.sort_values(["others_value", "count"], ascending=False).drop_duplicates("anchor")
    expensive = {a: [ids[c] for c in sets[r][sets[r] >= 0] if ids[c] != a]
                 for a, r in zip(top["anchor"], top["row"], strict=True)}
    return before, expensive, dict(zip(ids, values, strict=True))


def _score(first: dict[str, list[str]], test: pd.Series, value: dict[str, float],
           only: set[str]) -> dict[str, float]:
    """Hit rates over the test occurrences of the products in ``only`` that ``first`` serves."""
    occurrences = covered = all_bought = 0
    share = value_bought = 0.0
    for lines in test:  # a benchmark: plain loops over the test orders
        basket = set(lines)
        for product in basket & only:
            occurrences += 1
            others = first.get(product)
            if not others:
                continue
            covered += 1
            got = [o for o in others if o in basket]
            all_bought += len(got) == len(others)
            share += len(got) / len(others)
            value_bought += sum(value.get(o, 0.0) for o in got)
    return {"coverage": covered / max(occurrences, 1), "covered": covered,
            "all_bought": all_bought / max(covered, 1), "share_bought": share / max(covered, 1),
            "value_bought": value_bought / max(covered, 1)}


def run(name: str, work: Path) -> list[tuple[str, dict[str, float]]]:
    orders, catalog = _tables(name, work)
    start, end = orders["ordered_at"].min(), orders["ordered_at"].max()
    cutoff = start + 0.8 * (end - start)
    train = orders[orders["ordered_at"] < cutoff]
    test = orders[orders["ordered_at"] >= cutoff].groupby("order_id")["product_id"].agg(set)
    config = RulesConfig()
    began = time.perf_counter()
    metrics = run_rules_job(train, None, catalog, config, work / "rules")
    print(f"{name}: rules job on {train['order_id'].nunique():,} training orders in "
          f"{time.perf_counter() - began:.1f} s; {metrics['bundles']:,} bundles at "
          f"{metrics['bundle_min_count']} orders; {len(test):,} test orders", flush=True)
    ours = _first_bundles([list(p) for p in load_parquet(work / "rules" / "bundles.parquet")[
        "products"]])
    before, expensive, value = _itemset_bundles(train, catalog, metrics["bundle_min_count"],
                                                config)
    methods = (("ours", ours), ("before (P(S|a) x value)", before),
               ("most expensive frequent co-purchase", expensive))
    everything = set(value)
    common = set(ours) & set(before) & set(expensive)
    return [(f"{label}, {scope}", _score(first, test, value, products))
            for scope, products in (("each its own", everything), ("common products", common))
            for label, first in methods]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=["online_retail_ii", "demo"])
    args = parser.parse_args()
    for name in args.only or ["online_retail_ii", "demo"]:
        with tempfile.TemporaryDirectory() as tmp:
            results = run(name, Path(tmp))
        print(f"\n{name}\n\n| first bundle served | coverage | all others bought | share of "
              "others bought | value of others bought |\n|---|---:|---:|---:|---:|")
        for label, r in results:
            print(f"| {label} | {r['coverage']:.1%} ({r['covered']:,}) | {r['all_bought']:.1%} "
                  f"| {r['share_bought']:.1%} | {r['value_bought']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
