"""What the minimum evidence (``[serving.placements.*]`` ``min_score_share`` and
``max_p_value``) does to add-ons on
held-out carts (issue #16 item 12): the engine is built from the first 80% of the time range,
and each later order with >= 2 known products gives one case, one random product held out
and the rest as the cart. For each share, ``cart_addons`` (k = 10, without the best-seller
fill, so only the engine's own items count) is asked for every case:

- HR@10: share of cases whose held-out product is in the list;
- precision: held-out products found / items served (each case has one right answer, so
  this is a lower bound of the real precision, comparable across shares);
- items: mean list length; HR@10 filled: HR@10 once the list is filled from best sellers.

    PYTHONPATH=. .venv/bin/python benchmarks/evidence_floor.py [--dataset demo|bread]
        [--cases 2000] [--shares 0,0.05,0.1,0.2,0.3] [--p-values 1,0.1,0.05,0.01]
        [--demo-check 0:1,0.1:1,0.1:0.05,0.1:0.01]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.config import Config  # noqa: E402
from recsys.evaluation.engine import build_index  # noqa: E402
from recsys.evaluation.split import basket_cases, split_orders, time_windows  # noqa: E402
from recsys.serving.evidence import co_purchase_p_values  # noqa: E402
from recsys.serving.finish import Candidate  # noqa: E402
from recsys.serving.index import ServingIndex  # noqa: E402
from recsys.serving.recommend import (  # noqa: E402
    Decisions,
    Options,
    bought_together,
    cart_addons,
)
from recsys.serving.served_rules import rule_key  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"


def demo_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The demo shop (12,000 orders, seed 5, as the tests use), ingested (its planted truth
    in ``folder / "raw" / "planted.json"``)."""
    from recsys.demo import DemoSpec, generate_demo
    from recsys.ingest import ingest, load_table
    from recsys.mapping import SourceMapping

    generate_demo(folder / "raw", DemoSpec(orders=12_000, seed=5), progress=False)
    ingest({t: str(folder / "raw" / f"{t}.csv") for t in ("orders", "catalog")},
           SourceMapping(), folder / "data", show_progress=False)
    orders = load_table(folder / "data", "orders")
    assert orders is not None
    return orders, load_table(folder / "data", "catalog", required=False)


def bread_tables() -> tuple[pd.DataFrame, None]:
    """The Edinburgh bakery: one row per unit sold; item NONE left out."""
    raw = pd.read_csv(DATASETS / "bread_basket" / "BreadBasket_DMS.csv")
    raw = raw[raw["Item"] != "NONE"]
    return pd.DataFrame({
        "order_id": raw["Transaction"].astype("string"),
        "product_id": raw["Item"].astype("string"),
        "ordered_at": pd.to_datetime(raw["Date"] + " " + raw["Time"]),
        "quantity": np.ones(len(raw)), "unit_price": np.full(len(raw), np.nan),
    }).reset_index(drop=True), None


def measure(index: ServingIndex, carts: list[list[str]], targets: list[str],
            share: float, p_value: float) -> dict[str, float]:
    hits = served = hits_filled = 0
    for cart, target in zip(carts, targets, strict=True):
        engine = [i["product_id"] for i in cart_addons(
            index, cart, Options(k=10, in_stock_only=False, min_score_share=share, max_p_value=p_value,
                    fill=False),
            Decisions()).items]
        filled = [i["product_id"] for i in cart_addons(
            index, cart, Options(k=10, in_stock_only=False, min_score_share=share, max_p_value=p_value),
            Decisions()).items]
        hits += target in engine
        served += len(engine)
        hits_filled += target in filled
    n = len(carts)
    return {"hr@10": hits / n, "precision": hits / served if served else 0.0,
            "items": served / n, "hr@10 filled": hits_filled / n}


def relation(index: ServingIndex, seeds: list[str], product: str,
             complements: set[tuple[str, str]]) -> str:
    """How the demo shop relates a listed product to the seeds: a planted complement, the same
    department (customers favour one), or unrelated (issue 16 item 12)."""
    if any((s, product) in complements or (product, s) in complements for s in seeds):
        return "complement"
    top = index.categories.get(product, "").split(" > ")[0]
    if any(index.categories.get(s, "").split(" > ")[0] == top for s in seeds):
        return "same department"
    return "UNRELATED"


