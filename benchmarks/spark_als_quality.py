"""ALS on Spark MLlib (``recsys.spark.als``) against the local ALS (implicit) on one split:
next-basket HR@10 / recall@10 on Online Retail II 2009-2010, and the wall time of each fit.

The evaluation module's global time split (test = the last 20% of the date range); cases =
customers with a history before the cutoff and an order in the test window (their first);
each customer's list = the 10 best products by user x item factors (bought before or not).
Both fits get the same confidence matrix and the same settings (ModelsConfig defaults).

    PYTHONPATH=. .venv/bin/python benchmarks/spark_als_quality.py [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.evaluation.metrics import multi_target_metrics
from recsys.evaluation.split import next_basket_cases, next_basket_split, time_windows
from recsys.matrices import InteractionWeights, customer_item_matrix, item_vocabulary
from recsys.models.job import LocalALS
from recsys.models.settings import ModelsConfig
from recsys.spark.als import SparkALS
from recsys.spark.session import spark_session
from recsys.spark.settings import SparkConfig

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / \
    "online_retail_ii_2009_2010" / "online_retail.parquet"


def purchases(path: Path) -> pd.DataFrame:
    """Purchase lines of known customers (no cancellations, quantity > 0)."""
    raw = pd.read_parquet(path, columns=["Invoice", "StockCode", "Quantity", "InvoiceDate",
                                         "Customer ID"])
    keep = (~raw["Invoice"].astype("string").str.startswith("C") & (raw["Quantity"] > 0)
            & raw["Customer ID"].notna())
    raw = raw[keep]
    return pd.DataFrame({"order_id": raw["Invoice"].astype("string"),
                         "product_id": raw["StockCode"].astype("string"),
                         "customer_id": raw["Customer ID"].astype("int64").astype("string"),
                         "quantity": raw["Quantity"].astype("float64"),
                         "ordered_at": pd.to_datetime(raw["InvoiceDate"])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    orders = purchases(args.data)
    windows = time_windows(orders["ordered_at"], test_fraction=0.2)
    train, later = next_basket_split(orders, "test", windows=windows)
    items = item_vocabulary(train)
    cases = next_basket_cases(train, later, items)
    matrix = customer_item_matrix(train, weights=InteractionWeights(), items=items)
    rows = matrix.rows.lookup(pd.Series(cases.customers, dtype="string"))
    config = ModelsConfig()
    figures: dict[str, dict[str, float]] = {}
    settings = {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g",
                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    with spark_session(SparkConfig(master=args.master, settings=settings)) as spark, \
            tempfile.TemporaryDirectory() as scratch:
        spark.sparkContext.setLogLevel("ERROR")
        for name, model in (("local (implicit)", LocalALS()),
                            ("spark (MLlib)", SparkALS(spark, Path(scratch)))):
            began = time.perf_counter()
            users, item_factors = model.fit(matrix, config)
            seconds = time.perf_counter() - began
            scores = users[rows] @ item_factors.T
            ranked = np.argsort(-scores, axis=1, kind="stable")[:, :10]
            metrics, _ = multi_target_metrics(ranked, cases.targets, [10], len(items),
                                              n_relevant=cases.basket_sizes)
            figures[name] = {"hr@10": round(metrics["hr@10"], 4),
                             "recall@10": round(metrics["recall@10"], 4),
                             "fit_s": round(seconds, 1)}
    print(json.dumps({"cases": len(cases), "customers": matrix.matrix.shape[0],
                      "products": len(items), "nnz": int(matrix.matrix.nnz),
                      "test_start": str(windows.test_start), "models": figures}, indent=2))


if __name__ == "__main__":
    main()
