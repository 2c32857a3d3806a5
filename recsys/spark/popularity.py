"""Best sellers and basket figures as Spark aggregations; the small per-product table is
ranked on the driver by the local code (``recsys.popularity.rank_scopes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from recsys.popularity import rank_scopes

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["best_sellers_on_spark", "best_sellers_without_on_spark", "basket_stats_on_spark"]


def best_sellers_without_on_spark(orders: DataFrame, products: list[str],
                                  catalog: pd.DataFrame | None, *, window_days: int,
                                  top_k: int) -> pd.DataFrame:
    """``best_sellers_on_spark`` of the orders that hold none of ``products``."""
    from pyspark.sql import functions as F

    holding = (orders.filter(F.col("product_id").cast("string").isin(products))
               .select("order_id").distinct())
    return best_sellers_on_spark(orders.join(holding, "order_id", "left_anti"), catalog,
                                 window_days=window_days, top_k=top_k)


def best_sellers_on_spark(orders: DataFrame, catalog: pd.DataFrame | None, *, window_days: int,
                          top_k: int) -> pd.DataFrame:
    """``recsys.popularity.best_sellers`` with the per-product counts made by Spark (distinct
    orders exact; unit and revenue sums in Spark's summation order)."""
    from pyspark.sql import functions as F

    lines = orders
    if window_days and "ordered_at" in orders.columns:
        newest = orders.agg(F.max("ordered_at")).first()
        if newest is not None and newest[0] is not None:
            start = pd.Timestamp(newest[0]) - pd.Timedelta(days=window_days)
            lines = orders.filter(F.col("ordered_at") > F.lit(start.to_pydatetime()))
    revenue = (F.col("quantity") * F.col("unit_price") if "unit_price" in orders.columns
               else F.lit(None).cast("double"))
    stats = (lines.groupBy("product_id")
             .agg(F.countDistinct("order_id").alias("orders"), F.sum("quantity").alias("units"),
                  F.sum(revenue).alias("revenue")))
    table = pd.DataFrame(stats.toPandas())
    if "unit_price" in orders.columns:
        table["revenue"] = table["revenue"].fillna(0.0)  # pandas sums all-NaN groups to 0
    else:
        table["revenue"] = 0.0
    table["product_id"] = table["product_id"].astype("string")
    table["orders"] = table["orders"].astype("int64")
    return rank_scopes(table, catalog, top_k=top_k)


def basket_stats_on_spark(orders: DataFrame) -> dict[str, Any]:
    """Orders, products and basket sizes (distinct products per order), as the local job."""
    from pyspark.sql import functions as F

    sizes = orders.groupBy("order_id").agg(F.countDistinct("product_id").alias("size"))
    row = sizes.agg(F.count(F.lit(1)).alias("orders"), F.sum("size").alias("lines"),
                    F.max("size").alias("max")).first()
    n = int(row["orders"]) if row else 0
    products = orders.select("product_id").distinct().count()
    return {"orders": n, "products_ordered": int(products),
            "mean_basket_size": round(int(row["lines"]) / n, 4) if row and n else 0.0,
            "max_basket_size": int(row["max"]) if row and n else 0}
