"""Offline evaluation on the shared real datasets (not a test: minutes, needs ../shared).

    .venv/bin/python benchmarks/evaluation_bench.py [--out DIR] [--only TASK ...] [--jobs N]

Loaders below turn each dataset into the canonical tables (orders / events), then the
evaluation functions run directly:

- Online Retail II: basket completion. Purchase invoices as in the datasets README (invoice
  not starting with "C", quantity > 0, raw stock codes); first the reference baselines with
  their reference settings (no tuning), then every model tuned on the validation window and
  the engine built from the training window.
- YOOCHOOSE ``train_full``: also viewed (clicks are views; sessions as given).
- Instacart (users 1-100): next basket, each user's last order (with lines) as the test
  basket; synthetic timestamps from ``days_since_prior_order`` cumulated per user and aligned
  so that every user's last order falls on the same day.
- dunnhumby The Complete Journey sample: next basket with the global time split.

Writes ``metrics.json``, ``evaluation.json`` and ``report.html`` per dataset under ``--out``
and prints the tables with the reference figures of the datasets README beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import machine  # noqa: E402
from recsys.config import Config, load_config  # noqa: E402
from recsys.evaluation import (  # noqa: E402
    CartCandidate,
    EngineBuilder,
    EvaluationResult,
    ViewCandidate,
    Windows,
    evaluate_also_viewed,
    evaluate_basket_completion,
    evaluate_next_basket,
    time_windows,
    write_outputs,
)
from recsys.evaluation.tasks import ModelSpec  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"

REFERENCE = {  # the datasets README, "Reference figures", per dataset
    "online_retail": {"basket_completion": {
        "popularity": {"hr@10": 0.047}, "cooccurrence": {"hr@10": 0.142},
        "als": {"hr@10": 0.170}, "cosine_itemknn": {"hr@10": 0.204},
        "bm25_itemknn": {"hr@10": 0.255}}},
    "yoochoose": {"also_viewed": {
        "popularity": {"hr@10": 0.030, "mrr@10": 0.009},
        "cooccurrence": {"hr@10": 0.401, "mrr@10": 0.221},
        "bm25_itemknn": {"hr@10": 0.399, "mrr@10": 0.214},
        "cosine_itemknn": {"hr@10": 0.395, "mrr@10": 0.213}}},
    "instacart": {"next_basket": {
        "popularity": {"recall@10": 0.059},
        "own_most_bought": {"recall@10": 0.295, "ndcg@10": 0.360}}},
}
REFERENCE_MODELS = ["popularity", "cooccurrence", "bm25_itemknn", "cosine_itemknn", "als"]


def view_ablations() -> list[ModelSpec]:
    """The also-viewed blend done at request time, over the table's own neighbours."""
    return [ModelSpec("ablation_table_rerank", tuple(
        ViewCandidate(cooc_weight=w, within_table=True) for w in (1.0, 0.3, 3.0)))]


def ablations() -> list[ModelSpec]:
    """Where the candidate's gain comes from (each tuned on validation like the rest)."""
    return [
        ModelSpec("ablation_bm25_table_sum", (CartCandidate(ease_weight=0.0, bm25_weight=1.0),)),
        ModelSpec("ablation_ease_table_only", tuple(CartCandidate(lam=lam, bm25_weight=0.0)
                                                    for lam in (3.0, 1.0, 10.0, 30.0))),
    ]


# -- loaders: dataset -> canonical tables ------------------------------------------------------


def load_online_retail(path: Path) -> pd.DataFrame:
    """Purchase lines: invoice not starting with "C", quantity > 0, raw stock codes."""
    raw = pd.read_parquet(path)
    invoice = raw["Invoice"].astype("string")
    keep = ~invoice.str.startswith("C") & (raw["Quantity"] > 0)
    raw = raw[keep.to_numpy(bool)]
    customer = raw["Customer ID"].astype("Int64").astype("string")
    return pd.DataFrame({
        "order_id": raw["Invoice"].astype("string"),
        "product_id": raw["StockCode"].astype("string"),
        "customer_id": customer,
        "ordered_at": pd.to_datetime(raw["InvoiceDate"]),
        "quantity": raw["Quantity"].astype(np.float64),
        "unit_price": raw["Price"].astype(np.float64),
    }).reset_index(drop=True)


