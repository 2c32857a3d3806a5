"""The session on bought-together, measured: does a product page's "frequently bought
together" predict the next product put in the basket better with the shopper's earlier
products (``history=``, the session) than with the product on screen alone? Not a test: a
few minutes, reads ../shared/datasets (Online Retail II, Instacart users 1-100).

    .venv/bin/python benchmarks/basket_session_bench.py [--only online_retail instacart]
        [--cases 4000] [--json out.json]

No dataset here has views and baskets together, so the session is the basket so far: the
lines of an order in the order they were entered (Instacart's ``add_to_cart_order``; Online
Retail II's line order within an invoice, without the lines that are not products, as in
``configs/mappings/online_retail_ii.toml``), each product once. A case is a basket's product
at place i > 1 (the target) with the products before it: the last of them is on screen, all
of them (oldest first) are the session. Cases whose target or product on screen the artifact
does not know, or whose target is already in the session, are left out; at most ``--cases``
are drawn per window (seeded), a basket's cases together.

Global time split (70% / 85% of the time range): the validation artifact is built by the
pipeline (``run_pipeline``, default config) from the rows before 70% and scored on the
baskets of 70-85%; the test artifact from the rows before 85%, scored once on the baskets
after. Lists (``recsys.serving.recommend``, k=10, ``in_stock_only=False``, no decisions):
bought-together of the product on screen; the same with the session at each weight x decay
of ``GRID`` (the served list: the session's other products' neighbour rows, most recent
weighing ``session_weight``; without view events the artifact has no V-SKNN sessions);
the cart add-ons for the whole basket so far (what a cart widget shows), the lines the
session put in last counting most (``line_decay``: served, chosen on validation, and 1 = every
line alike); the shop's best sellers. The session's products are cart adds, so the served
list leaves them out (as the server does for a live session's cart adds and purchases; no
case's target is one of them); the same session as ``history=`` (no event types: nothing
left out) is scored too. The setting with the best validation HR@10 is scored on test
beside the served defaults; the ratio of each to bought-together alone comes with a 95%
bootstrap interval over the test baskets.

The nightly choice (``recsys.session_tuning``): the session_tuning job is given the
validation window's baskets as cart-add sessions (each line an ``add_to_cart`` event, in the
order entered) and the validation artifact as the version being served, as the nightly run
would see them; its choice is then scored on the test cases against the served defaults,
both as the job scores (the served lists with the placements' minimum evidence, which the
lists above leave out), ratio with its 95% interval over the test baskets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchmarks import machine  # noqa: E402
from benchmarks.cold_start_bench import instacart_tables, online_retail_tables  # noqa: E402
from benchmarks.evaluation_bench import DATASETS  # noqa: E402
from recsys.config import DEFAULT_LINE_DECAY, Config, ServingSettings  # noqa: E402
from recsys.pipeline import run_pipeline  # noqa: E402
from recsys.serving import recommend  # noqa: E402
from recsys.serving.finish import Decisions, Options  # noqa: E402
from recsys.serving.index import ServingIndex, load_index  # noqa: E402
from recsys.serving.live import Recent  # noqa: E402
from recsys.serving.service import placed, session_at  # noqa: E402
from recsys.serving.session import NO_SESSION, Session, line_weights  # noqa: E402
from recsys.session_tuning import Case as TuningCase  # noqa: E402
from recsys.session_tuning import (  # noqa: E402
    baskets_after,
    bought_together_hits,
    cart_hits,
    previous_version,
    run_session_tuning_job,
)
from recsys.session_tuning import cases_of as tuning_cases  # noqa: E402

K = 10
SERVED = ServingSettings()
GRID = [(w, d) for w in (0.3, 1.0, 2.0, 4.0) for d in (0.5, 0.8, 1.0)]  # weight x decay
LINE_DECAYS = (1.0, 0.8, 0.5, 0.3, 0.1)  # the cart add-ons' line_decay
CUTS = (0.70, 0.85)
Case = tuple[str, str, tuple[str, ...], str]  # basket, on screen, session (oldest first), target


def entry_ordered(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(order lines with ``place``: their place in the basket as entered, the catalogue)."""
    if name == "online_retail":
        orders, _, catalog = online_retail_tables()
        # without the lines that are not products (postage, fees...), as the shipped mapping
        mapping = tomllib.loads((REPO / "configs" / "mappings" / "online_retail_ii.toml")
                                .read_text(encoding="utf-8"))["orders"]
        code = orders["product_id"].astype(str)
        other = code.str.upper().isin({c.upper() for c in mapping["non_product_codes"]}) | (
            code.str.fullmatch(mapping["non_product_pattern"]))
        orders = orders[~other.to_numpy(bool)].reset_index(drop=True)
        place = orders.groupby("order_id", sort=False).cumcount()  # the file's line order
    else:
        orders, _, catalog = instacart_tables()
        lines = pd.read_csv(DATASETS / "instacart_100_users" / "instacart_ordertoproductmap.csv",
                            dtype={"order_id": str, "product_id": str})
        place = orders[["order_id", "product_id"]].astype(str).merge(
            lines, on=["order_id", "product_id"], how="left")["add_to_cart_order"]
        assert place.notna().all(), "an Instacart line without its add_to_cart_order"
    return orders.assign(place=place.to_numpy()), catalog


