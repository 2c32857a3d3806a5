"""Cold start: how well the served lists of a product the model never saw predict what goes
with it, against the best sellers of its category (the engine's answer before content
similarity). Not a test: a few minutes, reads ../shared/datasets where present.

    .venv/bin/python benchmarks/cold_start_bench.py [--only demo online_retail instacart dunnhumby]
        [--orders 12000 --products 300 --seed 5]  (the demo shop's size and seed) [--tune]

Per dataset: one global time cutoff (80% of the time range). Cold products are those first
seen after the cutoff (``first_seen``), or, for the demo shop whose products all sell from
the start, a seeded 10% of the products seen after the cutoff, held out of training
(``held_out``: their rows and catalogue rows removed). The artifact is built by the real
pipeline (``run_pipeline``) from the training rows; the cold products are then added as
``POST /admin/catalog`` adds them (``CatalogOverlay``). A case is a cold product P in a test
session or basket and another product Q of it that the artifact knows: for view sessions Q
is the next different product viewed after P, for baskets every other product of the basket.
Hit: Q in the top 10 of P's list (HR@10 over cases; "per product": the mean of each cold
product's own hit rate, so that a product in thousands of baskets does not dominate). Lists:
the served also-viewed and similar items, the best sellers of P's category (global where the
catalogue has no category) and of the shop, all with
``in_stock_only=False`` (the datasets' stock flags are not the test's). Two "ceiling" rows
are no list anyone can serve: the 10 products most often Q in the test cases themselves, per
P's category and per P (fitted to the cases they are scored on: bounds, not results).

The served also-viewed uses the cold-start weights (``cold_start_neighbours``,
``cold_start_prior``, ``cold_start_prior_scope``) that the pipeline's cold_start job chose on
the training rows (its choice and grid are printed); a row with the fixed defaults (10, 0.5,
the category's best sellers) is shown beside it.
``--tune`` also chooses the served cold-start weights (``cold_start_neighbours``,
``cold_start_prior``) on a validation split: the rows before the test cutoff, split the same
way with another seed's held-out products (a second pipeline run); the test rows then show
also-viewed with that pair too (and the prior's scope the job chose). The served also-viewed's ratio to the best sellers is printed
with a 95% bootstrap interval over the cold products (``ratio_interval``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402
from benchmarks.evaluation_bench import (  # noqa: E402
    load_dunnhumby,
    load_instacart,
    load_online_retail,
)
from recsys.config import Config  # noqa: E402
from recsys.models.settings import (  # noqa: E402
    DEFAULT_COLD_START_NEIGHBOURS,
    DEFAULT_COLD_START_PRIOR,
    PriorScope,
)
from recsys.pipeline import run_pipeline  # noqa: E402
from recsys.serving import recommend  # noqa: E402
from recsys.serving.catalog_overlay import CatalogOverlay, CatalogRow  # noqa: E402
from recsys.serving.finish import Decisions, Options  # noqa: E402
from recsys.serving.index import ServingIndex, load_index  # noqa: E402
from recsys.serving.similar import similar_items  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
K = 10


def demo_tables(orders: int = 12_000, products: int = 300, seed: int = 5
                ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """The demo shop (default 12,000 orders x 300 products, seed 5: the tests' shop),
    ingested."""
    from recsys.demo import DemoSpec, generate_demo
    from recsys.ingest import ingest, load_table
    from recsys.mapping import SourceMapping

    tmp = Path(tempfile.mkdtemp(prefix="cold_demo_"))
    generate_demo(tmp / "raw", DemoSpec(orders=orders, products=products, seed=seed),
                  progress=False)
    ingest({t: str(tmp / "raw" / f"{t}.csv") for t in ("orders", "events", "catalog")},
           SourceMapping(), tmp / "data", show_progress=False)
    tables = {t: load_table(tmp / "data", t) for t in ("orders", "events", "catalog")}
    assert tables["orders"] is not None and tables["catalog"] is not None
    return tables["orders"], tables["events"], tables["catalog"]


def online_retail_tables() -> tuple[pd.DataFrame, None, pd.DataFrame]:
    """Purchase lines; the catalogue derived from them: each stock code's most frequent
    Description and median price (no categories)."""
    path = DATASETS / "online_retail_ii_2009_2010" / "online_retail.parquet"
    orders = load_online_retail(path)
    raw = pd.read_parquet(path, columns=["StockCode", "Description"])
    raw = raw.assign(product_id=raw["StockCode"].astype("string")).dropna()
    names = (raw.groupby(["product_id", "Description"]).size().rename("n").reset_index()
             .sort_values(["product_id", "n"], ascending=[True, False])
             .drop_duplicates("product_id"))
    price = orders.groupby("product_id")["unit_price"].median().rename("price")
    catalog = names[["product_id", "Description"]].rename(columns={"Description": "name"})
    catalog = catalog.merge(price, left_on="product_id", right_index=True, how="left")
    return orders, None, catalog.reset_index(drop=True)


def instacart_tables() -> tuple[pd.DataFrame, None, pd.DataFrame]:
    """Order lines of users 1-100 (synthetic times, see evaluation_bench); the catalogue:
    product names, category "department > aisle N" (the aisle names are not in the sample)."""
    folder = DATASETS / "instacart_100_users"
    orders = load_instacart(folder)
    products = pd.read_csv(folder / "instacart_products.csv")
    departments = pd.read_csv(folder / "instacart_department.csv")
    products = products.merge(departments, on="department_id", how="left")
    catalog = pd.DataFrame({
        "product_id": products["product_id"].astype(str),
        "name": products["product_name"].astype(str),
        "category": products["department"].fillna("other").astype(str) + " > aisle "
        + products["aisle_id"].astype(str)})
    return orders, None, catalog


def dunnhumby_tables() -> tuple[pd.DataFrame, None, pd.DataFrame]:
    """The dunnhumby sample's purchase lines (baskets of about 1.6 sampled lines); the
    catalogue: category "department > product category > product type", the product type
    and package size as the name, the brand (National or Private) and the median price."""
    folder = DATASETS / "dunnhumby_complete_journey"
    orders = load_dunnhumby(folder)
    products = pd.read_csv(folder / "products.csv.gz", dtype=str)
    levels = products[["department", "product_category", "product_type"]].fillna("")
    category = levels.apply(lambda row: " > ".join(v for v in row if v), axis=1)
    name = (products["product_type"].fillna("") + " " + products["package_size"].fillna(""))
    price = orders.groupby("product_id")["unit_price"].median().rename("price")
    catalog = pd.DataFrame({"product_id": products["product_id"], "name": name.str.strip(),
                            "category": category.replace("", "other"),
                            "brand": products["brand"]})
    catalog = catalog.merge(price, left_on="product_id", right_index=True, how="left")
    catalog["name"] = catalog["name"].replace("", None)
    return orders, None, catalog


def _cases(groups: pd.DataFrame, cold: set[str], known: set[str], sessions: bool
           ) -> pd.DataFrame:
    """(P, Q) pairs of the test groups (``group``, ``product_id``, ``at``): see the module
    docstring."""
    frame = groups.sort_values(["group", "at"], kind="stable")
    if sessions:
        frame = frame[frame["product_id"] != frame.groupby("group")["product_id"].shift()]
        nxt = frame.groupby("group")["product_id"].shift(-1)
        pairs = pd.DataFrame({"p": frame["product_id"], "q": nxt}).dropna()
    else:
        distinct = frame[["group", "product_id"]].drop_duplicates()
        with_cold = distinct[distinct["product_id"].isin(cold)]
        pairs = with_cold.merge(distinct, on="group", suffixes=("_p", "_q"))
        pairs = pairs.rename(columns={"product_id_p": "p", "product_id_q": "q"})[["p", "q"]]
    pairs = pairs[pairs["p"].isin(cold) & pairs["q"].isin(known) & (pairs["p"] != pairs["q"])]
    return pairs.astype(str).reset_index(drop=True)


def prepare(name: str, orders: pd.DataFrame, events: pd.DataFrame | None,
            catalog: pd.DataFrame, mode: str, seed: int = 7
            ) -> tuple[ServingIndex, pd.DataFrame, set[str], float]:
    """Build the artifact without the cold products and add them by the catalogue overlay:
    (the index, the cold cases, the cold products, the build time in seconds)."""
    views = events is not None and len(events) > 0
    if views:
        assert events is not None
        inter = pd.DataFrame({"group": events["session_id"].astype(str),
                              "product_id": events["product_id"].astype(str),
                              "at": events["occurred_at"]})
    else:
        inter = pd.DataFrame({"group": orders["order_id"].astype(str),
                              "product_id": orders["product_id"].astype(str),
                              "at": orders["ordered_at"]})
    lo, hi = inter["at"].min(), inter["at"].max()
    cutoff = lo + 0.8 * (hi - lo)
    test = inter[inter["at"] >= cutoff]
    first = inter.groupby("product_id")["at"].min()
    if mode == "first_seen":
        cold = set(first[first >= cutoff].index)
    else:
        seen_late = np.array(sorted(set(test["product_id"])))
        rng = np.random.default_rng(seed)
        cold = set(rng.choice(seen_late, size=max(1, len(seen_late) // 10), replace=False))
    cold &= set(catalog["product_id"].astype(str))
    train_orders = orders[(orders["ordered_at"] < cutoff)
                          & ~orders["product_id"].astype(str).isin(cold)]
    train_events = None
    if views:
        assert events is not None
        train_events = events[(events["occurred_at"] < cutoff)
                              & ~events["product_id"].astype(str).isin(cold)]
    train_catalog = catalog[~catalog["product_id"].astype(str).isin(cold)]
    tmp = Path(tempfile.mkdtemp(prefix=f"cold_{name}_"))
    sources = {"orders": train_orders, "events": train_events, "catalog": train_catalog}
    for table, frame in sources.items():
        if frame is not None:
            frame.to_parquet(tmp / f"{table}.parquet", index=False)
    config = Config.model_validate({
        "data_dir": str(tmp / "data"), "artifacts": {"root": str(tmp / "artifacts")},
        "popularity": {"window_days": 0},
        "ingest": {**{t: str(tmp / f"{t}.parquet") for t, f in sources.items()
                      if f is not None}, "server_events": False}})
    started = time.perf_counter()
    run_pipeline(config, show_progress=False)
    built = time.perf_counter() - started
    base = load_index(tmp / "artifacts")
    overlay = CatalogOverlay()
    rows = catalog[catalog["product_id"].astype(str).isin(cold)]
    rows = rows[[c for c in rows.columns if c in CatalogRow.model_fields]]
    overlay.update([CatalogRow(**{k: v for k, v in row.items() if pd.notna(v)})
                    for row in rows.astype(object).to_dict("records")])
    index = overlay.apply(base, min_support=3)
    return index, _cases(test, cold, set(base.code_of), sessions=views), cold, built


SERVED: dict[str, Callable[[ServingIndex, str], list[str]]] = {
    "also-viewed (served)": lambda ix, p: [i["product_id"] for i in recommend.also_viewed(
        ix, p, Options(k=K, in_stock_only=False), Decisions()).items],
    "similar (served)": lambda ix, p: [i["product_id"] for i in similar_items(
        ix, p, Options(k=K, in_stock_only=False), Decisions()).items],
    "category best sellers": lambda ix, p: [i["product_id"] for i in recommend.popular(
        ix, Options(k=K, in_stock_only=False, category=ix.categories.get(p)),
        Decisions()).items],
    "shop best sellers": lambda ix, p: [i["product_id"] for i in recommend.popular(
        ix, Options(k=K, in_stock_only=False), Decisions()).items],
}


def measure(index: ServingIndex, cases: pd.DataFrame, make: Callable[[ServingIndex, str],
            list[str]]) -> dict[str, float]:
    """HR@10, MRR@10, per-product HR@10 and ms per list of one list function on the cases."""
    return _scores(*_ranked(index, cases, make))


def _ranked(index: ServingIndex, cases: pd.DataFrame,
            make: Callable[[ServingIndex, str], list[str]]) -> tuple[pd.DataFrame, np.ndarray,
                                                                      float]:
    """(the cases, each case's rank of Q in P's list (0: not in the top 10), ms per list)."""
    started = time.perf_counter()
    answers = {p: make(index, p) for p in cases["p"].unique()}
    took = time.perf_counter() - started
    ranks = np.array([answers[p].index(q) + 1 if q in answers[p][:K] else 0
                      for p, q in zip(cases["p"], cases["q"], strict=True)], dtype=np.int64)
    return cases, ranks, 1000 * took / max(len(answers), 1)


def _scores(cases: pd.DataFrame, ranks: np.ndarray, ms_per_list: float) -> dict[str, float]:
    hits = ranks > 0
    per_product = pd.Series(hits).groupby(cases["p"].to_numpy()).mean()
    nan = float("nan")
    return {"hr@10": float(hits.mean()) if len(hits) else nan,
            "mrr@10": float((1.0 / ranks[hits]).sum() / len(ranks)) if len(ranks) else nan,
            "hr@10 per product": float(per_product.mean()) if len(per_product) else nan,
            "ms_per_list": ms_per_list}


def ratio_interval(cases: pd.DataFrame, hits: np.ndarray, baseline: np.ndarray,
                   draws: int = 2000, seed: int = 11) -> tuple[float, float, float]:
    """HR@10 of ``hits`` over ``baseline``'s (per case: Q in the top 10) and its 95% bootstrap
    interval, the cold products drawn with replacement (a product's cases go together: they
    share its list)."""
    by_product = pd.DataFrame({"p": cases["p"].to_numpy(), "a": hits, "b": baseline}
                              ).groupby("p")[["a", "b"]].sum().to_numpy(np.float64)
    if not len(by_product) or by_product[:, 1].sum() == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(by_product), (draws, len(by_product)))
    sums = by_product[drawn].sum(axis=1)
    ratios = sums[:, 0] / np.where(sums[:, 1] > 0, sums[:, 1], np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return float(by_product[:, 0].sum() / by_product[:, 1].sum()), float(low), float(high)


def evaluate(name: str, orders: pd.DataFrame, events: pd.DataFrame | None,
             catalog: pd.DataFrame, mode: str, seed: int = 7,
             chosen: tuple[int, float] | None = None) -> list[dict[str, object]]:
    """HR@10 / MRR@10 of each served list on the cold cases (see ``prepare``); with
    ``chosen`` (cold_start_neighbours, cold_start_prior), also-viewed with those too."""
    index, cases, cold, built = prepare(name, orders, events, catalog, mode, seed)
    ranking = index.ranking
    print(f"{name}: the cold_start job chose neighbours {ranking.cold_start_neighbours}, prior "
          f"{ranking.cold_start_prior} ({ranking.cold_start_chosen_by}); its report: "
          f"{index.manifest.metrics.get('cold_start')}", flush=True)
    lists = [(label, index, make) for label, make in SERVED.items()]
    lists[0] = (f"also-viewed (served, {ranking.cold_start_chosen_by} "
                f"{ranking.cold_start_neighbours}, {ranking.cold_start_prior}, "
                f"{ranking.cold_start_prior_scope})", *lists[0][1:])
    lists.insert(1, (f"also-viewed (defaults {DEFAULTS[0]}, {DEFAULTS[1]}, category)",
                     _with(index, *DEFAULTS, scope="category"), SERVED["also-viewed (served)"]))
    if chosen is not None:
        lists.insert(2, (f"also-viewed (--tune validation-chosen {chosen[0]}, {chosen[1]})",
                         _with(index, *chosen), SERVED["also-viewed (served)"]))
    for label, scope in (("ceiling: the test's own top 10 per category", "category"),
                         ("ceiling: the test's own top 10 per product", "product")):
        lists.append((label, index, _in_sample(index, cases, scope)))
    ranked = {label: _ranked(ix, cases, make) for label, ix, make in lists}
    served, sellers = ranked[lists[0][0]][1] > 0, ranked["category best sellers"][1] > 0
    ratio, low, high = ratio_interval(cases, served, sellers)
    print(f"{name}: served also-viewed / category best sellers, HR@10 {ratio:.2f}x (95% "
          f"bootstrap interval over the cold products {low:.2f}x to {high:.2f}x; "
          f"{int(served.sum())} against {int(sellers.sum())} hits of {len(cases)} cases)",
          flush=True)
    return [{"dataset": name, "cold": mode, "cold_products": len(cold),
             "queried": int(cases["p"].nunique()), "cases": len(cases), "list": label,
             **_scores(*ranked[label]), "build_s": built}
            for label, _, _ in lists]


def _in_sample(index: ServingIndex, cases: pd.DataFrame, scope: str
               ) -> Callable[[ServingIndex, str], list[str]]:
    """Not a list anyone can serve: the 10 products most often Q in the test cases
    themselves, per P's category (a bound on any list that depends on the category alone)
    or per P (a loose bound on any list, fitted to the very cases it is scored on)."""
    key = cases["p"].map(lambda p: index.categories.get(p, "")) if scope == "category" \
        else cases["p"]
    counts = (pd.DataFrame({"key": key, "q": cases["q"]}).value_counts()
              .rename("n").reset_index().sort_values(["key", "n", "q"],
                                                     ascending=[True, False, True]))
    top = counts.groupby("key")["q"].agg(lambda q: list(q[:K])).to_dict()
    return lambda ix, p: top.get(ix.categories.get(p, "") if scope == "category" else p, [])


DEFAULTS = (DEFAULT_COLD_START_NEIGHBOURS, DEFAULT_COLD_START_PRIOR)
GRID = [(m, prior) for m in (0, 5, 10, 20, 50) for prior in (0.0, 0.25, 0.5, 1.0, 2.0)]


def _with(index: ServingIndex, neighbours: int, prior: float,
          scope: PriorScope | None = None) -> ServingIndex:
    """The index with these cold-start settings (``scope`` None: the served one)."""
    return replace(index, ranking=replace(
        index.ranking, cold_start_neighbours=neighbours, cold_start_prior=prior,
        cold_start_prior_scope=scope or index.ranking.cold_start_prior_scope))


def tune(name: str, orders: pd.DataFrame, events: pd.DataFrame | None,
         catalog: pd.DataFrame, mode: str) -> tuple[list[dict[str, object]], tuple[int, float]]:
    """The served also-viewed's HR@10 on a validation split (the rows before the test cutoff,
    split the same way, another seed's held-out products) for each (cold_start_neighbours,
    cold_start_prior) of ``GRID``; returns the rows and the best pair (ties: the first)."""
    views = events is not None and len(events) > 0
    stamps = events["occurred_at"] if views and events is not None else orders["ordered_at"]
    lo, hi = stamps.min(), stamps.max()
    cutoff = lo + 0.8 * (hi - lo)
    index, cases, cold, _ = prepare(f"{name}_validation", orders[orders["ordered_at"] < cutoff],
                                    None if events is None else
                                    events[events["occurred_at"] < cutoff], catalog, mode, seed=8)
    rows: list[dict[str, object]] = []
    for m, prior in GRID:
        if m == 0 and prior > 0:
            continue  # 0 neighbours: the content neighbours alone, no prior
        rows.append({"dataset": name, "split": "validation", "cases": len(cases),
                     "cold_start_neighbours": m, "cold_start_prior": prior,
                     **measure(_with(index, m, prior), cases, SERVED["also-viewed (served)"])})
    best = max(rows, key=lambda r: float(r["hr@10"]))  # type: ignore[arg-type]
    return rows, (int(best["cold_start_neighbours"]),  # type: ignore[call-overload]
                  float(best["cold_start_prior"]))  # type: ignore[arg-type]


LOADERS: dict[str, tuple[Callable[[], tuple[pd.DataFrame, pd.DataFrame | None,
                                            pd.DataFrame]], str]] = {
    "demo": (demo_tables, "held_out"),
    "online_retail": (online_retail_tables, "first_seen"),
    "instacart": (instacart_tables, "first_seen"),
    "dunnhumby": (dunnhumby_tables, "first_seen"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(LOADERS), default=list(LOADERS))
    parser.add_argument("--orders", type=int, default=12_000, help="demo shop orders")
    parser.add_argument("--products", type=int, default=300, help="demo shop products")
    parser.add_argument("--seed", type=int, default=5, help="demo shop seed")
    parser.add_argument("--tune", action="store_true", help="choose cold_start_neighbours and "
                        "cold_start_prior on a validation split first (another pipeline run)")
    args = parser.parse_args()
    print(f"# {machine.describe()}")
    rows = []
    for name in args.only:
        loader, mode = LOADERS[name]
        if name != "demo" and not DATASETS.exists():
            print(f"{name}: skipped, {DATASETS} not found")
            continue
        orders, events, catalog = (demo_tables(args.orders, args.products, args.seed)
                                   if name == "demo" else loader())
        chosen = None
        if args.tune:
            grid, chosen = tune(name, orders, events, catalog, mode)
            print(pd.DataFrame(grid).to_string(index=False, float_format="%.4f"), flush=True)
        rows += evaluate(name, orders, events, catalog, mode, chosen=chosen)
        print(pd.DataFrame(rows[-9:]).to_string(index=False, float_format="%.4f"), flush=True)
    print("| dataset | cold | cold products | queried | cases | list | HR@10 | MRR@10 | "
          "HR@10 per product |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['cold']} | {r['cold_products']} | {r['queried']} | "
              f"{r['cases']} | {r['list']} | {r['hr@10']:.4f} | {r['mrr@10']:.4f} | "
              f"{r['hr@10 per product']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