def load_yoochoose(path: Path) -> pd.DataFrame:
    """Click events as views: SessionId, ItemId, Time (unix seconds)."""
    raw = pd.read_csv(path, sep="\t", dtype={"SessionId": str, "ItemId": str})
    return pd.DataFrame({
        "product_id": raw["ItemId"].astype("string"),
        "event_type": pd.Series("view", index=raw.index, dtype="string"),
        "occurred_at": pd.to_datetime(raw["Time"], unit="s"),
        "session_id": raw["SessionId"].astype("string"),
    })


def load_instacart(folder: Path) -> pd.DataFrame:
    """Order lines of the orders that have lines (``prior``), with synthetic timestamps:
    days since each user's first order (cumulated ``days_since_prior_order``) plus the hour,
    shifted so that every user's last such order is on 2017-06-30."""
    heads = pd.read_csv(folder / "instacart_orders.csv")
    lines = pd.read_csv(folder / "instacart_ordertoproductmap.csv")
    heads = heads[heads["order_id"].isin(lines["order_id"])].sort_values(
        ["user_id", "order_number"], kind="stable")
    days = heads["days_since_prior_order"].fillna(0.0).groupby(heads["user_id"]).cumsum()
    days = days - days.groupby(heads["user_id"]).transform("max")
    stamp = (pd.Timestamp("2017-06-30") + pd.to_timedelta(days, unit="D")
             + pd.to_timedelta(heads["order_hour_of_day"], unit="h"))
    # same-day orders can come out of order by hour: keep each user's orders increasing
    stamp = stamp.groupby(heads["user_id"]).cummax() + pd.to_timedelta(heads["order_number"],
                                                                        unit="s")
    heads = heads.assign(ordered_at=stamp)
    merged = lines.merge(heads[["order_id", "user_id", "ordered_at"]], on="order_id")
    return pd.DataFrame({
        "order_id": merged["order_id"].astype(str).astype("string"),
        "product_id": merged["product_id"].astype(str).astype("string"),
        "customer_id": merged["user_id"].astype(str).astype("string"),
        "ordered_at": merged["ordered_at"],
        "quantity": np.ones(len(merged)),
    })


def load_dunnhumby(folder: Path) -> pd.DataFrame:
    """Transaction lines with quantity > 0 and a positive sales value."""
    raw = pd.read_csv(folder / "transactions_sample.csv.gz",
                      dtype={"household_id": str, "basket_id": str, "product_id": str})
    raw = raw[(raw["quantity"] > 0) & (raw["sales_value"] > 0)]
    return pd.DataFrame({
        "order_id": raw["basket_id"].astype("string"),
        "product_id": raw["product_id"].astype("string"),
        "customer_id": raw["household_id"].astype("string"),
        "ordered_at": pd.to_datetime(raw["transaction_timestamp"]),
        "quantity": raw["quantity"].astype(np.float64),
        "unit_price": (raw["sales_value"] / raw["quantity"]).astype(np.float64),
    }).reset_index(drop=True)


# -- runs ----------------------------------------------------------------------------------------


def _print(result: EvaluationResult, title: str, dataset: str) -> None:
    print(f"\n== {title}")
    print(result.table(reference=REFERENCE.get(dataset, {})))
    sys.stdout.flush()


def _seed_spread(orders: pd.DataFrame, windows: Windows, seeds: range) -> str:
    """HR@10 of the reference settings over several hold-out draws: mean +- sd."""
    runs = [evaluate_basket_completion(orders, windows, seed=seed, tune=False,
                                       models=REFERENCE_MODELS, show_progress=False)
            for seed in seeds]
    lines = [f"reference settings, HR@10 over hold-out seeds {seeds.start}..{seeds.stop - 1}:"]
    for model in REFERENCE_MODELS:
        values = np.array([r.metrics[model]["hr@10"] for r in runs])
        lines.append(f"  {model:<15} {values.mean():.4f} +- {values.std(ddof=1):.4f}")
    return "\n".join(lines)