def build(name: str, orders: pd.DataFrame, catalog: pd.DataFrame,
          cutoff: pd.Timestamp) -> tuple[ServingIndex, Path]:
    """The pipeline's artifact from the order lines before ``cutoff`` (and its store)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"basket_session_{name}_"))
    orders[orders["ordered_at"] < cutoff].drop(columns="place").to_parquet(
        tmp / "orders.parquet", index=False)
    catalog.to_parquet(tmp / "catalog.parquet", index=False)
    config = Config.model_validate({
        "data_dir": str(tmp / "data"), "artifacts": {"root": str(tmp / "artifacts")},
        "popularity": {"window_days": 0},
        "ingest": {"orders": str(tmp / "orders.parquet"),
                   "catalog": str(tmp / "catalog.parquet"), "server_events": False}})
    run_pipeline(config, show_progress=False)
    return load_index(tmp / "artifacts"), tmp / "artifacts"


def window_events(orders: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """The window's baskets as cart-add sessions, as the server stores them: each line an
    ``add_to_cart`` event of the order's session, in the order entered."""
    window = orders[(orders["ordered_at"] >= lo) & (orders["ordered_at"] < hi)]
    return pd.DataFrame({
        "session_id": window["order_id"].astype(str), "product_id": window["product_id"],
        "event_type": "add_to_cart",
        "occurred_at": window["ordered_at"] + pd.to_timedelta(window["place"], unit="s")})


def cases_of(orders: pd.DataFrame, index: ServingIndex, lo: pd.Timestamp, hi: pd.Timestamp,
             limit: int, seed: int) -> list[Case]:
    """The window's cases (see the module), at most ``limit`` (whole baskets, seeded): the
    session_tuning job's (``recsys.session_tuning.cases_of``)."""
    found = tuning_cases(window_events(orders, lo, hi), lo - pd.Timedelta(seconds=1),
                         index.code_of, limit, seed)
    return [(c.session, c.basket[-1], c.basket, c.target) for c in found]


def session(recent: tuple[str, ...], on_screen: str, weight: float, decay: float,
            carted: bool) -> Session:
    """The served Session of a basket so far (oldest first) at this weight and decay, its
    products known as cart adds when ``carted`` (a live session) or not (``history=``)."""
    events = ["add_to_cart" if carted else "view"] * len(recent)
    return session_at(SERVED, Recent(list(reversed(recent)), events,
                                     frozenset(recent) if carted else frozenset()),
                      [on_screen], weight, decay)


List = Callable[[ServingIndex, Case], list[str]]
OPTIONS = Options(k=K, in_stock_only=False)


def bought_together(weight: float | None = None, decay: float = 0.5, *,
                    carted: bool = True) -> List:
    """Bought-together of the product on screen, with the session at ``weight`` (None:
    without), its products cart adds (``carted``, left out) or of unknown event."""
    def make(index: ServingIndex, case: Case) -> list[str]:
        _, shown, recent, _ = case
        s = NO_SESSION if weight is None else session(recent, shown, weight, decay, carted)
        return [i["product_id"] for i in recommend.bought_together(
            index, shown, OPTIONS, Decisions(), s).items]
    return make


def cart(decay: float) -> List:
    """The cart add-ons for the basket so far, each line ``decay`` times less than the one
    put in after it (the session's order, as served; 1: every line alike)."""
    def make(index: ServingIndex, case: Case) -> list[str]:
        lines = list(case[2])
        return [i["product_id"] for i in recommend.cart_addons(
            index, lines, OPTIONS, Decisions(),
            line_weights=line_weights(lines, lines[::-1], decay)).items]
    return make


