"""Tests for ingest end to end: data directory, report.json, quarantine, CLI, failures, mappings."""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.cli import main
from recsys.errors import ConfigError, InputError
from recsys.ingest import ingest, load_table
from recsys.mapping import SourceMapping, load_mapping

MAPPING_TOML = """
[orders]
cancellation_prefix = "C"
non_product_codes = ["POST", "M"]
date_format = "%d/%m/%Y %H:%M"

[orders.columns]
order_id = "Invoice"
product_id = "StockCode"
customer_id = "Customer ID"
ordered_at = "InvoiceDate"
quantity = "Quantity"
unit_price = "Price"

[events]
date_unit = "s"
event_types = { pv = "view", cart = "add_to_cart" }

[events.columns]
product_id = "sku"
event_type = "action"
occurred_at = "ts"
session_id = "visit"
"""

# Semicolon-delimited, day-first dates; row numbers are data rows (1-based).
ORDERS_CSV = """\
Invoice;StockCode;Customer ID;InvoiceDate;Quantity;Price
1001;A;13085.0;01/12/2009 07:45;2;1.5
1001;B;13085.0;01/12/2009 07:45;1;3
C1002;A;13085.0;02/12/2009 08:00;-2;1.5
1003;POST;;02/12/2009 09:00;1;18
;A;7;02/12/2009 09:00;1;1
1004;C;7;31/02/2009 10:00;1;1
1005;A;7;03/12/2009 10:00;0;1
1006;B;;03/12/2009 11:00;3;0
1007; C ;8;04/12/2009 12:00;;
"""
EXPECTED_ORDER_REJECTS = [  # (row, reason, column)
    (3, "cancellation", "order_id"),
    (4, "non_product_code", "product_id"),
    (5, "missing_order_id", "order_id"),
    (6, "unparseable_date", "ordered_at"),
    (7, "non_positive_quantity", "quantity"),
    (8, "non_positive_price", "unit_price"),
]

EVENTS_CSV = """\
sku,action,ts,visit
A,PV,1700000000,s1
B,cart,1700000060,s1
A,teleport,1700000100,s2
,view,1700000100,s2
C,view,1700000200,
"""
EXPECTED_EVENT_REJECTS = [
    (3, "unknown_event_type", "event_type"),
    (4, "missing_product_id", "product_id"),
    (5, "missing_session_and_customer", "session_id"),
]

CATALOG_CSV = """\
product_id,name,price,in_stock
A,Mug,3.5,yes
B,Plate,2,no
A,Mug again,3.5,yes
D,Bowl,-1,yes
"""
EXPECTED_CATALOG_REJECTS = [
    (3, "duplicate_product_id", "product_id"),
    (4, "negative_price", "price"),
]


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    files = {"orders": src / "orders.csv", "events": src / "events.csv",
             "catalog": src / "catalog.csv", "mapping": src / "mapping.toml"}
    files["orders"].write_text(ORDERS_CSV, encoding="utf-8")
    files["events"].write_text(EVENTS_CSV, encoding="utf-8")
    files["catalog"].write_text(CATALOG_CSV, encoding="utf-8")
    files["mapping"].write_text(MAPPING_TOML, encoding="utf-8")
    return files


