"""Training overhead: the pipeline's model-training step against the bare model fits.

The training step (``recsys.models.job.run_models_job``: matrices, BM25 item-kNN on view
sessions and on orders, EASE on orders, ALS on customers, top-K neighbour tables with
co-occurrence support, purchase history, repurchase cycles, writing the files) is timed
against the bare fits it contains (the `implicit` models, and EASE's closed form in numpy),
on the same matrices, in the same process and run. Target: at most 1.3x.

    .venv/bin/python benchmarks/training_bench.py [--dataset demo|online_retail] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.demo import DemoSpec, generate_demo
from recsys.ingest import ingest, load_table
from recsys.mapping import SourceMapping, load_mapping
from recsys.matrices import (
    InteractionWeights,
    customer_item_matrix,
    item_vocabulary,
    order_item_matrix,
    session_item_matrix,
)
from recsys.models.job import run_models_job
from recsys.models.settings import ModelsConfig
from recsys.progress import set_quiet

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = REPO.parent / "shared/datasets/online_retail_ii_2009_2010/online_retail.parquet"


def _tables(dataset: str, tmp: Path) -> dict[str, pd.DataFrame | None]:
    if dataset == "demo":
        generate_demo(tmp / "raw", DemoSpec(orders=200_000, products=2_000, seed=3),
                      progress=False)
        sources = {t: str(tmp / "raw" / f"{t}.csv") for t in ("orders", "events", "catalog")}
        mapping = SourceMapping()
    else:
        sources = {"orders": str(ONLINE_RETAIL)}
        mapping = load_mapping(REPO / "configs/mappings/online_retail_ii.toml")
    ingest(sources, mapping, tmp / "data", show_progress=False)
    return {t: load_table(tmp / "data", t, required=t == "orders")
            for t in ("orders", "events", "catalog")}


def _bare(tables: dict[str, pd.DataFrame | None], config: ModelsConfig,
          weights: InteractionWeights) -> tuple[float, float]:
    """Seconds of the implicit fits and of EASE's closed form, on matrices built beforehand
    (not timed)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender

    orders, events, catalog = tables["orders"], tables["events"], tables["catalog"]
    assert orders is not None
    items = item_vocabulary(catalog, orders, events)
    matrices = [order_item_matrix(orders, items=items).matrix.astype(np.float32)]
    if events is not None:
        views = events[events["event_type"] == "view"]
        matrices.insert(0, session_item_matrix(views, weights=weights, items=items).matrix)
    users = customer_item_matrix(orders, events, weights=weights, items=items).matrix
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        if config.bought_together == "ease":
            _bare_ease(matrices[-1], config.ease_lambda, config.ease_max_items)
        ease_s = time.perf_counter() - start
        start = time.perf_counter()
        for matrix in matrices:
            BM25Recommender(K=config.knn_k, num_threads=1).fit(sp.csr_matrix(matrix),
                                                              show_progress=False)
        AlternatingLeastSquares(factors=config.als_factors,
                                regularization=config.als_regularization,
                                alpha=config.als_alpha, iterations=config.als_iterations,
                                random_state=config.seed, num_threads=1).fit(
            sp.csr_matrix(users, dtype=np.float32), show_progress=False)
        return time.perf_counter() - start, ease_s


def _bare_ease(orders_items: sp.csr_matrix, lam: float, max_items: int) -> np.ndarray:
    """EASE's closed form as the paper writes it (numpy): B = -P / diag(P), P = (X'X +
    lambda I)^-1 over the ``max_items`` products in most orders, rows weighted
    1/sqrt(basket size)."""
    x = sp.csr_matrix(orders_items, dtype=np.float64, copy=True)
    x.data[:] = 1.0
    sizes = np.diff(x.indptr)
    x.data /= np.sqrt(np.repeat(np.maximum(sizes, 1), sizes))
    counts = np.diff(sp.csc_matrix(x).indptr)
    kept = np.sort(np.argsort(-counts, kind="stable")[:max_items])
    sub = sp.csc_matrix(x)[:, kept[counts[kept] > 0]]
    p = np.linalg.inv((sub.T @ sub).toarray() + lam * np.eye(sub.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def _ours(tables: dict[str, pd.DataFrame | None], config: ModelsConfig,
          weights: InteractionWeights, out: Path) -> float:
    orders, events, catalog = tables["orders"], tables["events"], tables["catalog"]
    assert orders is not None
    items = item_vocabulary(catalog, orders, events)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run_models_job(orders, events, items, config, weights, out, catalog)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=["demo", "online_retail"], default="online_retail")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bought-together", choices=["ease", "knn"], default="ease",
                        help="[models] bought_together (knn: no EASE fit)")
    args = parser.parse_args()
    set_quiet(True)
    config, weights = ModelsConfig(bought_together=args.bought_together), InteractionWeights()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        tables = _tables(args.dataset, tmp)
        _ours(tables, config, weights, tmp / "warm")  # first call: imports, numba caches
        fits, ease, ours = [], [], []
        for i in range(args.repeat):  # interleaved, best of n
            implicit_s, ease_s = _bare(tables, config, weights)
            fits.append(implicit_s)
            ease.append(ease_s)
            ours.append(_ours(tables, config, weights, tmp / f"run{i}"))
    orders = tables["orders"]
    assert orders is not None
    bare = min(fits) + min(ease)
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    print(f"| dataset | order lines | implicit fits (s) | EASE closed form (s) | bare total (s) "
          f"| training step (s) | overhead (s) | ratio |\n"
          f"|---|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {args.dataset} | {len(orders):,} | {min(fits):.2f} | {min(ease):.2f} | "
          f"{bare:.2f} | {min(ours):.2f} | {min(ours) - bare:.2f} | {min(ours) / bare:.2f}x |")
    print(f"\n{date}; {platform.processor() or platform.machine()}, Python "
          f"{sys.version.split()[0]}; best of {args.repeat}; command: "
          f"`.venv/bin/python benchmarks/training_bench.py --dataset {args.dataset} "
          f"--bought-together {args.bought_together}`")


if __name__ == "__main__":
    main()
