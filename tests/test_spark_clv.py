"""The customer-value job with its line-level aggregations on Spark (``local[2]``): every
file it writes equals the local job's (counts exactly, floats to 1e-9 relative: Spark sums
in another order), on Online Retail II and on the generated demo shop with discount data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.analytics.job import OUTPUT_FILES, clv_inputs_missing, run_clv_job
from recsys.analytics.settings import AnalyticsConfig
from recsys.errors import InputError
from recsys.spark import clv as spark_clv
from recsys.spark.clv import SparkClvAggregates
from tests.conftest import DemoShop

RTOL = 1e-9


def _retail_lines(path: Path) -> pd.DataFrame:
    """Online Retail II's purchase lines as canonical orders, guests (no customer) kept."""
    raw = pd.read_parquet(path)
    invoice = raw["Invoice"].astype(str)
    keep = (~invoice.str.startswith("C") & (raw["Quantity"] > 0)).to_numpy()
    return pd.DataFrame({
        "order_id": pd.array(invoice[keep].to_numpy(), dtype="string"),
        "product_id": pd.array(raw["StockCode"][keep].astype(str).to_numpy(), dtype="string"),
        "customer_id": raw["Customer ID"][keep].astype("Int64").astype("string").to_numpy(),
        "ordered_at": pd.to_datetime(raw["InvoiceDate"][keep]).to_numpy("datetime64[us]"),
        "quantity": raw["Quantity"][keep].to_numpy(np.float64),
        "unit_price": raw["Price"][keep].to_numpy(np.float64)})


