"""`recsys run --engine spark`: ingest on Spark, the jobs, and the publish of the local engine.

The artifact is written by the local writers and published by the local store
(``recsys.pipeline.run_jobs``), so its format is the one serving reads. The driver never loads
the order lines nor the events (``JobContext.orders`` and ``JobContext.events`` are None):
the product vocabulary takes their distinct products from Spark, and every job that reads
them reads them on Spark. On Spark: the ingest, best sellers, basket figures; in the rules
job the itemset counting of the product and category rules, the order x product matrix (as
integer codes), the median prices behind bundles and the view sessions behind substitutes;
in the models job the co-purchase tables (item-kNN, EASE's Gram matrix), ALS's confidence
matrix (recsys.spark.interactions, kept there) and fit (MLlib), the purchase history, the repurchase
cycles, the session x product matrix of the view events (recsys.spark.session_matrix) and
viewed-then-bought's pair counts; in the cold_start job the order x product matrix, the view
sessions and the best sellers without the held-out products' orders; in the customer-value
job its skip check and the aggregations of the order lines (recsys.spark.clv). On the
driver: the catalog and content jobs (catalog and vocabulary), rule generation, substitutes
and bundles from the collected inputs, also-viewed (item-kNN) and ``sessions.npz`` from the
collected session matrix, viewed-then-bought's top-K, and customer value's fits, from the
aggregated tables."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.artifacts import Manifest
from recsys.config import Config
from recsys.ingest import IngestReport, table_file
from recsys.matrices import item_vocabulary
from recsys.models.job import run_models_job
from recsys.pipeline import (
    JOBS,
    JobContext,
    job_cold_start,
    job_customer_value,
    run_jobs,
    run_pipeline,
)
from recsys.rules.job import run_rules_job
from recsys.spark.session import require_pyspark, spark_session
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["run_on_spark", "spark_jobs", "SparkOrderLines", "SPARK_JOBS"]

# The jobs that run on Spark; the rest of recsys.pipeline.JOBS runs on the driver.
SPARK_JOBS = ("popularity", "basket_stats", "rules", "models", "cold_start", "customer_value")


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
                        jobs=spark_jobs(session), vocabulary=partial(item_vocabulary_on_spark,
                                                                     session))


def item_vocabulary_on_spark(spark: SparkSession, data_dir: Path,
                             catalog: pd.DataFrame | None) -> Vocabulary:
    """``recsys.matrices.item_vocabulary`` of the catalog, the orders and the events, with the
    distinct products of the orders and of the events found on Spark (the lines stay
    there)."""
    from pyspark.sql import functions as F

    from recsys.spark.session_matrix import event_products_on_spark

    ordered = spark.read.parquet(str(table_file(data_dir, "orders"))).select(
        F.col("product_id").cast("string")).distinct()
    path = table_file(data_dir, "events")
    viewed = event_products_on_spark(spark.read.parquet(str(path)) if path.exists() else None)
    return item_vocabulary(catalog, pd.DataFrame(ordered.toPandas()), viewed)


class SparkOrderLines:
    """The cold_start job's inputs (``recsys.models.cold_start_job.OrderLines``) from the order
    lines of a Spark DataFrame: the rules job's order x product codes, best sellers counted on
    Spark."""

    def __init__(self, spark: SparkSession, orders: DataFrame) -> None:
        self.spark, self.orders = spark, orders

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        from recsys.spark.rules import SparkRuleInputs

        return SparkRuleInputs(self.spark, self.orders).baskets(items)

    def best_sellers_without(self, products: list[str], catalog: pd.DataFrame | None, *,
                             window_days: int, top_k: int) -> pd.DataFrame:
        from recsys.spark.popularity import best_sellers_without_on_spark

        return best_sellers_without_on_spark(self.orders, products, catalog,
                                             window_days=window_days, top_k=top_k)


def spark_jobs(spark: SparkSession) -> dict[str, Callable[[JobContext], dict[str, Any]]]:
    """``recsys.pipeline.JOBS`` (same names, same order) with the Spark versions swapped in;
    none of them reads ``JobContext.orders`` (None: the lines are read here, on Spark)."""
    from recsys.spark.als import SparkALS
    from recsys.spark.clv import SparkClvAggregates, filled_columns
    from recsys.spark.history import purchase_history_on_spark, repurchase_cycles_on_spark
    from recsys.spark.interactions import confidence_on_spark
    from recsys.spark.neighbours import SparkCoPurchase
    from recsys.spark.popularity import basket_stats_on_spark, best_sellers_on_spark
    from recsys.spark.rules import SparkRuleInputs
    from recsys.spark.session_matrix import view_sessions_on_spark, viewed_bought_counts_on_spark

    def orders(ctx: JobContext) -> DataFrame:
        return spark.read.parquet(str(table_file(ctx.config.data_dir, "orders")))

    def events(ctx: JobContext) -> DataFrame | None:
        path = table_file(ctx.config.data_dir, "events")
        return spark.read.parquet(str(path)) if path.exists() else None

    def view_sessions(ctx: JobContext) -> Callable[[], sp.csr_matrix | None]:
        return ctx.view_sessions(partial(view_sessions_on_spark, spark, events(ctx), ctx.items,
                                         ctx.config.interactions))

    def job_popularity(ctx: JobContext) -> dict[str, Any]:
        cfg = ctx.config.popularity
        table = best_sellers_on_spark(orders(ctx), ctx.catalog, window_days=cfg.window_days,
                                      top_k=cfg.top_k)
        table.to_parquet(layout.POPULAR.at(ctx.out), index=False)
        return {"scopes": int(table["scope"].nunique()), "rows": len(table)}

    def job_basket_stats(ctx: JobContext) -> dict[str, Any]:
        return basket_stats_on_spark(orders(ctx))

    def job_rules(ctx: JobContext) -> dict[str, Any]:
        # itemsets, the order x product matrix's codes, the median prices and the view
        # sessions from Spark; rule generation, substitutes and bundles on the driver
        return run_rules_job(SparkRuleInputs(spark, orders(ctx)), ctx.events, ctx.catalog,
                             ctx.config.rules, ctx.out, weights=ctx.config.interactions,
                             items=ctx.items, sessions=view_sessions(ctx))

    def job_models(ctx: JobContext) -> dict[str, Any]:
        # item-kNN, EASE's Gram matrix, ALS (MLlib) and its confidence matrix, the purchase
        # history, the repurchase cycles, the view sessions and viewed-then-bought's pair
        # counts on Spark
        tables = SparkCoPurchase(spark, orders(ctx), ctx.items, ctx.config.models,
                                 scratch=Path(ctx.config.data_dir))
        try:
            return run_models_job(None, ctx.events, ctx.items, ctx.config.models,
                                  ctx.config.interactions, ctx.out, ctx.catalog,
                                  co_purchase=tables,
                                  factorizer=SparkALS(spark, Path(ctx.config.data_dir)),
                                  repurchase=partial(
                                      repurchase_cycles_on_spark, spark, orders(ctx), ctx.items,
                                      min_intervals=ctx.config.models.repurchase_min_intervals,
                                      min_repeat_share=ctx.config.models.repurchase_min_share),
                                  confidence=partial(
                                      confidence_on_spark, spark, orders(ctx),
                                      events(ctx), ctx.items, ctx.config.interactions),
                                  purchases=partial(purchase_history_on_spark, spark,
                                                    orders(ctx), ctx.items),
                                  known_customers="customer_id" in filled_columns(
                                      orders(ctx), ["customer_id"]),
                                  sessions=view_sessions(ctx),
                                  bought_instead=partial(viewed_bought_counts_on_spark, spark,
                                                         events(ctx), ctx.items))
        finally:
            tables.close()

    def job_cold_start_on_spark(ctx: JobContext) -> dict[str, Any]:
        # the grid and the item-kNN refits on the driver; baskets, best sellers and the view
        # sessions from Spark
        return job_cold_start(ctx, lines=SparkOrderLines(spark, orders(ctx)),
                              sessions=view_sessions(ctx))

    def job_clv(ctx: JobContext) -> dict[str, Any]:
        # the line-level aggregations on Spark; the fits, RFM and the lists on the driver
        return job_customer_value(ctx, aggregates=SparkClvAggregates(spark, orders(ctx)))

    swapped = {"popularity": job_popularity, "basket_stats": job_basket_stats,
               "rules": job_rules, "models": job_models, "cold_start": job_cold_start_on_spark,
               "customer_value": job_clv}
    return {name: swapped.get(name, job) for name, job in JOBS.items()}
