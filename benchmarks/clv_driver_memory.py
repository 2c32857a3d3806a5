"""The customer-value job alone, its aggregations on Spark (``SparkClvAggregates``,
``local[2]``): the Spark driver's resident memory, its peak in each step of the job, and the
steps' times. This is what the driver of `recsys run --engine spark` holds in that job.

The shop is a generated one of ``--orders`` orders, ingested into ``--work`` (outside the
timing; kept for the next run). To compare two versions of the job, run the script with each
tree first on ``PYTHONPATH`` (the job's interface is the same):

    PYTHONPATH=. .venv/bin/python benchmarks/clv_driver_memory.py --orders 1000000
        [--work var/clv-memory] [--master local[2]]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import threading
import time
from pathlib import Path

import pandas as pd

from benchmarks import machine
from recsys.analytics.job import run_clv_job
from recsys.analytics.settings import AnalyticsConfig
from recsys.demo import DemoSpec, generate_demo
from recsys.ingest import ingest
from recsys.mapping import SourceMapping
from recsys.spark.clv import SparkClvAggregates
from recsys.spark.session import spark_session
from recsys.spark.settings import SparkConfig

_PAGE = os.sysconf("SC_PAGE_SIZE")
_STEP = re.compile(r"^(customer value: .*?)(?: \(.*\))?(?: \.\.\.|: done in .*)$")


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


class _Steps(logging.Handler):
    """The job's step marks ("customer value: X ..." and "...: done in"), with the time."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[float, str, bool]] = []  # (when, step, started)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = _STEP.match(message)
        if match:
            self.marks.append((time.monotonic(), match[1], message.endswith("...")))


def _prepare(orders: int, work: Path) -> Path:
    """The data directory of a generated shop of ``orders`` orders (made once)."""
    data = work / f"data-{orders}"
    if (data / "orders.parquet").exists():
        return data
    shop = work / f"shop-{orders}"
    generate_demo(shop, DemoSpec(orders=orders, products=min(50_000, max(300, orders // 20))),
                  progress=False)
    ingest({"orders": str(shop / "orders.csv"), "catalog": str(shop / "catalog.csv")},
           SourceMapping(), data, show_progress=False)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--work", type=Path, default=Path("var/clv-memory"))
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    data = _prepare(args.orders, args.work)
    steps = _Steps()
    logging.getLogger("recsys.analytics.job").addHandler(steps)
    logging.getLogger("recsys.analytics.job").setLevel(logging.INFO)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), _rss()))
            time.sleep(0.05)

    settings = {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8",
                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    print(f"# {machine.describe()}; master {args.master}")
    with spark_session(SparkConfig(master=args.master, settings=settings)) as spark:
        orders = spark.read.parquet(str(data / "orders.parquet"))
        catalog = pd.read_parquet(data / "catalog.parquet")
        threading.Thread(target=sample, daemon=True).start()
        before = _rss()
        started = time.monotonic()
        figures = run_clv_job(SparkClvAggregates(spark, orders), catalog, args.work / "out",
                              config=AnalyticsConfig())
        took = time.monotonic() - started
        stop.set()
    print(f"orders={args.orders:,} customers={figures['customers']:,} "
          f"lines={figures['order_lines_used']:,}: {took:.1f} s, driver before the job "
          f"{before >> 20} MB, peak {max(r for _, r in samples) >> 20} MB")
    opened = {step: when for when, step, started in steps.marks if started}
    for when, step, started in steps.marks:
        if not started and step in opened:
            inside = [r for t, r in samples if opened[step] <= t <= when]
            print(f"  {step}: {when - opened[step]:.1f} s, driver peak "
                  f"{max(inside, default=0) >> 20} MB")


if __name__ == "__main__":
    main()
