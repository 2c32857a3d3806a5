"""EASE in float32 (the models job's in-place Cholesky inverse) against the same code in
float64, on an ingested shop: neighbour lists, scores, and the basket-completion hit rate of
the evaluation's EASE candidate (``engine_candidate``, default setting, no tuning).

    PYTHONPATH=. .venv/bin/python benchmarks/ease_precision_bench.py DATA_DIR

DATA_DIR: the output of ``recsys ingest`` (e.g. Online Retail II with its mapping). The
float64 run swaps the module's working dtype; nothing else differs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from recsys.evaluation.run import _windows
from recsys.evaluation.tasks import evaluate_basket_completion
from recsys.ingest import load_table
from recsys.matrices import order_item_matrix
from recsys.models import ease


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    args = parser.parse_args()
    orders = load_table(args.data, "orders")
    assert orders is not None
    orders = orders[orders["ordered_at"].notna()]
    x = order_item_matrix(orders).matrix
    print(f"{x.shape[0]:,} orders x {x.shape[1]:,} products, {x.nnz:,} lines")
    tables, hit_rates = {}, {}
    windows = _windows(orders, None, 0.2, 0.2)
    assert windows is not None
    for dtype in (np.float64, np.float32):
        ease._DTYPE = dtype  # type: ignore[assignment]
        start = time.perf_counter()
        tables[dtype] = ease.ease_neighbours(x, lam=1.0, top_k=50, threads=None)
        seconds = time.perf_counter() - start
        result = evaluate_basket_completion(orders, windows, models=["engine_candidate"],
                                            tune=False, show_progress=False)
        hit_rates[dtype] = result.metrics["engine_candidate"]
        print(f"{np.dtype(dtype).name}: EASE over {tables[dtype].products:,} products in "
              f"{seconds:.1f} s; engine_candidate on {result.cases:,} test baskets: " + ", ".join(
                  f"{k} {v:.4f}" for k, v in hit_rates[dtype].items() if k.startswith("hr@")))
    a, b = tables[np.float64], tables[np.float32]
    rows = np.flatnonzero((a.ids >= 0).any(axis=1) | (b.ids >= 0).any(axis=1))
    overlap = [len(set(a.ids[r, :10]) & set(b.ids[r, :10]) - {-1})
               / max(1, int((a.ids[r, :10] >= 0).sum())) for r in rows]
    both = (a.ids >= 0) & (a.ids == b.ids)
    error = np.abs(a.scores[both] - b.scores[both]) / np.abs(a.scores[both])
    print(f"{len(rows):,} products with neighbours: top-10 overlap mean {np.mean(overlap):.5f} "
          f"(min {np.min(overlap):.2f}); same top-10 in the same order "
          f"{np.mean([(a.ids[r, :10] == b.ids[r, :10]).all() for r in rows]):.2%}; same top-50 "
          f"{np.mean([(a.ids[r] == b.ids[r]).all() for r in rows]):.2%}; score relative error "
          f"median {np.median(error):.1e}, 99th percentile {np.quantile(error, 0.99):.1e}, "
          f"max {error.max():.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
