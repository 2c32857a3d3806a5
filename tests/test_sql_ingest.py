"""Ingest from SQL: the real PostgreSQL on this machine (services) and SQLite files."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from recsys.cli import main
from recsys.errors import InputError
from recsys.ingest import ingest, load_table
from recsys.mapping import SourceMapping, load_mapping

CET = timezone(timedelta(hours=1))

# (invoice, sku, customer, ts, qty, price); the reason each row should get, or None.
Row = tuple[str | None, str | None, int | None, datetime | None, int, Decimal]
ROWS: list[tuple[Row, str | None]] = [
    (("5001", "A1", 13085, datetime(2010, 1, 4, 10, 0, tzinfo=CET), 2, Decimal("1.25")), None),
    (("5001", "B2", 13085, datetime(2010, 1, 4, 10, 0, tzinfo=CET), 1, Decimal("3.00")), None),
    (("5002", " A1 ", None, datetime(2010, 1, 5, 23, 30, tzinfo=UTC), 4, Decimal("1.25")), None),
    (("C5003", "A1", 13085, datetime(2010, 1, 6, 9, 0, tzinfo=UTC), -2, Decimal("1.25")),
     "cancellation"),
    (("5004", None, 7, datetime(2010, 1, 6, 9, 0, tzinfo=UTC), 1, Decimal("1.00")),
     "missing_product_id"),
    (("5005", "POST", 7, datetime(2010, 1, 6, 9, 0, tzinfo=UTC), 1, Decimal("18.00")),
     "non_product_code"),
    (("5006", "A1", 7, None, 1, Decimal("1.00")), "missing_date"),
    (("5007", "A1", 7, datetime(2010, 1, 7, 9, 0, tzinfo=UTC), 0, Decimal("1.00")),
     "non_positive_quantity"),
    (("5008", "B2", 7, datetime(2010, 1, 7, 9, 0, tzinfo=UTC), 1, Decimal("0.00")),
     "non_positive_price"),
    ((None, "B2", 7, datetime(2010, 1, 7, 9, 0, tzinfo=UTC), 1, Decimal("2.00")),
     "missing_order_id"),
]
EXPECTED_BY_REASON = {r: 1 for _, r in ROWS if r}
COLUMNS = {"order_id": "invoice", "product_id": "sku", "customer_id": "customer",
           "ordered_at": "ts", "quantity": "qty", "unit_price": "price"}
RULES = {"cancellation_prefix": "C", "non_product_codes": ["POST"]}


def _mapping(**orders: object) -> SourceMapping:
    return SourceMapping.model_validate({"orders": {"columns": COLUMNS, **RULES, **orders}})


def _mapping_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "sql_mapping.toml"
    cols = "\n".join(f'{k} = "{v}"' for k, v in COLUMNS.items())
    path.write_text(f'[orders]\ncancellation_prefix = "C"\nnon_product_codes = ["POST"]\n{extra}\n'
                    f"[orders.columns]\n{cols}\n", encoding="utf-8")
    return path


def _check(out: Path, rows: list[tuple[Row, str | None]]) -> None:
    """Counts, quarantine (row number and reason per result row) and accepted values."""
    data = json.loads((out / "report.json").read_text())
    rep = data["tables"]["orders"]
    expected = {i: r for i, (_, r) in enumerate(rows, start=1) if r}
    assert rep["rows_read"] == len(rows)
    assert rep["rows_rejected"] == len(expected)
    assert rep["rows_accepted"] == len(rows) - len(expected)
    assert rep["rejected_by_reason"] == dict(sorted(pd.Series(list(expected.values()))
                                                   .value_counts().items()))
    quarantine = pd.read_csv(out / "quarantine" / "orders.csv", dtype=str, keep_default_na=False)
    assert dict(zip(quarantine["row"].astype(int), quarantine["reason"], strict=True)) == expected
    orders = load_table(out, "orders")
    assert orders is not None
    assert orders["order_id"].tolist() == ["5001", "5001", "5002"]
    assert orders["product_id"].tolist() == ["A1", "B2", "A1"]
    assert orders["customer_id"].tolist()[:2] == ["13085", "13085"]
    assert pd.isna(orders["customer_id"].iloc[2])
    # timestamps with a zone arrive as naive UTC
    assert orders["ordered_at"].tolist() == [pd.Timestamp("2010-01-04 09:00"),
                                             pd.Timestamp("2010-01-04 09:00"),
                                             pd.Timestamp("2010-01-05 23:30")]
    assert orders["quantity"].tolist() == [2.0, 1.0, 4.0]
    assert orders["unit_price"].tolist() == [1.25, 3.0, 1.25]


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_create(url: str, table: str, rows: list[tuple[Row, str | None]]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {table} (pos integer, invoice text, sku text, "
                          "customer bigint, ts timestamptz, qty integer, price numeric(10, 2))"))
        if rows:
            conn.execute(
                text(f"INSERT INTO {table} VALUES (:pos, :invoice, :sku, :customer, :ts, :qty, "
                     ":price)"),
                [dict(zip(["pos", *COLUMNS.values()], (i, *row), strict=True))
                 for i, (row, _) in enumerate(rows)])
    engine.dispose()


@pytest.mark.services
def test_postgres_table_url(postgres_url: str, pg_table: str, tmp_path: Path) -> None:
    _pg_create(postgres_url, pg_table, ROWS)
    out = tmp_path / "data"
    report = ingest({"orders": f"{postgres_url}#{pg_table}"}, _mapping(), out,
                    show_progress=False)
    rep = report.tables["orders"]
    assert (rep.rows_read, rep.rows_accepted, rep.rows_rejected) == (10, 3, 7)
    assert rep.rejected_by_reason == dict(sorted(EXPECTED_BY_REASON.items()))
    assert rep.source == f"{postgres_url} ({pg_table})"
    # Without ORDER BY the row order is the server's: match quarantine rows by their raw values.
    quarantine = pd.read_csv(out / "quarantine" / "orders.csv", dtype=str, keep_default_na=False)
    by_pos = dict(zip(quarantine["pos"].astype(int), quarantine["reason"], strict=True))
    assert by_pos == {i: r for i, (_, r) in enumerate(ROWS) if r}
    assert set(quarantine["source"]) == {rep.source}


@pytest.mark.services
def test_postgres_query_from_mapping(postgres_url: str, pg_table: str, tmp_path: Path) -> None:
    _pg_create(postgres_url, pg_table, ROWS)
    out = tmp_path / "data"
    query = f"SELECT invoice, sku, customer, ts, qty, price FROM {pg_table} ORDER BY pos"
    ingest({"orders": postgres_url}, _mapping(query=query), out, show_progress=False)
    _check(out, ROWS)
    # A query can filter too: only the rows after the cancellation.
    query = f"SELECT * FROM {pg_table} WHERE pos >= 3 ORDER BY pos"
    report = ingest({"orders": postgres_url}, _mapping(query=query), out, show_progress=False)
    assert report.tables["orders"].rows_read == 7
    assert report.tables["orders"].rows_accepted == 0


@pytest.mark.services
def test_postgres_via_cli(postgres_url: str, pg_table: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    _pg_create(postgres_url, pg_table, ROWS)
    out = tmp_path / "data"
    mapping = _mapping_file(tmp_path, f'query = "SELECT * FROM {pg_table} ORDER BY pos"')
    code = main(["-q", "ingest", "--orders", postgres_url, "--mapping", str(mapping),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "orders: 10 read, 3 accepted, 7 rejected" in captured.out
    assert "    cancellation: 1" in captured.out
    _check(out, ROWS)


@pytest.mark.services
def test_postgres_errors_fail_before_writing(postgres_url: str, pg_table: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    mapping = _mapping_file(tmp_path)
    # The table does not exist yet.
    code = main(["-q", "ingest", "--orders", f"{postgres_url}#{pg_table}", "--mapping",
                 str(mapping), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: {postgres_url} ({pg_table}): the database refused")
    assert f'relation "{pg_table}" does not exist' in captured.err
    assert "Traceback" not in captured.err
    with pytest.raises(InputError, match="does not exist"):
        ingest({"orders": f"{postgres_url}#{pg_table}"}, _mapping(), out, show_progress=False)
    # An empty table: nothing to ingest.
    _pg_create(postgres_url, pg_table, [])
    with pytest.raises(InputError, match=rf"\({pg_table}\): the table or query returned no rows"):
        ingest({"orders": f"{postgres_url}#{pg_table}"}, _mapping(), out, show_progress=False)
    # A column the mapping names but the query's result lacks.
    lacking = SourceMapping.model_validate({"orders": {
        "columns": {"order_id": "Invoice"}, "query": "SELECT 1 AS invoice, 'A' AS product_id"}})
    with pytest.raises(InputError, match=r"mapped column 'Invoice' \(for orders.order_id\)"):
        ingest({"orders": postgres_url}, lacking, out, show_progress=False)
    assert not out.exists()


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite(tmp_path: Path, rows: list[tuple[Row, str | None]]) -> str:
    db = tmp_path / "shop.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (invoice TEXT, sku TEXT, customer INTEGER, ts TEXT, "
                "qty INTEGER, price REAL)")
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
        [(inv, sku, cust, ts.isoformat() if ts else None, qty, float(price))
         for (inv, sku, cust, ts, qty, price), _ in rows])
    con.execute("CREATE TABLE empty_orders (invoice TEXT, sku TEXT)")
    con.commit()
    con.close()
    return f"sqlite:///{db}"


def test_sqlite_table_url(tmp_path: Path) -> None:
    url = _sqlite(tmp_path, ROWS)
    out = tmp_path / "data"
    report = ingest({"orders": f"{url}#orders"}, _mapping(), out, show_progress=False)
    assert report.tables["orders"].source.endswith("shop.sqlite (orders)")
    _check(out, ROWS)


def test_sqlite_query_and_table_option(tmp_path: Path) -> None:
    url = _sqlite(tmp_path, ROWS)
    out = tmp_path / "data"
    report = ingest({"orders": url}, _mapping(query="SELECT * FROM orders WHERE qty > 0"), out,
                    show_progress=False)
    rep = report.tables["orders"]
    assert (rep.rows_read, rep.rows_accepted) == (8, 3)
    assert "non_positive_quantity" not in rep.rejected_by_reason
    assert "cancellation" not in rep.rejected_by_reason
    report = ingest({"orders": url}, _mapping(table="orders"), out, show_progress=False)
    assert report.tables["orders"].rows_read == 10


def test_sqlite_via_cli_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _sqlite(tmp_path, ROWS)
    mapping = _mapping_file(tmp_path)
    out = tmp_path / "data"
    code = main(["-q", "ingest", "--orders", f"{url}#orders", "--mapping", str(mapping),
                 "--out", str(out)])
    assert code == 0
    assert "orders: 10 read, 3 accepted, 7 rejected" in capsys.readouterr().out
    assert load_mapping(mapping).orders.columns == COLUMNS

    bad_out = tmp_path / "bad"
    for location, message in [(f"{url}#missing", "no such table: missing"),
                              (f"{url}#empty_orders", "returned no rows"),
                              (url, "a SQL source needs a table"),
                              (f"{url}#orders;drop", "not a plain table name")]:
        code = main(["-q", "ingest", "--orders", location, "--mapping", str(mapping),
                     "--out", str(bad_out)])
        err = capsys.readouterr().err
        assert code == 1, location
        assert err.startswith("error: sqlite:///") and message in err
        assert "Traceback" not in err and "internal error" not in err
    assert not bad_out.exists()