def best_sellers(index: ServingIndex, case: Case) -> list[str]:
    return [i["product_id"] for i in recommend.popular(index, OPTIONS, Decisions()).items]


def ranks(index: ServingIndex, cases: list[Case], make: List) -> np.ndarray:
    """Each case's rank of its target in the list (0: not in the top K)."""
    out = np.zeros(len(cases), np.int64)
    for n, case in enumerate(cases):
        listed = make(index, case)[:K]
        out[n] = listed.index(case[3]) + 1 if case[3] in listed else 0
    return out


def scores(found: np.ndarray) -> dict[str, float]:
    hits = found > 0
    return {"hr@10": round(float(hits.mean()), 4),
            "mrr@10": round(float((1.0 / found[hits]).sum() / len(found)), 4)}


def ratio_interval(cases: list[Case], hits: np.ndarray, baseline: np.ndarray,
                   draws: int = 2000, seed: int = 11) -> tuple[float, float, float]:
    """HR ratio of ``hits`` to ``baseline`` and its 95% bootstrap interval over baskets."""
    baskets = pd.factorize(pd.Series([c[0] for c in cases]))[0]
    a = np.bincount(baskets, weights=hits.astype(float))
    b = np.bincount(baskets, weights=baseline.astype(float))
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(a), size=(draws, len(a)))
    ratios = a[draw].sum(axis=1) / np.maximum(b[draw].sum(axis=1), 1e-12)
    return (round(float(a.sum() / max(b.sum(), 1e-12)), 3),
            round(float(np.quantile(ratios, 0.025)), 3), round(float(np.quantile(ratios, 0.975)), 3))


def run(name: str, limit: int) -> dict[str, Any]:
    """Validation then test for one dataset (see the module)."""
    orders, catalog = entry_ordered(name)
    lo, hi = orders["ordered_at"].min(), orders["ordered_at"].max()
    cut_valid, cut_test = (lo + f * (hi - lo) for f in CUTS)
    out: dict[str, Any] = {"lines": len(orders), "baskets": int(orders["order_id"].nunique())}
    started = time.perf_counter()
    index, root = build(name, orders, catalog, cut_valid)
    out["pipeline seconds (validation artifact)"] = round(time.perf_counter() - started, 1)
    valid = cases_of(orders, index, cut_valid, cut_test, limit, seed=1)
    nightly = nightly_choice(orders, root, cut_valid, cut_test, limit)
    print(name, "the session_tuning job", nightly, flush=True)
    grid = {f"{w}/{d}": scores(ranks(index, valid, bought_together(w, d)))["hr@10"]
            for w, d in GRID}
    grid["none"] = scores(ranks(index, valid, bought_together()))["hr@10"]
    chosen = max(GRID, key=lambda s: grid[f"{s[0]}/{s[1]}"])  # ties: the first (lighter)
    lines = {d: scores(ranks(index, valid, cart(d)))["hr@10"] for d in LINE_DECAYS}
    line_chosen = max(LINE_DECAYS, key=lines.__getitem__)  # ties: the first (flatter)
    out["validation"] = {"cases": len(valid), "hr@10 by weight/decay": grid,
                         "chosen": list(chosen), "cart add-ons hr@10 by line_decay": lines,
                         "line_decay chosen": line_chosen}
    print(name, "validation", out["validation"], flush=True)
    index, _ = build(name, orders, catalog, cut_test)
    test = cases_of(orders, index, cut_test, hi + pd.Timedelta(seconds=1), limit, seed=2)
    out["session_tuning"] = {"validation": nightly,
                             "test": nightly_test(index, test, nightly)}
    served = (SERVED.session_weight, SERVED.session_decay)
    line_served = DEFAULT_LINE_DECAY
    lists: dict[str, List] = {
        "bought-together, product on screen": bought_together(),
        f"bought-together + session, served ({served[0]}, {served[1]})": bought_together(*served),
        f"bought-together + session, chosen ({chosen[0]}, {chosen[1]})": bought_together(*chosen),
        "bought-together + session, served, as history= (session products offered back)":
            bought_together(*served, carted=False),
        f"cart add-ons, the basket so far, served (line_decay {line_served})":
            cart(line_served),
        f"cart add-ons, line_decay chosen ({line_chosen})": cart(line_chosen),
        "cart add-ons, every line alike (line_decay 1)": cart(1.0),
        "shop best sellers": best_sellers}
    found = {label: ranks(index, test, make) for label, make in lists.items()}
    alone = found["bought-together, product on screen"] > 0
    out["test"] = {"cases": len(test), "baskets": len({c[0] for c in test}),
                   "lists": {label: {**scores(r), "vs bought-together alone (95% interval)":
                                     ratio_interval(test, r > 0, alone)}
                             for label, r in found.items()}}
    alike = found["cart add-ons, every line alike (line_decay 1)"] > 0
    out["test"]["cart add-ons served vs every line alike (95% interval)"] = ratio_interval(
        test, found[f"cart add-ons, the basket so far, served (line_decay {line_served})"] > 0,
        alike)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(name, "test", json.dumps(out["test"], indent=1), flush=True)
    return out


