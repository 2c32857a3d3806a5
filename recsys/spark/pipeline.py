"""`recsys run --engine spark`: ingest on Spark, the jobs, and the publish of the local engine.

The artifact is written by the local writers and published by the local store
(``recsys.pipeline.run_jobs``), so its format is the one serving reads. On Spark: the ingest,
best sellers, basket figures, the itemset counting of the product and category rules; in
the models job the co-purchase tables (item-kNN, EASE's Gram matrix), ALS's confidence
matrix (recsys.spark.interactions) and fit (MLlib) and the repurchase cycles; in the
customer-value job the aggregations of the order lines (recsys.spark.clv: the per-order
table, the per-(customer, product) table of the action lists, the pricing sums). The other
jobs (catalog, content), the rest of the models job (purchase history, also-viewed from
sessions, viewed-then-bought), the bundles and substitutes of the rules job, and customer
value's fits (BG/NBD, Gamma-Gamma, RFM, lifecycle, the lists) run on the driver, from the
data directory Spark wrote or from the aggregated tables."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recsys import layout
from recsys.artifacts import Manifest
from recsys.config import Config
from recsys.ingest import IngestReport, table_file
from recsys.models.job import run_models_job
from recsys.pipeline import JOBS, JobContext, job_customer_value, run_jobs, run_pipeline
from recsys.rules.job import run_rules_job
from recsys.rules.mining import MiningResult
from recsys.spark.session import require_pyspark, spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["run_on_spark", "spark_jobs", "SPARK_JOBS"]

# The jobs that run on Spark; the rest of recsys.pipeline.JOBS runs on the driver.
SPARK_JOBS = ("popularity", "basket_stats", "rules", "models", "customer_value")


def run_on_spark(config: Config, *, show_progress: bool = True,
                 spark: SparkSession | None = None) -> tuple[IngestReport, Manifest]:
    """Run the pipeline on ``spark`` (or a session from ``[spark]``, stopped afterwards)."""
    require_pyspark()
    return run_pipeline(config, show_progress=show_progress,
                        runner=partial(_run_jobs_on_spark, spark=spark))


def _run_jobs_on_spark(config: Config, *, show_progress: bool,
                       spark: SparkSession | None) -> tuple[IngestReport, Manifest]:
    from recsys.spark.ingest import ingest_on_spark

    with spark_session(config.spark, spark) as session:
        ingest_fn = partial(ingest_on_spark, session, chunk_rows=config.spark.chunk_rows)
        return run_jobs(config, show_progress=show_progress, ingest_fn=ingest_fn,
                        jobs=spark_jobs(session))


def spark_jobs(spark: SparkSession) -> dict[str, Callable[[JobContext], dict[str, Any]]]:
    """``recsys.pipeline.JOBS`` (same names, same order) with the Spark versions swapped in."""
    from recsys.spark.als import SparkALS
    from recsys.spark.clv import SparkClvAggregates
    from recsys.spark.history import purchase_history_on_spark, repurchase_cycles_on_spark
    from recsys.spark.interactions import customer_item_matrix_on_spark
    from recsys.spark.neighbours import SparkCoPurchase
    from recsys.spark.popularity import basket_stats_on_spark, best_sellers_on_spark
    from recsys.spark.rules import mine_on_spark

    def orders(ctx: JobContext) -> DataFrame:
        return spark.read.parquet(str(table_file(ctx.config.data_dir, "orders")))

    def job_popularity(ctx: JobContext) -> dict[str, Any]:
        cfg = ctx.config.popularity
        table = best_sellers_on_spark(orders(ctx), ctx.catalog, window_days=cfg.window_days,
                                      top_k=cfg.top_k)
        table.to_parquet(layout.POPULAR.at(ctx.out), index=False)
        return {"scopes": int(table["scope"].nunique()), "rows": len(table)}

    def job_basket_stats(ctx: JobContext) -> dict[str, Any]:
        return basket_stats_on_spark(orders(ctx))

    def job_rules(ctx: JobContext) -> dict[str, Any]:
        on_disk = orders(ctx)

        def miner(frame: pd.DataFrame, **thresholds: Any) -> MiningResult:
            # the order lines themselves are read by Spark from the data directory; the
            # category baskets (one line per order line) are derived on the driver
            source = on_disk if frame is ctx.orders else frame
            return mine_on_spark(spark, source, **thresholds)

        return run_rules_job(ctx.orders, ctx.events, ctx.catalog, ctx.config.rules, ctx.out,
                             weights=ctx.config.interactions, miner=miner)

    def events(ctx: JobContext) -> DataFrame | None:
        path = table_file(ctx.config.data_dir, "events")
        return spark.read.parquet(str(path)) if ctx.events is not None and path.exists() else None

    def job_models(ctx: JobContext) -> dict[str, Any]:
        # item-kNN, EASE's Gram matrix, ALS (MLlib) and its confidence matrix, the purchase
        # history and the repurchase cycles on Spark; the rest local
        tables = SparkCoPurchase(spark, orders(ctx), ctx.items, ctx.config.models,
                                 scratch=Path(ctx.config.data_dir))
        try:
            return run_models_job(ctx.orders, ctx.events, ctx.items, ctx.config.models,
                                  ctx.config.interactions, ctx.out, ctx.catalog,
                                  co_purchase=tables,
                                  factorizer=SparkALS(spark, Path(ctx.config.data_dir)),
                                  repurchase=partial(
                                      repurchase_cycles_on_spark, spark, orders(ctx), ctx.items,
                                      min_intervals=ctx.config.models.repurchase_min_intervals,
                                      min_repeat_share=ctx.config.models.repurchase_min_share),
                                  confidence=partial(
                                      customer_item_matrix_on_spark, spark, orders(ctx),
                                      events(ctx), ctx.items, ctx.config.interactions),
                                  purchases=partial(purchase_history_on_spark, spark,
                                                    orders(ctx), ctx.items))
        finally:
            tables.close()

    def job_clv(ctx: JobContext) -> dict[str, Any]:
        # the line-level aggregations on Spark; the fits, RFM and the lists on the driver
        return job_customer_value(ctx, aggregates=SparkClvAggregates(spark, orders(ctx)))

    swapped = {"popularity": job_popularity, "basket_stats": job_basket_stats,
               "rules": job_rules, "models": job_models, "customer_value": job_clv}
    return {name: swapped.get(name, job) for name, job in JOBS.items()}