def demo_check(index: ServingIndex, settings: list[tuple[float, float]],
               complements: set[tuple[str, str]]) -> None:
    """The issue's demo check: the espresso machine's bought-together list once its top item
    is rejected (``block_rule`` of the pair: it leaves the list whatever its source), and the
    add-ons of the cart [phone, espresso machine], per setting; each item with its source, its
    Fisher p-value with the seed(s) and how it relates to them. The espresso machine and the
    phone are the first of their kind by product id."""
    espresso = min(p for p, n in index.names.items() if n.startswith("Espresso Machine"))
    phone = min(p for p, c in index.categories.items() if c.endswith("> Smartphones"))
    first = bought_together(index, espresso, Options(k=10, in_stock_only=False), Decisions())
    key = rule_key([espresso], first.items[0]["product_id"])
    rejected = Decisions(blocked_rules=frozenset([key]))
    for share, p_value in settings:
        options = Options(k=10, in_stock_only=False, min_score_share=share,
                          max_p_value=p_value)
        for title, seeds, result in (
                (f"{index.names[espresso]}, {key} rejected", [espresso],
                 bought_together(index, espresso, options, rejected)),
                (f"cart [{index.names[phone]}, {index.names[espresso]}]", [phone, espresso],
                 cart_addons(index, [phone, espresso], options, Decisions()))):
            kinds = [relation(index, seeds, i["product_id"], complements) for i in result.items]
            print(f"\n{title}; min_score_share {share:g}, max_p_value {p_value:g}; "
                  f"fallback {result.fallback}, applied {result.applied}; "
                  f"{kinds.count('UNRELATED')} unrelated")
            tested = [Candidate(i["product_id"], i["score"], i["reason"]["source"],
                                i["reason"]["evidence"]) for i in result.items]
            p_values = co_purchase_p_values(index, tested, seeds)
            for item, kind, p in zip(result.items, kinds, p_values.tolist(), strict=True):
                evidence = item["reason"]["evidence"]
                print(f"  {item['reason']['source']:<16} {index.names[item['product_id']]:<34}"
                      f" {index.categories[item['product_id']]:<42} {kind:<16} score "
                      f"{item['score']:.3f} p {p:.2g} lift {evidence.get('lift', '-')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["demo", "bread"], default="demo")
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--shares", default="0,0.05,0.1,0.2,0.3")
    parser.add_argument("--p-values", default="1,0.1,0.05,0.01")
    parser.add_argument("--demo-check", default="0:1,0.1:1,0.1:0.05,0.1:0.01",
                        help="share:p settings of the espresso machine check (demo only)")
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    p_values = [float(p) for p in args.p_values.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        orders, catalog = demo_tables(Path(tmp)) if args.dataset == "demo" else bread_tables()
        windows = time_windows(orders["ordered_at"], test_fraction=0.2, valid_fraction=0.1)
        train, test = split_orders(orders, windows, "test")
        start = time.perf_counter()
        index = build_index(train, None, catalog, Config(), Path(tmp) / "engine")
        built = time.perf_counter() - start
        cases = basket_cases(test, index.items, seed=7)
        chosen = np.random.default_rng(7).permutation(len(cases))[: args.cases]
        carts = [[index.ids[c] for c in cases.queries[i].indices.tolist()] for i in chosen]
        targets = [index.ids[int(cases.targets[i])] for i in chosen]
        print(f"# {args.dataset}: {len(train):,} training lines, {len(cases):,} held-out "
              f"carts ({len(carts):,} used), engine built in {built:.0f} s; "
              f"{platform.python_version()}")
        print("| min_score_share | max_p_value | HR@10 | precision | items served | "
              "HR@10 filled | s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for share, p_value in itertools.product(shares, p_values):
            start = time.perf_counter()
            row = measure(index, carts, targets, share, p_value)
            print(f"| {share:g} | {p_value:g} | {row['hr@10']:.3f} | {row['precision']:.4f} | "
                  f"{row['items']:.2f} | {row['hr@10 filled']:.3f} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)
        if args.dataset == "demo" and args.demo_check:
            planted = json.loads((Path(tmp) / "raw" / "planted.json").read_text())
            demo_check(index, [(float(a), float(b)) for a, b in (
                pair.split(":") for pair in args.demo_check.split(","))],
                {(a, b) for a, b in planted["complements"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