def _assert_same_figures(got: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            _assert_same_figures(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            _assert_same_figures(a, b, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert math.isclose(got, expected, rel_tol=RTOL, abs_tol=1e-12), (where, got, expected)
    else:
        assert got == expected, (where, got, expected)


def _assert_same_outputs(spark_dir: Path, local_dir: Path) -> None:
    assert sorted(p.name for p in spark_dir.iterdir()) == sorted(OUTPUT_FILES)
    for name in OUTPUT_FILES:
        if name.endswith(".json"):
            _assert_same_figures(json.loads((spark_dir / name).read_text()),
                                 json.loads((local_dir / name).read_text()), name)
            continue
        got, expected = pd.read_parquet(spark_dir / name), pd.read_parquet(local_dir / name)
        assert len(expected), name  # a parity of empty tables would prove little
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=RTOL, atol=1e-12,
                                      obj=name)


def _both(spark: Any, lines: pd.DataFrame, catalog: pd.DataFrame | None, tmp: Path,
          config: AnalyticsConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job run on ``lines`` locally and with the aggregations on Spark (read back from
    Parquet, as the Spark engine reads the data directory)."""
    lines.to_parquet(tmp / "orders.parquet", index=False)
    frame = spark.read.parquet(str(tmp / "orders.parquet"))
    local = run_clv_job(lines, catalog, tmp / "local", config=config)
    on_spark = run_clv_job(SparkClvAggregates(spark, frame), catalog, tmp / "spark",
                           config=config)
    _assert_same_outputs(tmp / "spark", tmp / "local")
    return local, on_spark


def test_online_retail_equals_the_local_job(spark_local: Any, online_retail_path: Path,
                                            tmp_path: Path) -> None:
    lines = _retail_lines(online_retail_path)
    local, _ = _both(spark_local, lines, None, tmp_path, AnalyticsConfig())
    assert local["customers"] == 4314 and local["order_lines_without_customer"] > 0
    assert local["actions"]["replenishment_pairs"] > 0 and local["actions"]["winback_customers"] > 0


@pytest.mark.parametrize("group_lines", [spark_clv.GROUP_LINES, 2_000])
def test_demo_shop_with_discounts_margins_and_as_of_equals_the_local_job(
        spark_local: Any, demo_shop: DemoShop, tmp_path: Path, group_lines: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Catalog prices, margins (one product's unknown), categories, stock flags; discount and
    list-price columns (with missing values); an observation end before the last order; a
    line without a price. The customers' facts made in one group, and in many (each a Python
    worker's call of the local code on its customers' orders)."""
    monkeypatch.setattr(spark_clv, "GROUP_LINES", group_lines)
    tables = demo_shop.tables()
    lines, catalog = tables["orders"], tables["catalog"]
    n = len(lines)
    lines["discount"] = np.where(np.arange(n) % 7 == 0, 0.1, np.where(np.arange(n) % 11 == 0,
                                                                      np.nan, 0.0))
    lines["list_price"] = np.where(np.arange(n) % 5 == 0, lines["unit_price"] * 1.25, np.nan)
    lines.loc[lines.index[::13], "unit_price"] = np.nan  # the catalog's price then
    catalog.loc[catalog.index[0], "margin"] = np.nan
    as_of = lines["ordered_at"].quantile(0.9)
    config = AnalyticsConfig(as_of=as_of.to_pydatetime())
    local, _ = _both(spark_local, lines, catalog, tmp_path, config)
    assert local["order_lines_after_as_of"] > 0 and local["margins_known"]
    assert local["order_lines_used"] > 10 * 2_000  # many groups in the second case
    shares = pd.read_parquet(tmp_path / "spark" / "price_sensitivity.parquet")
    assert (shares["discount_revenue_share"] > 0).any()  # the discount path ran


def test_orders_without_any_price_are_refused_as_locally(spark_local: Any,
                                                        tmp_path: Path) -> None:
    lines = pd.DataFrame({"order_id": ["o1"], "product_id": ["p"], "customer_id": ["c"],
                          "ordered_at": pd.to_datetime(["2024-01-01"]),
                          "unit_price": [np.nan]})
    lines.to_parquet(tmp_path / "orders.parquet", index=False)
    frame = spark_local.read.parquet(str(tmp_path / "orders.parquet"))
    for source in (lines, SparkClvAggregates(spark_local, frame)):
        with pytest.raises(InputError, match="customer value needs prices"):
            run_clv_job(source, None, tmp_path / "out", config=AnalyticsConfig())


def test_the_skip_check_answers_from_spark_as_from_the_lines(spark_local: Any,
                                                              tmp_path: Path) -> None:
    """Why the job is skipped, from the Spark DataFrame's schema and counts: the local answer
    for a full shop, a missing or empty customer_id / ordered_at and prices only as NaN."""
    full = pd.DataFrame({"order_id": ["o1", "o2"], "product_id": ["p", "q"],
                         "customer_id": pd.Series([None, "c"], dtype="string"),
                         "ordered_at": pd.to_datetime(["2024-01-01", None]).astype(
                             "datetime64[us]"),  # Spark reads no nanoseconds
                         "unit_price": [np.nan, 2.5]})
    priced = pd.DataFrame({"product_id": ["p", "q"], "price": [1.0, np.nan]})
    unpriced = pd.DataFrame({"product_id": ["p"], "price": [np.nan]})
    variants = {"full": full, "no customer column": full.drop(columns="customer_id"),
                "no customer": full.assign(customer_id=pd.Series([None, None], dtype="string")),
                "no date column": full.drop(columns="ordered_at"),
                "no date": full.assign(ordered_at=pd.Series(pd.NaT, full.index, "datetime64[us]")),
                "prices NaN": full.assign(unit_price=np.nan),
                "no price column": full.drop(columns="unit_price")}
    answers = set()
    for name, lines in variants.items():
        lines.to_parquet(tmp_path / f"{name}.parquet", index=False)
        frame = SparkClvAggregates(spark_local, spark_local.read.parquet(
            str(tmp_path / f"{name}.parquet")))
        for catalog in (None, priced, unpriced):
            expected = clv_inputs_missing(lines, catalog)
            assert clv_inputs_missing(frame, catalog) == expected, (name, catalog)
            answers.add(expected)
    assert len(answers) == 4  # None, no customer_id, no ordered_at, no prices


def test_edge_cases_equal_the_local_job(spark_local: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A small random shop: integer catalog prices, a catalog without categories, missing
    quantities and prices, guest lines, lines on one day, orders whose lines are not next to
    each other, and two customers on one order (its first line names it, as pandas' ``first``);
    the customers' facts made in groups of about 50 lines."""
    monkeypatch.setattr(spark_clv, "GROUP_LINES", 50)
    rng = np.random.default_rng(7)
    n = 400
    order = rng.integers(0, 120, n)
    lines = pd.DataFrame({
        "order_id": pd.array([f"o{o:03d}" for o in order], dtype="string"),
        "product_id": pd.array([f"p{p}" for p in rng.integers(0, 9, n)], dtype="string"),
        "customer_id": pd.array([None if o % 17 == 0 else f"c{o % 23}" for o in order],
                                dtype="string"),
        "ordered_at": (pd.Timestamp("2024-01-01") + pd.to_timedelta(order * 3, unit="D")
                       + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")).as_unit("us"),
        "quantity": np.where(rng.random(n) < 0.1, np.nan, rng.integers(1, 4, n).astype(float)),
        "unit_price": np.where(rng.random(n) < 0.3, np.nan, rng.integers(100, 900, n) / 100)})
    # an order's lines scattered: pandas sums them with Kahan's loop, not pairwise
    shared = np.flatnonzero(lines["order_id"] == "o005")
    assert len(shared) >= 2
    lines.loc[shared, "customer_id"] = np.where(np.arange(len(shared)) % 2, "c2", "c1")
    catalog = pd.DataFrame({"product_id": pd.array([f"p{p}" for p in range(9)], dtype="string"),
                            "price": np.arange(9) + 3, "category": pd.array([None] * 9,
                                                                              dtype="string")})
    _both(spark_local, lines, catalog, tmp_path, AnalyticsConfig())