def run(out: Path, only: set[str], jobs: int, seed: int, config: Config,
        work: Path) -> dict[str, EvaluationResult]:
    results: dict[str, EvaluationResult] = {}

    def finish(name: str, result: EvaluationResult, started: float, dataset: str) -> None:
        results[name] = result
        _print(result, f"{result.title} ({time.perf_counter() - started:.0f} s)", dataset)
        write_outputs(result, out / name)

    if "online_retail" in only:
        orders = load_online_retail(DATASETS / "online_retail_ii_2009_2010" /
                                    "online_retail.parquet")
        windows = time_windows(orders["ordered_at"])
        start = time.perf_counter()
        ref = evaluate_basket_completion(orders, windows, seed=seed, tune=False,
                                         models=REFERENCE_MODELS)
        finish("online_retail_reference", EvaluationResult(
            {"basket_completion": ref}, title="Online Retail II, reference settings"),
            start, "online_retail")
        print(_seed_spread(orders, windows, range(seed, seed + 5)))
        start = time.perf_counter()
        engine = EngineBuilder(config, work / "online_retail")
        tuned = evaluate_basket_completion(orders, windows, seed=seed, engine=engine,
                                           n_jobs=jobs, extra=ablations())
        tuned.notes.append(f"engine artifact built and loaded in "
                           f"{sum(engine.seconds.values()):.0f} s (default config)")
        finish("online_retail", EvaluationResult(
            {"basket_completion": tuned}, title="Online Retail II, tuned on validation"),
            start, "online_retail")
    if "yoochoose" in only:
        events = load_yoochoose(DATASETS / "yoochoose_clicks_100k" /
                                "yoochoose-clicks-100k_train_full.txt")
        windows = time_windows(events["occurred_at"])
        start = time.perf_counter()
        engine = EngineBuilder(config, work / "yoochoose")
        viewed = evaluate_also_viewed(events, windows, engine=engine, n_jobs=jobs,
                                      extra=view_ablations())
        finish("yoochoose", EvaluationResult({"also_viewed": viewed}, title="YOOCHOOSE"),
               start, "yoochoose")
    if "instacart" in only:
        orders = load_instacart(DATASETS / "instacart_100_users")
        start = time.perf_counter()
        engine = EngineBuilder(config, work / "instacart")
        nb = evaluate_next_basket(orders, holdout="last_order", engine=engine, n_jobs=jobs)
        finish("instacart", EvaluationResult({"next_basket": nb}, title="Instacart"), start,
               "instacart")
    if "dunnhumby" in only:
        orders = load_dunnhumby(DATASETS / "dunnhumby_complete_journey")
        windows = time_windows(orders["ordered_at"])
        start = time.perf_counter()
        engine = EngineBuilder(config, work / "dunnhumby")
        nb = evaluate_next_basket(orders, windows, engine=engine, n_jobs=jobs)
        finish("dunnhumby", EvaluationResult({"next_basket": nb}, title="dunnhumby"), start,
               "dunnhumby")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "evaluation-bench")
    parser.add_argument("--only", nargs="*", default=["online_retail", "yoochoose", "instacart",
                                                      "dunnhumby"])
    parser.add_argument("--jobs", type=int, default=2, help="processes for the engine's calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="the engine's config (default: built-in "
                                                    "defaults)")
    args = parser.parse_args()
    if not DATASETS.is_dir():
        print(f"shared datasets not found at {DATASETS}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING)
    print(f"# {machine.describe()}")
    started = time.perf_counter()
    config = load_config(args.config) if args.config else Config()
    with tempfile.TemporaryDirectory(prefix="recsys-eval-bench-") as work:  # engine artifacts
        results = run(args.out, set(args.only), args.jobs, args.seed, config, Path(work))
    summary = {name: r.metrics() for name, r in results.items()}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