def nightly_choice(orders: pd.DataFrame, root: Path, lo: pd.Timestamp, hi: pd.Timestamp,
                   limit: int) -> dict[str, Any]:
    """The session_tuning job's report on the window's baskets as cart-add sessions (in the
    order entered), scored with the validation artifact: what the nightly run would choose."""
    events = window_events(orders, lo, hi)
    previous = previous_version(root)
    assert previous is not None
    seconds = {}
    for cap in (Config().models.session_tune_cases, limit):  # the default cap's cost, then
        config = Config.model_validate({"models": {"session_tune_cases": cap}})
        started = time.perf_counter()
        report = run_session_tuning_job(config, Path(tempfile.mkdtemp(prefix="basket_nightly_")),
                                        previous, partial(baskets_after, events), hi)
        seconds[f"{report['cases']} cases"] = round(time.perf_counter() - started, 1)
    return {**{k: report[k] for k in ("cases", "sessions", "bought_together", "cart",
                                      "bought_together hr@10 by weight/decay",
                                      "cart hr@10 by line_decay")},
            "job seconds": seconds, "best-seller fill": fill_share(load_index(root))}


def fill_share(index: ServingIndex, products: int = 500) -> dict[str, int]:
    """How many items of the served bought-together lists (the placement's minimum evidence
    and fill) of the ``products`` most bought products are the best-seller fill."""
    assert index.orders is not None
    config = Config()
    options = placed(config.serving, "bought_together", Options(k=K, in_stock_only=False))
    top = np.argsort(-index.orders.per_product, kind="stable")[:products]
    items = [i for c in top.tolist() for i in recommend.bought_together(
        index, index.ids[c], options, Decisions()).items]
    return {"items": len(items), "fill": sum(i["reason"]["source"] == "popular" for i in items)}


def nightly_test(index: ServingIndex, cases: list[Case], nightly: dict[str, Any]
                 ) -> dict[str, Any]:
    """The test cases scored as the job scores (the served lists, the placements' minimum
    evidence): the served defaults against the job's choice, ratio with its 95% interval."""
    config = Config()
    chosen = (nightly["bought_together"]["session_weight"],
              nightly["bought_together"]["session_decay"])
    served = (SERVED.session_weight, SERVED.session_decay)
    lines = (DEFAULT_LINE_DECAY, nightly["cart"]["line_decay"])
    asked = [TuningCase(basket, session, target) for basket, _, session, target in cases]
    bought = np.array([bought_together_hits(index, c, config, [served, chosen]) for c in asked])
    cart = np.array([cart_hits(index, c, config, list(lines)) for c in asked])
    return {"cases": len(cases),
            f"bought-together served {served}": round(float(bought[:, 0].mean()), 4),
            f"bought-together the job's {chosen}": round(float(bought[:, 1].mean()), 4),
            "bought-together ratio (95% interval)": ratio_interval(cases, bought[:, 1],
                                                                   bought[:, 0]),
            f"cart add-ons served ({lines[0]})": round(float(cart[:, 0].mean()), 4),
            f"cart add-ons the job's ({lines[1]})": round(float(cart[:, 1].mean()), 4),
            "cart add-ons ratio (95% interval)": ratio_interval(cases, cart[:, 1], cart[:, 0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["online_retail", "instacart"],
                        choices=["online_retail", "instacart"])
    parser.add_argument("--cases", type=int, default=4000, help="at most, per window")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"# {machine.describe()}", flush=True)
    results: dict[str, Any] = {"machine": machine.describe(), "cases": args.cases,
                               "grid": GRID, "served": [SERVED.session_weight,
                                                        SERVED.session_decay],
                               "line_decay served": DEFAULT_LINE_DECAY}
    for name in args.only:
        results[name] = run(name, args.cases)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
