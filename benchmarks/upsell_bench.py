"""Upsell on held-out sessions of the demo shop (issue 15 item 1).

The demo shop is split in time: orders and events before the cutoff (``--holdout`` of the
order-time range at the end is held out) train a real ``recsys run``; in held-out sessions,
every (viewed A and not bought, bought B) pair where B is in A's category and pricier than A
is a case. A case is a hit when the list for A holds B in its top ``--k``:

- upsell: ``recsys.serving.upsell.upsell`` with the default ``[serving] upsell_band``;
- popular in band: the category's most ordered products within the same band, through the
  same candidate pool and ``finish`` (stock, activity, decisions): the upsell A/B control
  arm, and the fair baseline (the same filters as the upsell list);
- popular pricier: the category's most ordered products priced above A, in stock and
  active, whatever the band.

``--validation`` measures on the earlier time slice instead: the training part is split again
(its last ``--holdout`` held out), so the test sessions are never read; ``--prior-sessions``
compares the upsell prior's weight (``recsys.models.upsell_prior.PRIOR_SESSIONS``) at several
values over one training run (how the default was chosen, on the validation slice).

``--products`` sets the demo's catalog size (default 300: leaves of 3 to 9 products, where a
top 5 holds nearly every pricier product of the leaf; 3000: about 70 per leaf).

    PYTHONPATH=. python benchmarks/upsell_bench.py [--orders 12000] [--products 300]
        [--seed 5] [--band 1.1 2 [--band 1 100 ...]] [--k 1 2 5] [--validation]
        [--prior-sessions 2 8 ...]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsys.config import ServingSettings, load_config
from recsys.demo import DemoSpec, generate_demo
from recsys.pipeline import run_pipeline
from recsys.serving.finish import Decisions, Options
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.upsell import upsell


def split(raw: Path, train: Path, holdout: float) -> pd.DataFrame:
    """Write the training CSVs into ``train``; return the held-out sessions' events. Rows with
    an unreadable time (the demo plants some) stay in training, where ingest rejects them."""
    orders = pd.read_csv(raw / "orders.csv", dtype=str)
    events = pd.read_csv(raw / "events.csv", dtype=str)
    stamps = pd.to_datetime(orders["ordered_at"], errors="coerce")
    cutoff = stamps.min() + (1 - holdout) * (stamps.max() - stamps.min())
    seen = pd.to_datetime(events["occurred_at"], errors="coerce")
    first = seen.groupby(events["session_id"]).transform("min")
    train.mkdir(parents=True)
    orders[~(stamps >= cutoff)].to_csv(train / "orders.csv", index=False)
    events[~(seen >= cutoff)].to_csv(train / "events.csv", index=False)
    (train / "catalog.csv").write_bytes((raw / "catalog.csv").read_bytes())
    return events[(first >= cutoff) & seen.notna()]


def cases(events: pd.DataFrame, index: ServingIndex) -> pd.DataFrame:
    """(session, viewed A, bought B): A viewed and not bought, B bought, same category, B
    pricier than A."""
    views = events[events["event_type"] == "view"][["session_id", "product_id"]]
    buys = events[events["event_type"] == "purchase"][["session_id", "product_id"]]
    pairs = views.drop_duplicates().merge(buys.drop_duplicates(), on="session_id",
                                          suffixes=("_a", "_b"))
    bought = set(zip(buys["session_id"], buys["product_id"], strict=True))
    pairs = pairs[[(s, a) not in bought for s, a in zip(pairs["session_id"],
                                                       pairs["product_id_a"], strict=True)]]
    cat, price = index.categories, index.prices
    keep = [cat.get(a) is not None and cat.get(a) == cat.get(b) and
            price.get(b, 0.0) > price.get(a, float("inf"))
            for a, b in zip(pairs["product_id_a"], pairs["product_id_b"], strict=True)]
    return pairs[keep].drop_duplicates()


def popular_pricier(index: ServingIndex, product_id: str, k: int) -> list[str]:
    category, price = index.categories[product_id], index.prices[product_id]
    return [p for p, _ in index.best_sellers(category, len(index.ids))
            if index.prices.get(p, 0.0) > price][:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=12_000)
    parser.add_argument("--products", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--k", type=int, nargs="+", default=[5])
    parser.add_argument("--validation", action="store_true",
                        help="measure on the last --holdout of the training part")
    parser.add_argument("--prior-sessions", type=float, nargs="+", default=None,
                        help="upsell prior weights to compare (default: the artifact's)")
    parser.add_argument("--band", type=float, nargs=2, action="append", default=None,
                        help="lowest and highest price multiple (default: [serving] "
                             "upsell_band); repeat it for several bands over one training run")
    args = parser.parse_args()
    bands = [tuple(b) for b in args.band] if args.band else [ServingSettings().upsell_band]
    top = max(args.k)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate_demo(tmp / "raw", DemoSpec(orders=args.orders, products=args.products,
                                            seed=args.seed), progress=False)
        held = split(tmp / "raw", tmp / "train", args.holdout)
        if args.validation:  # the test sessions are dropped unread; training splits again
            (tmp / "train").rename(tmp / "before")
            held = split(tmp / "before", tmp / "train", args.holdout)
        config = tmp / "recsys.toml"
        config.write_text(f'data_dir = "{tmp / "data"}"\n[ingest]\n' + "".join(
            f'{t} = "{tmp / "train" / (t + ".csv")}"\n' for t in ("orders", "events", "catalog"))
            + f'[demo]\ngenerate_if_missing = false\n[artifacts]\nroot = "{tmp / "art"}"\n')
        started = time.perf_counter()
        run_pipeline(load_config(config), show_progress=False)
        trained = time.perf_counter() - started
        index = load_index(tmp / "art")
        found = cases(held, index)
    n = len(found)
    pairs = list(zip(found["product_id_a"], found["product_id_b"], strict=True))
    print(f"# upsell_bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or '?'}"
          f", demo shop orders={args.orders} products={args.products} seed={args.seed} "
          f"holdout={args.holdout}{' (validation slice)' if args.validation else ''}, "
          f"k={args.k}")
    print(f"training run: {trained:.1f} s; held-out sessions: {held['session_id'].nunique()}; "
          f"cases (viewed A, bought pricier B of A's category): {n}; "
          f"distinct A: {found['product_id_a'].nunique()}")
    print(f"upsell prior: {index.upsell_prior}")
    for weight in args.prior_sessions or [index.upsell_prior.prior_sessions]:
        weighted = replace(index, upsell_prior=replace(index.upsell_prior, prior_sessions=weight))
        for band in bands:
            print(f"# prior_sessions = {weight:g}")
            evaluate(weighted, pairs, band, args.k, top)


def evaluate(index: ServingIndex, pairs: list[tuple[str, str]], band: tuple[float, float],
             ks: list[int], top: int) -> None:
    """Hits of each list at each k for one band."""
    n = len(pairs)
    options, decisions = Options(k=top), Decisions()
    lists: dict[str, dict[str, list[str]]] = {"upsell": {}, "popular in band": {},
                                              "popular pricier": {}}
    for a in sorted({a for a, _ in pairs}):
        for name, popular_only in (("upsell", False), ("popular in band", True)):
            lists[name][a] = [i["product_id"] for i in upsell(
                index, a, options, decisions, band=band, popular_only=popular_only).items]
        lists["popular pricier"][a] = popular_pricier(index, a, top)
    in_band = sum(band[0] * index.prices[a] <= index.prices[b] <= band[1] * index.prices[a]
                  for a, b in pairs)
    pool = [sum(band[0] * index.prices[a] <= index.prices.get(p, 0.0) <= band[1] * index.prices[a]
                and p in index.available and p != a for p in index.by_category[index.categories[a]])
            for a, _ in pairs]
    print(f"## band {band}: cases with B inside the band: {in_band}/{n}; in-stock products of "
          f"A's category within the band per case: mean {sum(pool) / max(len(pool), 1):.1f}")
    for k in ks:
        hits = {name: sum(b in by_a[a][:k] for a, b in pairs) for name, by_a in lists.items()}
        print(f"k={k}: cases where the band holds at most {k} products (any top {k} holds them "
              f"all): {sum(c <= k for c in pool)}/{n}")
        for name, hit in hits.items():
            print(f"  {name:16s} top-{k} holds B: {hit}/{n} = {hit / max(n, 1):.3f}")
        for base in ("popular in band", "popular pricier"):
            ratio = hits["upsell"] / hits[base] if hits[base] else float("inf")
            print(f"  upsell / {base}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
