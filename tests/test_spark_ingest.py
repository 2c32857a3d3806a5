"""Ingest on Spark (local[2]): the same report, typed tables and quarantine as the local ingest,
on the small shop (with blank lines), on Online Retail II and from PostgreSQL over JDBC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.ingest import ingest
from recsys.mapping import load_mapping
from recsys.spark.ingest import ingest_on_spark, jdbc_url
from tests.conftest import REPO, skip_or_fail, write_small_shop
from tests.spark_fixtures import JDBC_JAR


def _report(folder: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    report.pop("created_at")
    return report


def assert_same_ingest(local: Path, spark: Path, tables: list[str]) -> None:
    assert _report(spark) == _report(local)
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(spark / f"{table}.parquet"),
                                      pd.read_parquet(local / f"{table}.parquet"))
        quarantine = f"quarantine/{table}.csv"
        assert (spark / quarantine).read_text() == (local / quarantine).read_text()


def test_small_shop_with_blank_lines(spark_local: Any, tmp_path: Path) -> None:
    files = write_small_shop(tmp_path / "raw")
    lines = files["orders"].read_text().splitlines()
    lines[3:3] = [""]  # a blank line, then a line of delimiters only: both rows_empty
    lines[6:6] = [",,,,,", ""]
    files["orders"].write_text("\n".join(lines) + "\n")
    mapping = load_mapping(files["mapping"])
    sources = {t: str(files[t]) for t in ("orders", "events", "catalog")}
    ingest(sources, mapping, tmp_path / "local", show_progress=False)
    # splits of ~100 bytes: rows are numbered across partitions, blank lines in several
    spark_local.conf.set("spark.sql.files.maxPartitionBytes", "100")
    spark_local.conf.set("spark.sql.files.openCostInBytes", "0")
    try:
        assert spark_local.read.text(sources["orders"]).rdd.getNumPartitions() > 2
        report = ingest_on_spark(spark_local, sources, mapping, tmp_path / "spark")
    finally:
        spark_local.conf.unset("spark.sql.files.maxPartitionBytes")
        spark_local.conf.unset("spark.sql.files.openCostInBytes")
    assert report.tables["orders"].rows_empty == 3
    assert report.tables["orders"].rejected_by_reason == {"cancellation": 1,
                                                          "unparseable_date": 1}
    assert_same_ingest(tmp_path / "local", tmp_path / "spark", ["orders", "events", "catalog"])
    quarantine = pd.read_csv(tmp_path / "spark" / "quarantine" / "orders.csv")
    assert quarantine["row"].tolist() == [12, 13]  # the file's data rows, blank lines counted


def test_header_problems_stop_before_spark_reads(spark_local: Any, tmp_path: Path) -> None:
    from recsys.errors import InputError

    bad = tmp_path / "orders.csv"
    bad.write_text("order,product\no1,p1\n")
    with pytest.raises(InputError, match="order_id"):
        ingest_on_spark(spark_local, {"orders": str(bad)}, load_mapping(None), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.datasets
@pytest.mark.slow
def test_online_retail_ii_matches_the_local_ingest(spark_local: Any, online_retail_path: Path,
                                                    tmp_path: Path) -> None:
    # the Spark engine does not derive a catalog from order lines (it says so): compare the rest
    mapping = load_mapping(REPO / "configs" / "mappings" / "online_retail_ii.toml").model_copy(
        update={"catalog_from_orders": None})
    sources = {"orders": str(online_retail_path)}
    ingest(sources, mapping, tmp_path / "local", show_progress=False)
    report = ingest_on_spark(spark_local, sources, mapping, tmp_path / "spark", chunk_rows=50_000)
    assert report.tables["orders"].rows_read == 525_461
    assert_same_ingest(tmp_path / "local", tmp_path / "spark", ["orders"])


def test_jdbc_url_from_a_sqlalchemy_url() -> None:
    assert jdbc_url("postgresql+psycopg://shop:pw@db.internal:5433/shop#lines") == (
        "jdbc:postgresql://db.internal:5433/shop",
        {"user": "shop", "password": "pw", "driver": "org.postgresql.Driver"})


@pytest.mark.services
def test_postgresql_over_jdbc(spark_local: Any, postgres_url: str, pg_table: str,
                              tmp_path: Path) -> None:
    if not JDBC_JAR.exists():
        skip_or_fail(f"PostgreSQL JDBC driver not at {JDBC_JAR} (apt-get install "
                     "libpostgresql-jdbc-java)")
    from sqlalchemy import create_engine

    files = write_small_shop(tmp_path / "raw")
    frame = pd.read_csv(files["orders"], dtype=str)
    engine = create_engine(postgres_url)
    frame.to_sql(pg_table, engine, index=False)
    engine.dispose()
    mapping = load_mapping(files["mapping"])
    sources = {"orders": f"{postgres_url}#{pg_table}"}
    ingest(sources, mapping, tmp_path / "local", show_progress=False)
    ingest_on_spark(spark_local, sources, mapping, tmp_path / "spark")
    assert_same_ingest(tmp_path / "local", tmp_path / "spark", ["orders"])
