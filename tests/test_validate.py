"""Tests for validation: every reason on a crafted row, precedence, typing and normalisation."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from recsys.mapping import TableMapping, resolve_columns
from recsys.readers import RawTable
from recsys.validate import Validated, normalise_ids, validate_table


def _validate(table: str, rows: list[dict[str, object]], mapping: TableMapping | None = None,
              ) -> Validated:
    """Validate rows as a CSV reader would give them (object columns, None for empty)."""
    mapping = mapping or TableMapping()
    frame = pd.DataFrame(rows)
    raw = RawTable(frame=frame, source_row=pd.Series(range(1, len(frame) + 1)), label="t.csv")
    columns = resolve_columns(table, mapping, list(frame.columns), raw.label)
    result = validate_table(table, raw, columns, mapping)
    assert len(result.accepted) + len(result.quarantine) == len(frame)
    return result


def _reasons(result: Validated) -> dict[int, tuple[str, str]]:
    q = result.quarantine
    return {int(r): (reason, col) for r, reason, col in zip(q["row"], q["reason"], q["column"],
                                                            strict=True)}


# -- orders -------------------------------------------------------------------------------------

ORDERS_MAPPING = TableMapping(cancellation_prefix="C", non_product_codes=["POST", " m "],
                              non_product_pattern=r"(?i)gift_\d+_\d+")


def _order(order_id: object = "1001", product_id: object = "A", ordered_at: object =
           "2020-01-01 10:00:00", quantity: object = "2", unit_price: object = "1.5",
           customer_id: object = "7") -> dict[str, object]:
    return {"order_id": order_id, "product_id": product_id, "customer_id": customer_id,
            "ordered_at": ordered_at, "quantity": quantity, "unit_price": unit_price}


# (row, expected reason or None for accepted)
ORDER_CASES: list[tuple[dict[str, object], str | None]] = [
    (_order(), None),
    (_order(order_id=None), "missing_order_id"),
    (_order(order_id="   "), "missing_order_id"),
    (_order(product_id=None), "missing_product_id"),
    (_order(order_id="C1003", quantity="-2"), "cancellation"),
    (_order(product_id="post"), "non_product_code"),
    (_order(product_id=" M "), "non_product_code"),
    (_order(product_id="GIFT_0001_20"), "non_product_code"),
    (_order(ordered_at=None), "missing_date"),
    (_order(ordered_at="  "), "missing_date"),
    (_order(ordered_at="2020-02-30 10:00:00"), "unparseable_date"),
    (_order(ordered_at="yesterday"), "unparseable_date"),
    (_order(quantity="two"), "bad_quantity"),
    (_order(quantity="0"), "non_positive_quantity"),
    (_order(quantity="-1"), "non_positive_quantity"),
    (_order(unit_price="1,5x"), "bad_price"),
    (_order(unit_price="0"), "non_positive_price"),
    (_order(unit_price="-0.01"), "non_positive_price"),
    # precedence: the first failing check (docstring order) wins
    (_order(order_id=None, product_id=None, ordered_at="bad"), "missing_order_id"),
    (_order(product_id=None, order_id="C5"), "missing_product_id"),
    (_order(order_id="C6", product_id="POST"), "cancellation"),
    (_order(product_id="POST", ordered_at=None, quantity="0"), "non_product_code"),
    (_order(ordered_at=None, quantity="x"), "missing_date"),
    (_order(ordered_at="bad", quantity="0", unit_price="0"), "unparseable_date"),
    (_order(quantity="x", unit_price="0"), "bad_quantity"),
    (_order(quantity="0", unit_price="x"), "non_positive_quantity"),
    (_order(unit_price="x", customer_id=None), "bad_price"),
    # not rejected: codes are matched whole, missing quantity defaults to 1, price is optional
    (_order(product_id="MUG"), None),
    (_order(order_id="1C"), None),
    (_order(quantity=None, unit_price=None), None),
]

ORDER_COLUMN = {
    "missing_order_id": "order_id", "missing_product_id": "product_id",
    "cancellation": "order_id", "non_product_code": "product_id", "missing_date": "ordered_at",
    "unparseable_date": "ordered_at", "bad_quantity": "quantity",
    "non_positive_quantity": "quantity", "bad_price": "unit_price",
    "non_positive_price": "unit_price",
}


def test_orders_every_reason_and_precedence() -> None:
    result = _validate("orders", [row for row, _ in ORDER_CASES], ORDERS_MAPPING)
    expected = {i: (reason, ORDER_COLUMN[reason])
                for i, (_, reason) in enumerate(ORDER_CASES, start=1) if reason}
    assert _reasons(result) == expected
    assert set(ORDER_COLUMN) <= {r for r, _ in expected.values()}  # every reason exercised
    assert result.rejected_by_reason["non_product_code"] == 4
    assert sum(result.rejected_by_reason.values()) == len(expected)
    # accepted rows keep their order and are typed
    acc = result.accepted
    assert len(acc) == 4
    assert acc["product_id"].tolist() == ["A", "MUG", "A", "A"]
    assert acc["order_id"].tolist() == ["1001", "1001", "1C", "1001"]
    assert acc["quantity"].tolist() == [2.0, 2.0, 2.0, 1.0]
    assert acc["unit_price"].iloc[:3].tolist() == [1.5, 1.5, 1.5]
    assert np.isnan(acc["unit_price"].iloc[3])
    assert acc["quantity"].dtype == np.float64 and acc["unit_price"].dtype == np.float64
    assert acc["ordered_at"].dtype == np.dtype("datetime64[us]")
    assert acc["ordered_at"].iloc[0] == pd.Timestamp("2020-01-01 10:00:00")
    assert list(acc.columns) == ["order_id", "product_id", "customer_id", "ordered_at",
                                 "quantity", "unit_price"]


def test_quarantine_keeps_raw_values_and_source() -> None:
    result = _validate("orders", [_order(), _order(quantity="two", unit_price=" 3 ")])
    q = result.quarantine
    assert list(q.columns[:4]) == ["source", "row", "reason", "column"]
    assert q.iloc[0]["source"] == "t.csv" and q.iloc[0]["row"] == 2
    assert q.iloc[0]["quantity"] == "two" and q.iloc[0]["unit_price"] == " 3 "


def test_quarantine_does_not_clash_with_raw_columns_named_like_its_own() -> None:
    rows: list[dict[str, object]] = [
        {"order_id": o, "product_id": "A", "source": "web", "reason": "gift", "row": "r",
         "column": "c"} for o in ("1", None)]
    result = _validate("orders", rows)
    assert result.rejected_by_reason == {"missing_order_id": 1}
    q = result.quarantine
    assert q.iloc[0][["source", "row", "reason"]].tolist() == ["t.csv", 2, "missing_order_id"]
    assert q.iloc[0][["raw_source", "raw_reason", "raw_row", "raw_column"]].tolist() == [
        "web", "gift", "r", "c"]


def test_without_value_rules_cancellations_and_codes_pass() -> None:
    result = _validate("orders", [_order(order_id="C1"), _order(product_id="POST")])
    assert result.quarantine.empty and len(result.accepted) == 2


def test_quantity_defaults_to_one_when_unmapped() -> None:
    result = _validate("orders", [{"order_id": "1", "product_id": "A"}])
    assert result.accepted["quantity"].tolist() == [1.0]


def test_list_price_and_discount_are_optional_and_checked() -> None:
    rows = [{**_order(), "list_price": lp, "discount": d} for lp, d in (
        ("2.0", "0.25"), (None, None), ("x", "0.1"), ("0", "0.1"), ("2", "1.5x"), ("2", "1"),
        ("2", "-0.1"), ("2", "0"))]
    result = _validate("orders", rows)
    assert _reasons(result) == {
        3: ("bad_list_price", "list_price"), 4: ("non_positive_list_price", "list_price"),
        5: ("bad_discount", "discount"), 6: ("discount_out_of_range", "discount"),
        7: ("discount_out_of_range", "discount")}
    accepted = result.accepted
    assert accepted["list_price"].tolist()[0] == 2.0 and pd.isna(accepted["list_price"][1])
    assert accepted["discount"].tolist()[0] == 0.25 and accepted["discount"].tolist()[2] == 0.0
    assert "discount" not in _validate("orders", [_order()]).accepted


# -- ids and timestamps -------------------------------------------------------------------------


def test_normalise_ids() -> None:
    floats = normalise_ids(pd.Series([13085.0, np.nan, 1.5, 2.0e15]))
    assert floats.tolist()[0] == "13085" and pd.isna(floats.iloc[1])
    assert floats.tolist()[2:] == ["1.5", "2000000000000000"]
    ints = normalise_ids(pd.Series([1, 22], dtype="Int64"))
    assert ints.tolist() == ["1", "22"]
    text = normalise_ids(pd.Series([" a1 ", "", "   ", None, "85123A", "13085.0", "7.50", "0.0"],
                                   dtype=object))
    assert text.iloc[[0, 4, 5, 6, 7]].tolist() == ["a1", "85123A", "13085", "7.50", "0"]
    assert text.iloc[[1, 2, 3]].isna().all()


def test_float_ids_from_csv_text_and_parquet_floats_agree() -> None:
    # The same customer read from a CSV ("13085.0") and from Parquet (13085.0) is one id.
    as_text = _validate("orders", [_order(customer_id="13085.0", order_id=" 489434 ")])
    frame = pd.DataFrame({"order_id": [489434], "product_id": ["A"], "customer_id": [13085.0]})
    raw = RawTable(frame=frame, source_row=pd.Series([1]), label="t.parquet")
    as_float = validate_table("orders", raw, {c: c for c in frame.columns}, TableMapping())
    assert as_text.accepted["customer_id"].tolist() == ["13085"]
    assert as_float.accepted["customer_id"].tolist() == ["13085"]
    assert as_text.accepted["order_id"].tolist() == as_float.accepted["order_id"].tolist() == [
        "489434"]


def test_timestamps_with_offsets_become_naive_utc() -> None:
    stamps = ["2020-06-01T10:00:00+02:00", "2020-06-01T10:00:00Z", "2020-06-01 10:00:00",
              "2020-06-01T03:30:00-05:00", "2020-06-01"]
    result = _validate("orders", [_order(ordered_at=s) for s in stamps])
    got = result.accepted["ordered_at"]
    assert got.dt.tz is None
    assert got.tolist() == [pd.Timestamp(x) for x in ("2020-06-01 08:00", "2020-06-01 10:00",
                                                      "2020-06-01 10:00", "2020-06-01 08:30",
                                                      "2020-06-01 00:00")]


def test_tz_aware_datetime_column_becomes_naive_utc() -> None:
    frame = pd.DataFrame({
        "order_id": ["1", "2"], "product_id": ["A", "B"],
        "ordered_at": pd.to_datetime(["2021-03-01 12:00", None]).tz_localize("Europe/Berlin"),
    })
    raw = RawTable(frame=frame, source_row=pd.Series([1, 2]), label="db")
    result = validate_table("orders", raw, {c: c for c in frame.columns}, TableMapping())
    assert result.accepted["ordered_at"].tolist() == [pd.Timestamp("2021-03-01 11:00")]
    assert _reasons(result) == {2: ("missing_date", "ordered_at")}


def test_date_format_is_applied() -> None:
    mapping = TableMapping(date_format="%d/%m/%Y %H:%M")
    result = _validate("orders", [_order(ordered_at="02/01/2020 13:45"),
                                  _order(ordered_at="2020-01-02 13:45:00")], mapping)
    assert result.accepted["ordered_at"].tolist() == [pd.Timestamp(2020, 1, 2, 13, 45)]
    assert _reasons(result) == {2: ("unparseable_date", "ordered_at")}


@pytest.mark.parametrize(("unit", "value"), [("s", "1700000000"), ("ms", "1700000000000")])
def test_date_unit_for_unix_times(unit: str, value: str) -> None:
    mapping = TableMapping(date_unit=unit)
    result = _validate("orders", [_order(ordered_at=value), _order(ordered_at="soon")], mapping)
    assert result.accepted["ordered_at"].tolist() == [pd.Timestamp(datetime(2023, 11, 14, 22, 13,
                                                                             20))]
    assert _reasons(result) == {2: ("unparseable_date", "ordered_at")}


# -- events -------------------------------------------------------------------------------------


def _event(product_id: object = "A", event_type: object = "view", occurred_at: object =
           "1700000000", session_id: object = "s1", customer_id: object = None,
           ) -> dict[str, object]:
    return {"product_id": product_id, "event_type": event_type, "occurred_at": occurred_at,
            "session_id": session_id, "customer_id": customer_id}


EVENTS_MAPPING = TableMapping(date_unit="s", event_types={"PV": "view", "basket": "add_to_cart"})

EVENT_CASES: list[tuple[dict[str, object], str | None]] = [
    (_event(), None),
    (_event(event_type=" PV ", session_id=None, customer_id="c1"), None),
    (_event(event_type="Basket"), None),
    (_event(event_type="PURCHASE"), None),
    (_event(product_id=" "), "missing_product_id"),
    (_event(event_type=None), "missing_event_type"),
    (_event(event_type=" "), "missing_event_type"),
    (_event(event_type="teleport"), "unknown_event_type"),
    (_event(occurred_at=None), "missing_date"),
    (_event(occurred_at="soon"), "unparseable_date"),
    (_event(session_id=None, customer_id=None), "missing_session_and_customer"),
    (_event(session_id="  ", customer_id=None), "missing_session_and_customer"),
    # precedence
    (_event(product_id=None, event_type="teleport"), "missing_product_id"),
    (_event(event_type=None, occurred_at="soon"), "missing_event_type"),
    (_event(event_type="teleport", occurred_at=None), "unknown_event_type"),
    (_event(occurred_at="soon", session_id=None), "unparseable_date"),
]

EVENT_COLUMN = {"missing_product_id": "product_id", "missing_event_type": "event_type",
                "unknown_event_type": "event_type", "missing_date": "occurred_at",
                "unparseable_date": "occurred_at", "missing_session_and_customer": "session_id"}


def test_events_every_reason_precedence_and_event_type_remapping() -> None:
    result = _validate("events", [row for row, _ in EVENT_CASES], EVENTS_MAPPING)
    expected = {i: (reason, EVENT_COLUMN[reason])
                for i, (_, reason) in enumerate(EVENT_CASES, start=1) if reason}
    assert _reasons(result) == expected
    assert set(EVENT_COLUMN) <= {r for r, _ in expected.values()}
    acc = result.accepted
    assert acc["event_type"].tolist() == ["view", "view", "add_to_cart", "purchase"]
    assert acc["occurred_at"].tolist() == [pd.Timestamp("2023-11-14 22:13:20")] * 4
    assert acc["customer_id"].iloc[1] == "c1" and pd.isna(acc["session_id"].iloc[1])


def test_events_with_only_customer_column() -> None:
    rows: list[dict[str, object]] = [
        {"product_id": "A", "event_type": "view", "occurred_at": "2020-01-01T00:00:00Z",
         "customer_id": c} for c in ("9.0", None)]
    result = _validate("events", rows)
    assert result.accepted["customer_id"].tolist() == ["9"]
    assert _reasons(result) == {2: ("missing_session_and_customer", "session_id")}


# -- catalog ------------------------------------------------------------------------------------


def _product(product_id: object = "A", price: object = "9.99", margin: object = "0.3",
             in_stock: object = None, is_active: object = None, name: object = " Mug ",
             category: object = "Home>Kitchen", durable: object = None) -> dict[str, object]:
    return {"product_id": product_id, "name": name, "category": category, "price": price,
            "margin": margin, "in_stock": in_stock, "is_active": is_active, "durable": durable}


CATALOG_CASES: list[tuple[dict[str, object], str | None]] = [
    (_product("P1", in_stock="true", is_active="YES", durable="yes"), None),
    (_product("P2", in_stock="False", is_active="no", durable="0"), None),
    (_product("P3", in_stock="1", is_active="0"), None),
    (_product("P4", in_stock="0", is_active=" y ", price="0", margin=None), None),
    (_product("P5", in_stock="N", is_active="T", price=None, name=None), None),
    (_product(None), "missing_product_id"),
    (_product(" P1 "), "duplicate_product_id"),
    (_product("P6", price="cheap"), "bad_price"),
    (_product("P7", price="-1"), "negative_price"),
    (_product("P8", margin="1.5"), "bad_margin"),
    (_product("P9", margin="-0.1"), "bad_margin"),
    (_product("P10", margin="high"), "bad_margin"),
    (_product("P11", in_stock="maybe"), "bad_in_stock"),
    (_product("P12", is_active="perhaps"), "bad_is_active"),
    (_product("P17", durable="lasts"), "bad_durable"),
    # precedence
    (_product("P2", price="-5", in_stock="maybe"), "duplicate_product_id"),
    (_product(None, price="x"), "missing_product_id"),
    (_product("P13", price="x", margin="2"), "bad_price"),
    (_product("P14", price="-1", margin="2"), "negative_price"),
    (_product("P15", margin="2", in_stock="maybe"), "bad_margin"),
    (_product("P16", in_stock="maybe", is_active="perhaps"), "bad_in_stock"),
]

CATALOG_COLUMN = {"missing_product_id": "product_id", "duplicate_product_id": "product_id",
                  "bad_price": "price", "negative_price": "price", "bad_margin": "margin",
                  "bad_in_stock": "in_stock", "bad_is_active": "is_active",
                  "bad_durable": "durable"}


def test_catalog_every_reason_booleans_and_duplicates() -> None:
    result = _validate("catalog", [row for row, _ in CATALOG_CASES])
    expected = {i: (reason, CATALOG_COLUMN[reason])
                for i, (_, reason) in enumerate(CATALOG_CASES, start=1) if reason}
    assert _reasons(result) == expected
    assert set(CATALOG_COLUMN) <= {r for r, _ in expected.values()}
    acc = result.accepted
    assert acc["product_id"].tolist() == ["P1", "P2", "P3", "P4", "P5"]
    assert acc["in_stock"].tolist() == [True, False, True, False, False]
    assert acc["is_active"].tolist() == [True, False, False, True, True]
    assert acc["in_stock"].dtype == bool and acc["is_active"].dtype == bool
    # durable has no default: an empty cell stays unknown
    assert acc["durable"].tolist()[:2] == [True, False] and acc["durable"].isna().sum() == 3
    assert acc["price"].iloc[:4].tolist() == [9.99, 9.99, 9.99, 0.0]
    assert np.isnan(acc["price"].iloc[4])
    assert acc["name"].iloc[0] == "Mug" and pd.isna(acc["name"].iloc[4])
    assert acc["category"].iloc[0] == "Home > Kitchen"


def test_catalog_flags_default_to_true_when_absent() -> None:
    result = _validate("catalog", [{"product_id": "A"}, {"product_id": "B"}])
    assert result.accepted["in_stock"].tolist() == [True, True]
    assert result.accepted["is_active"].tolist() == [True, True]