def _read_quarantine(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _rejects(quarantine: pd.DataFrame) -> list[tuple[int, str, str]]:
    return [(int(r), reason, col) for r, reason, col in
            zip(quarantine["row"], quarantine["reason"], quarantine["column"], strict=True)]


def _by_reason(expected: list[tuple[int, str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason, _ in expected:
        out[reason] = out.get(reason, 0) + 1
    return dict(sorted(out.items()))


def test_ingest_writes_tables_quarantine_and_report(shop: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "data"
    sources = {t: str(shop[t]) for t in ("orders", "events", "catalog")}
    report = ingest(sources, load_mapping(shop["mapping"]), out, show_progress=False)

    data = json.loads((out / "report.json").read_text())
    expected = {"orders": (9, EXPECTED_ORDER_REJECTS), "events": (5, EXPECTED_EVENT_REJECTS),
                "catalog": (4, EXPECTED_CATALOG_REJECTS)}
    merged: dict[str, int] = {}
    for table, (n_rows, rejects) in expected.items():
        rep = data["tables"][table]
        assert rep["rows_read"] == n_rows
        assert rep["rows_rejected"] == len(rejects)
        assert rep["rows_accepted"] == n_rows - len(rejects)
        assert rep["rejected_by_reason"] == _by_reason(rejects)
        assert rep["source"] == str(shop[table])
        quarantine = _read_quarantine(out / "quarantine" / f"{table}.csv")
        assert rep["quarantine_file"] == f"quarantine/{table}.csv"
        assert _rejects(quarantine) == rejects
        assert set(quarantine["source"]) == {str(shop[table])}
        accepted = load_table(out, table)
        assert accepted is not None and len(accepted) == rep["rows_accepted"]
        for reason, count in rep["rejected_by_reason"].items():
            merged[reason] = merged.get(reason, 0) + count
    assert data["rows_read"] == 18
    assert data["rows_rejected"] == len(EXPECTED_ORDER_REJECTS) + len(
        EXPECTED_EVENT_REJECTS) + len(EXPECTED_CATALOG_REJECTS)
    assert data["rows_read"] == data["rows_accepted"] + data["rows_rejected"]
    assert data["rejected_by_reason"] == dict(sorted(merged.items()))
    assert report.to_dict()["rows_accepted"] == data["rows_accepted"]

    # The quarantine keeps the raw values of the rejected rows.
    q_orders = _read_quarantine(out / "quarantine" / "orders.csv")
    assert q_orders.iloc[0][["Invoice", "StockCode", "Quantity"]].tolist() == ["C1002", "A", "-2"]
    assert q_orders.iloc[3]["InvoiceDate"] == "31/02/2009 10:00"

    # Accepted orders: typed, ids normalised, day-first dates parsed, quantity defaulted.
    orders = load_table(out, "orders")
    assert orders is not None
    assert orders["order_id"].tolist() == ["1001", "1001", "1007"]
    assert orders["product_id"].tolist() == ["A", "B", "C"]
    assert orders["customer_id"].tolist() == ["13085", "13085", "8"]
    assert orders["ordered_at"].tolist()[0] == pd.Timestamp("2009-12-01 07:45")
    assert orders["quantity"].tolist() == [2.0, 1.0, 1.0]
    events = load_table(out, "events")
    assert events is not None and events["event_type"].tolist() == ["view", "add_to_cart"]
    # Catalog cross-check: one accepted order names product C, which the catalog lacks; the
    # accepted events name only A and B.
    assert len(data["warnings"]) == 1
    assert data["warnings"][0].startswith("orders: 1 rows (1 products)")


def test_cli_ingest_prints_the_report_summary(shop: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    code = main(["-q", "ingest", "--orders", str(shop["orders"]), "--events", str(shop["events"]),
                 "--mapping", str(shop["mapping"]), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"orders: 9 read, 3 accepted, 6 rejected  ({shop['orders']})" in captured.out
    assert f"events: 5 read, 2 accepted, 3 rejected  ({shop['events']})" in captured.out
    for reason, count in _by_reason(EXPECTED_ORDER_REJECTS + EXPECTED_EVENT_REJECTS).items():
        assert f"    {reason}: {count}" in captured.out
    assert "    quarantine: quarantine/orders.csv" in captured.out
    assert f"report: {out / 'report.json'}" in captured.out
    data = json.loads((out / "report.json").read_text())
    assert data["rows_read"] == 14 and data["rows_rejected"] == 9
    assert set(data["tables"]) == {"orders", "events"}


def test_reingest_without_a_table_removes_its_stale_files(shop: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "data"
    mapping = load_mapping(shop["mapping"])
    ingest({"orders": str(shop["orders"]), "catalog": str(shop["catalog"])}, mapping, out,
           show_progress=False)
    assert (out / "catalog.parquet").exists()
    ingest({"orders": str(shop["orders"])}, mapping, out, show_progress=False)
    assert not (out / "catalog.parquet").exists()
    assert not (out / "quarantine" / "catalog.csv").exists()
    assert load_table(out, "catalog", required=False) is None


# -- failures before any work -------------------------------------------------------------------


def _bad_source(tmp_path: Path, kind: str, table: str = "orders") -> tuple[Path, str, bool]:
    """A broken source, the text its error message must contain, and whether to use the mapping."""
    path = tmp_path / f"{kind}.csv"
    header = "Invoice;StockCode;Customer ID;InvoiceDate;Quantity;Price\n"
    if kind == "missing_column":  # identity mapping: product_id is looked up by its own name
        path.write_text("order_id,customer_id\n1,2\n")
        return path, f"required column(s) ['product_id'] for {table} not found", False
    if kind == "unknown_mapped_column":
        path.write_text("Invoice;StockCode;Customer ID\n1;A;2\n")
        return path, "mapped column 'InvoiceDate' (for orders.ordered_at) is not in the file", True
    if kind == "latin1":
        path.write_bytes((header + "1;A;2;01/12/2009 07:45;1;1\n2;Caf\xe9;2;01/12/2009 07:45;1;1\n")
                         .encode("latin-1"))
        return path, "line 3 is not valid utf-8 (byte 0xe9)", True
    if kind == "empty":
        path.write_bytes(b"")
        return path, "the file is empty", True
    if kind == "header_only":
        path.write_text(header)
        return path, "the file has a header but no data rows", True
    if kind == "not_found":
        return path, "file not found", True
    raise AssertionError(kind)


FAILURES = ["missing_column", "unknown_mapped_column", "latin1", "empty", "header_only",
            "not_found"]
# A broken second source (catalog) must also stop the good orders from being written.
CLI_FAILURES = [("orders", k) for k in FAILURES] + [
    ("catalog", k) for k in FAILURES if k != "unknown_mapped_column"]


@pytest.mark.parametrize(("table", "kind"), CLI_FAILURES)
def test_bad_source_fails_before_writing_cli(shop: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], table: str,
                                             kind: str) -> None:
    bad, message, with_mapping = _bad_source(tmp_path, kind, table)
    if table == "catalog":
        # the shop mapping maps no catalog columns; the orders need it
        args = ["--orders", str(shop["orders"]), "--catalog", str(bad), "--mapping",
                str(shop["mapping"])]
    else:
        args = ["--orders", str(bad)] + (["--mapping", str(shop["mapping"])] if with_mapping
                                         else [])
    out = tmp_path / "data"
    code = main(["-q", "ingest", *args, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: {bad}: ")
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize("kind", FAILURES)
def test_bad_source_fails_before_writing_api(shop: dict[str, Path], tmp_path: Path,
                                             kind: str) -> None:
    bad, message, with_mapping = _bad_source(tmp_path, kind)
    mapping = load_mapping(shop["mapping"] if with_mapping else None)
    out = tmp_path / "data"
    with pytest.raises(InputError) as info:
        ingest({"orders": str(bad)}, mapping, out, show_progress=False)
    assert str(info.value).startswith(f"{bad}: ") and message in str(info.value)
    assert not out.exists()


def test_failed_ingest_leaves_an_earlier_data_dir_untouched(shop: dict[str, Path],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "data"
    mapping = load_mapping(shop["mapping"])
    ingest({"orders": str(shop["orders"])}, mapping, out, show_progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad, _, _ = _bad_source(tmp_path, "header_only")
    with pytest.raises(InputError):
        ingest({"orders": str(shop["orders"]), "catalog": str(bad)}, mapping, out,
               show_progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unknown_table_and_missing_orders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown table\(s\) \['clicks'\]"):
        ingest({"orders": "x.csv", "clicks": "y.csv"}, SourceMapping(), tmp_path / "o")
    with pytest.raises(InputError, match="orders are required"):
        ingest({"catalog": "y.csv"}, SourceMapping(), tmp_path / "o")
    assert not (tmp_path / "o").exists()


# -- mapping files ------------------------------------------------------------------------------


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_mapping_loads() -> None:
    mapping = load_mapping(Path(__file__).resolve().parents[1] / "configs" / "mappings" /
                           "online_retail_ii.toml")
    assert mapping.orders.columns["customer_id"] == "Customer ID"
    assert mapping.orders.cancellation_prefix == "C"
    assert "POST" in mapping.orders.non_product_codes
    assert load_mapping(None) == SourceMapping()


@pytest.mark.parametrize(("text", "message"), [
    ("[orders]\ndelimeter = ';'\n", "orders.delimeter: Extra inputs are not permitted"),
    ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
    ("[orders.columns]\norder_id = 'Invoice'\nbasket = 'Basket'\n",
     "[orders.columns] names unknown canonical column(s) ['basket']"),
    ("[events.columns]\nproduct_id = 'sku'\nprice = 'p'\n",
     "[events.columns] names unknown canonical column(s) ['price']"),
    ("[events]\nevent_types = { pv = 'pageview' }\n", "unknown event type(s) ['pageview']"),
    ("[orders]\ndate_unit = 'minutes'\n", "orders.date_unit"),
    ("[orders]\ncompression = 'rar'\n", "orders.compression"),
    ("[orders]\nnon_product_pattern = 'gift_(\\\\d+'\n", "not a valid regular expression"),
    ("[orders\n", "not valid TOML"),
])
def test_bad_mapping_files(tmp_path: Path, text: str, message: str) -> None:
    path = _mapping(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_bad_mapping_via_cli(shop: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _mapping(tmp_path, "[orders]\nseperator = ';'\n")
    out = tmp_path / "data"
    code = main(["-q", "ingest", "--orders", str(shop["orders"]), "--mapping", str(path),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith(f"error: {path}: orders.seperator")
    assert "Traceback" not in captured.err
    assert not out.exists()
    code = main(["-q", "ingest", "--orders", str(shop["orders"]), "--mapping",
                 str(tmp_path / "nope.toml"), "--out", str(out)])
    assert code == 1 and "mapping file not found" in capsys.readouterr().err


def test_mapping_reader_options_are_used(tmp_path: Path) -> None:
    src = tmp_path / "orders.txt"
    # latin-1, pipe-delimited, gzip with an unhelpful name: all configured in the mapping.
    import gzip

    src.write_bytes(gzip.compress("id|sku\n1|caf\xe9\n2|tea\n".encode("latin-1")))
    path = _mapping(tmp_path, """
        [orders]
        encoding = "latin-1"
        delimiter = "|"
        compression = "gzip"
        [orders.columns]
        order_id = "id"
        product_id = "sku"
    """)
    ingest({"orders": str(src)}, load_mapping(path), tmp_path / "d", show_progress=False)
    orders = load_table(tmp_path / "d", "orders")
    assert orders is not None and orders["product_id"].tolist() == ["café", "tea"]


def test_unmapped_columns_are_found_by_canonical_name(tmp_path: Path) -> None:
    src = tmp_path / "orders.csv"
    src.write_text("order_id,product_id,quantity,notes\n1,A,3,x\n")
    ingest({"orders": str(src)}, SourceMapping(), tmp_path / "d", show_progress=False)
    orders = load_table(tmp_path / "d", "orders")
    assert orders is not None
    assert list(orders.columns) == ["order_id", "product_id", "quantity"]
    assert orders["quantity"].tolist() == [3.0]


# -- property test ------------------------------------------------------------------------------

# Usable and unusable values per column; usable ones are drawn about 4 times in 5.
GOOD = {"order_id": ["1001", " 1002 ", "1004.0"], "product_id": ["A1", " B2 ", "85123A"],
        "ordered_at": ["2010-01-04 10:00:00", "2010-01-04T10:00:00+01:00"],
        "quantity": ["1", "3", "2.5", ""], "unit_price": ["1.25", "10", ""]}
BAD = {"order_id": ["C1003", "", "  "], "product_id": ["POST", "post", "", " "],
       "ordered_at": ["2010-02-30 10:00:00", "soon", ""], "quantity": ["0", "-4", "lots"],
       "unit_price": ["0", "-0.5", "free"]}
PROPERTY_MAPPING = SourceMapping.model_validate(
    {"orders": {"cancellation_prefix": "C", "non_product_codes": ["POST"]}})


def _values(column: str) -> st.SearchStrategy[str]:
    good, bad = GOOD[column], BAD[column]
    return st.sampled_from(good * (4 * len(bad)) + bad * len(good))


order_rows = st.lists(st.tuples(*(_values(c) for c in GOOD)), min_size=1, max_size=25)


def _expected_reason(order_id: str, product_id: str, date: str, quantity: str,
                     price: str) -> str | None:
    """Brute-force oracle for one row, following validate.py's precedence."""
    if not order_id.strip():
        return "missing_order_id"
    if not product_id.strip():
        return "missing_product_id"
    if order_id.strip().startswith("C"):
        return "cancellation"
    if product_id.strip().upper() == "POST":
        return "non_product_code"
    if not date:
        return "missing_date"
    if date in ("2010-02-30 10:00:00", "soon"):
        return "unparseable_date"
    if quantity == "lots":
        return "bad_quantity"
    if quantity and float(quantity) <= 0:
        return "non_positive_quantity"
    if price == "free":
        return "bad_price"
    if price and float(price) <= 0:
        return "non_positive_price"
    return None


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=order_rows)
def test_property_counts_contract_and_quarantine(tmp_path: Path,
                                                 rows: list[tuple[str, ...]]) -> None:
    folder = tmp_path / f"case{abs(hash(tuple(rows)))}"
    folder.mkdir(exist_ok=True)
    src = folder / "orders.csv"
    frame = pd.DataFrame(rows, columns=list(GOOD))
    frame.to_csv(src, index=False)
    report = ingest({"orders": str(src)}, PROPERTY_MAPPING, folder / "data", show_progress=False)
    data = json.loads((folder / "data" / "report.json").read_text())

    expected = {i: r for i, row in enumerate(rows, start=1) if (r := _expected_reason(*row))}
    rep = data["tables"]["orders"]
    assert rep["rows_read"] == len(rows) == rep["rows_accepted"] + rep["rows_rejected"]
    assert rep["rows_rejected"] == len(expected)
    assert report.tables["orders"].rows_rejected == len(expected)

    quarantine = _read_quarantine(folder / "data" / "quarantine" / "orders.csv")
    q_rows = [int(r) for r in quarantine["row"]]
    assert len(q_rows) == len(set(q_rows))  # each rejected row exactly once
    assert dict(zip(q_rows, quarantine["reason"], strict=True)) == expected
    assert all(quarantine["reason"] != "")
    counts = pd.Series(list(expected.values()), dtype=object).value_counts()
    assert rep["rejected_by_reason"] == {k: int(v) for k, v in sorted(counts.items())}

    accepted = pd.read_parquet(folder / "data" / "orders.parquet")
    assert len(accepted) == len(rows) - len(expected)
    assert accepted["order_id"].notna().all() and accepted["product_id"].notna().all()
    assert (accepted["order_id"].str.strip() == accepted["order_id"]).all()
    assert (accepted["order_id"] != "").all() and (accepted["product_id"] != "").all()
    assert (accepted["quantity"] > 0).all()
    given_price = accepted["unit_price"].notna()
    assert (accepted.loc[given_price, "unit_price"] > 0).all()
    assert accepted["ordered_at"].notna().all()
    good = [row for i, row in enumerate(rows, start=1) if i not in expected]
    assert accepted["order_id"].tolist() == [r[0].strip().removesuffix(".0") for r in good]
    assert accepted["product_id"].tolist() == [r[1].strip() for r in good]
    assert accepted["quantity"].tolist() == [float(r[3]) if r[3] else 1.0 for r in good]


def test_blank_lines_are_skipped_counted_and_keep_row_numbers(tmp_path: Path) -> None:
    """Row numbers in the quarantine are the file's (data row n = line n + 1), blank lines and
    all; blank lines are no data rows, but the report counts them."""
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,product_id,quantity\n"
                      "o1,a,1\n"
                      "\n"
                      "o2,b,1\n"
                      ",,\n"
                      "o3,,1\n"
                      "\n", encoding="utf-8")
    report = ingest({"orders": str(orders)}, SourceMapping(), tmp_path / "data",
                    show_progress=False)
    rep = report.tables["orders"]
    assert (rep.rows_read, rep.rows_accepted, rep.rows_rejected, rep.rows_empty) == (3, 2, 1, 3)
    quarantine = _read_quarantine(tmp_path / "data" / "quarantine" / "orders.csv")
    assert _rejects(quarantine) == [(5, "missing_product_id", "product_id")]  # file line 6
    assert "3 empty lines skipped" in report.summary()
    assert report.to_dict()["rows_empty"] == 3


# -- the catalog derived from order lines ([catalog_from_orders]) -------------------------------

NAMED_ORDERS_CSV = """\
Invoice,StockCode,Description,Dept,InvoiceDate,Quantity,Price
1,A,Mug,Home > Kitchen,2025-01-03 10:00,1,4.0
1,B,Tea,Food,2025-01-03 10:00,1,2.0
2,A, Mug ,Home>Kitchen,2025-01-01 10:00,1,3.0
2,B,Green tea,Food,2025-01-01 10:00,1,9.0
3,A,mug (damaged),Home > Kitchen,2025-01-02 10:00,1,5.0
C4,A,WRONG,Toys,2025-01-04 10:00,-1,4.0
C5,A,WRONG,Toys,2025-01-04 10:00,-1,4.0
6,C,,,2025-01-05 10:00,1,7.5
7,POST,Postage,,2025-01-05 10:00,1,18
"""
NAMED_MAPPING = """\
[orders]
cancellation_prefix = "C"
non_product_codes = ["POST"]
[orders.columns]
order_id = "Invoice"
product_id = "StockCode"
ordered_at = "InvoiceDate"
quantity = "Quantity"
unit_price = "Price"
[catalog_from_orders]
name = "Description"
category = "Dept"
"""


def _derived(tmp_path: Path, extra: str = "", catalog: str | None = None,
             ) -> tuple[pd.DataFrame, dict[str, Any], str]:
    orders = tmp_path / "orders.csv"
    orders.write_text(NAMED_ORDERS_CSV, encoding="utf-8")
    sources = {"orders": str(orders)}
    if catalog is not None:
        (tmp_path / "catalog.csv").write_text(catalog, encoding="utf-8")
        sources["catalog"] = str(tmp_path / "catalog.csv")
    mapping = load_mapping(_mapping(tmp_path, NAMED_MAPPING + extra))
    report = ingest(sources, mapping, tmp_path / "data", show_progress=False)
    frame = pd.read_parquet(tmp_path / "data" / "catalog.parquet").set_index("product_id")
    return frame, report.to_dict(), report.summary()


def test_catalog_from_orders_names_prices_categories(tmp_path: Path) -> None:
    """Most frequent accepted name and category (blank stripped; cancelled and non-product
    lines do not count), median price; the report says how many products and from where."""
    catalog, report, summary = _derived(tmp_path)
    assert sorted(catalog.index) == ["A", "B", "C"]  # POST is no product, WRONG never wins
    assert catalog.loc["A", "name"] == "Mug"  # 2 x "Mug" (one padded) vs 1 x "mug (damaged)"
    assert catalog.loc["B", "name"] == "Green tea"  # a 1:1 tie: the alphabetically first
    assert pd.isna(catalog.loc["C", "name"]) and pd.isna(catalog.loc["C", "category"])
    assert catalog.loc["A", "category"] == "Home > Kitchen"
    assert catalog["price"].to_dict() == {"A": 4.0, "B": 5.5, "C": 7.5}  # medians
    assert catalog["in_stock"].all() and catalog["is_active"].all()
    note = report["derived_catalog"]
    assert note["products"] == 3 and note["from_catalog_file"] == 0
    assert note["name"] == {"from": "Description", "rule": "most frequent value per product",
                            "products_with_value": 2}
    assert note["price"]["from"] == "Price" and note["price"]["products_with_value"] == 3
    assert ("catalog: 3 products derived from the order lines: name from 'Description'"
            in summary)
    assert report["warnings"] == []


def test_catalog_from_orders_latest_price(tmp_path: Path) -> None:
    catalog, _, _ = _derived(tmp_path, 'price = "latest"\n')
    assert catalog["price"].to_dict() == {"A": 4.0, "B": 2.0, "C": 7.5}  # by InvoiceDate


def test_catalog_file_wins_for_its_products(tmp_path: Path) -> None:
    catalog, report, summary = _derived(
        tmp_path, catalog="product_id,name,price,in_stock\nA,Blue Mug,6.0,false\n")
    assert catalog.loc["A", ["name", "price", "in_stock"]].tolist() == ["Blue Mug", 6.0, False]
    assert catalog.loc["B", "name"] == "Green tea" and bool(catalog.loc["B", "in_stock"])
    note = report["derived_catalog"]
    assert (note["products"], note["from_catalog_file"]) == (2, 1)
    assert note["name"]["products_with_value"] == 1  # B; C has no name, A is the file's
    assert "1 products kept from the catalog file" in summary
    assert report["warnings"] == []  # every ordered product is in the catalog now


@pytest.mark.parametrize(("given", "wrong", "message"), [
    ('name = "Description"', 'name = "Title"',
     "[catalog_from_orders] name = 'Title' is not a column of the orders"),
    ('category = "Dept"', 'category = "Department"',
     "[catalog_from_orders] category = 'Department' is not a column of the orders"),
])
def test_catalog_from_orders_names_a_missing_column(tmp_path: Path, given: str, wrong: str,
                                                    message: str) -> None:
    text = NAMED_MAPPING.replace(given, wrong)
    orders = tmp_path / "orders.csv"
    orders.write_text(NAMED_ORDERS_CSV, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)):
        ingest({"orders": str(orders)}, load_mapping(_mapping(tmp_path, text)),
               tmp_path / "data", show_progress=False)
    assert not (tmp_path / "data").exists()


def test_catalog_from_orders_price_needs_prices(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,product_id,Description\n1,A,Mug\n", encoding="utf-8")
    text = '[catalog_from_orders]\nname = "Description"\n'
    with pytest.raises(InputError, match="price = 'median' needs the orders' unit_price"):
        ingest({"orders": str(orders)}, load_mapping(_mapping(tmp_path, text)),
               tmp_path / "data", show_progress=False)
    text += 'price = "none"\n'
    ingest({"orders": str(orders)}, load_mapping(_mapping(tmp_path, text)), tmp_path / "data",
           show_progress=False)
    catalog = pd.read_parquet(tmp_path / "data" / "catalog.parquet")
    assert catalog[["product_id", "name"]].values.tolist() == [["A", "Mug"]]
    assert "price" not in catalog


def test_catalog_from_orders_rejects_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="catalog_from_orders.price"):
        load_mapping(_mapping(tmp_path, '[catalog_from_orders]\nprice = "mean"\n'))


def test_readme_mapping_snippet_is_the_shipped_file() -> None:
    """The README's Online Retail II mapping is the shipped file (all its non-product codes)."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n[orders]", 1)[1].split("```", 1)[0]
    snippet = tomllib.loads("[orders]" + block)
    shipped = tomllib.loads((root / "configs" / "mappings" / "online_retail_ii.toml")
                            .read_text(encoding="utf-8"))
    shipped.pop("description")
    assert snippet == shipped


def test_price_is_line_total_divides_by_quantity(tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("basket,sku,quantity,sales_value\n1,A,4,10.0\n1,B,1,2.5\n2,A,0,3\n"
                      "3,C,2,0\n", encoding="utf-8")
    text = ('[orders]\nprice_is_line_total = true\n[orders.columns]\norder_id = "basket"\n'
            'product_id = "sku"\nunit_price = "sales_value"\n')
    report = ingest({"orders": str(orders)}, load_mapping(_mapping(tmp_path, text)),
                    tmp_path / "data", show_progress=False)
    accepted = pd.read_parquet(tmp_path / "data" / "orders.parquet")
    assert accepted[["product_id", "quantity", "unit_price"]].values.tolist() == [
        ["A", 4.0, 2.5], ["B", 1.0, 2.5]]
    assert report.tables["orders"].rejected_by_reason == {"non_positive_price": 1,
                                                          "non_positive_quantity": 1}
