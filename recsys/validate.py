"""Validation: raw source columns -> typed canonical frames, and a quarantine of unusable rows.

Each check marks rows with a reason (the first failing check wins, in the order listed per
table) and the column it concerns. Accepted rows are typed (ids as strings, timestamps as
naive UTC, numbers as float64, flags as bool); rejected rows keep their raw values.

Reasons, in order of precedence:
- orders: missing_order_id, missing_product_id, cancellation, non_product_code, missing_date,
  unparseable_date, bad_quantity, non_positive_quantity, bad_price, non_positive_price
- events: missing_product_id, missing_event_type, unknown_event_type, missing_date,
  unparseable_date, missing_session_and_customer
- catalog: missing_product_id, duplicate_product_id, bad_price, negative_price, bad_margin,
  bad_in_stock, bad_is_active, bad_durable
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.contract import KNOWN_EVENT_TYPES, TABLES
from recsys.mapping import TableMapping
from recsys.readers import RawTable

__all__ = ["Validated", "validate_table", "normalise_ids"]

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


@dataclass
class Validated:
    """Accepted canonical rows, the quarantined raw rows with reason and column, and which raw
    rows were accepted (a boolean mask over the source's rows, in order)."""

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    accepted_rows: np.ndarray

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        counts = self.quarantine["reason"].value_counts()
        return {str(k): int(v) for k, v in sorted(counts.items())}


class _Marks:
    """Collects the first failing reason (and its column) per row."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.column = np.full(n, None, dtype=object)

    def mark(self, bad: pd.Series | np.ndarray, reason: str, column: str) -> None:
        hit = np.asarray(bad, dtype=bool) & pd.isna(self.reason)
        self.reason[hit] = reason
        self.column[hit] = column

    @property
    def ok(self) -> np.ndarray:
        return np.asarray(pd.isna(self.reason))


def normalise_ids(values: pd.Series) -> pd.Series:
    """External ids as stripped strings; integral floats lose their '.0'; blanks become NA."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.notna()
        integral = finite & (values[finite] % 1 == 0).reindex(values.index, fill_value=False)
        out = values.astype("string")
        out[integral] = values[integral].astype("int64").astype("string")
        return out.str.strip().replace("", pd.NA)
    if pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("string")
    out = values.astype("string").str.strip()
    # Text that a float column left behind ("13085.0" in a CSV) names the same id as 13085.
    out = out.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return out.mask(out == "", pd.NA)


def _parse_timestamps(values: pd.Series, mapping: TableMapping) -> pd.Series:
    """Naive UTC timestamps; NaT where missing or unparseable."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    elif mapping.date_unit is not None:
        numbers = pd.to_numeric(values, errors="coerce")
        parsed = pd.to_datetime(numbers, unit=mapping.date_unit, errors="coerce", utc=True)
    else:
        text = values.astype("string").str.strip()
        fmt = mapping.date_format or "ISO8601"
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _parse_numbers(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype("float64")


def _parse_bools(values: pd.Series) -> pd.Series:
    """True/False, NA where missing, and the string '?' marker where unparseable."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False)] = True
    out[text.isin(_FALSE).fillna(False)] = False
    return out


def validate_table(table: str, raw: RawTable, columns: dict[str, str],
                   mapping: TableMapping) -> Validated:
    """Type and check one table; ``columns`` maps canonical names to the raw frame's columns."""
    frame = raw.frame
    n = len(frame)
    marks = _Marks(n)
    out: dict[str, pd.Series] = {}
    spec = TABLES[table]

    def col(name: str) -> pd.Series:
        return frame[columns[name]]

    def missing(name: str) -> np.ndarray:
        return np.asarray(out[name].isna())

    for name, kind in spec.columns.items():
        if name in columns and kind == "id":
            out[name] = normalise_ids(col(name))

    if table == "orders":
        marks.mark(missing("order_id"), "missing_order_id", "order_id")
        marks.mark(missing("product_id"), "missing_product_id", "product_id")
        if mapping.cancellation_prefix:
            cancelled = out["order_id"].str.startswith(mapping.cancellation_prefix).fillna(False)
            marks.mark(cancelled, "cancellation", "order_id")
        _mark_non_products(marks, out["product_id"], mapping)
        if "ordered_at" in columns:
            _timestamps(marks, out, col("ordered_at"), "ordered_at", mapping)
        if "quantity" in columns:
            qty = _parse_numbers(col("quantity"))
            raw_missing = col("quantity").isna().to_numpy()
            marks.mark(qty.isna().to_numpy() & ~raw_missing, "bad_quantity", "quantity")
            marks.mark((qty <= 0).fillna(False), "non_positive_quantity", "quantity")
            out["quantity"] = qty.fillna(1.0)
        else:
            out["quantity"] = pd.Series(1.0, index=frame.index)
        if "unit_price" in columns:
            price = _parse_numbers(col("unit_price"))
            raw_missing = col("unit_price").isna().to_numpy()
            marks.mark(price.isna().to_numpy() & ~raw_missing, "bad_price", "unit_price")
            marks.mark((price <= 0).fillna(False), "non_positive_price", "unit_price")
            out["unit_price"] = price / out["quantity"] if mapping.price_is_line_total else price
        _discounts(marks, out, frame, columns)

    elif table == "events":
        marks.mark(missing("product_id"), "missing_product_id", "product_id")
        etype = col("event_type").astype("string").str.strip().str.lower()
        etype = etype.mask(etype == "", pd.NA)
        if mapping.event_types:
            etype = etype.replace(mapping.event_types)
        marks.mark(etype.isna(), "missing_event_type", "event_type")
        marks.mark(~etype.isin(KNOWN_EVENT_TYPES).fillna(True), "unknown_event_type", "event_type")
        out["event_type"] = etype
        _timestamps(marks, out, col("occurred_at"), "occurred_at", mapping)
        who = [out[c].notna() for c in ("session_id", "customer_id") if c in out]
        anyone = np.logical_or.reduce([w.to_numpy() for w in who])
        marks.mark(~anyone, "missing_session_and_customer", "session_id")

    else:  # catalog
        marks.mark(missing("product_id"), "missing_product_id", "product_id")
        marks.mark(out["product_id"].duplicated(keep="first") & out["product_id"].notna(),
                   "duplicate_product_id", "product_id")
        for name in ("name", "category", "brand"):
            if name in columns:
                text = col(name).astype("string").str.strip()
                out[name] = text.mask(text == "", pd.NA)
        if "category" in out:
            out["category"] = out["category"].str.replace(r"\s*>\s*", " > ", regex=True)
        if "price" in columns:
            price = _parse_numbers(col("price"))
            marks.mark(price.isna().to_numpy() & col("price").notna().to_numpy(), "bad_price", "price")
            marks.mark((price < 0).fillna(False), "negative_price", "price")
            out["price"] = price
        if "margin" in columns:
            margin = _parse_numbers(col("margin"))
            bad = (margin.isna().to_numpy() & col("margin").notna().to_numpy()) | (
                ((margin < 0) | (margin > 1)).fillna(False).to_numpy())
            marks.mark(bad, "bad_margin", "margin")
            out["margin"] = margin
        for name in ("in_stock", "is_active"):
            if name in columns:
                flags = _parse_bools(col(name))
                marks.mark(flags.isna().to_numpy() & col(name).notna().to_numpy(), f"bad_{name}", name)
                out[name] = flags.fillna(True).astype(bool)
            else:
                out[name] = pd.Series(True, index=frame.index)
        if "durable" in columns:  # no default: empty = unknown (inferred when configured)
            flags = _parse_bools(col("durable"))
            marks.mark(flags.isna().to_numpy() & col("durable").notna().to_numpy(),
                       "bad_durable", "durable")
            out["durable"] = flags

    ok = marks.ok
    accepted = pd.DataFrame({name: series[ok] for name, series in out.items()})
    accepted = accepted[[c for c in spec.columns if c in accepted.columns]].reset_index(drop=True)
    quarantine = frame.loc[~ok].copy()
    # Raw columns named like the quarantine's own (source, row, reason, column) keep a raw_ prefix.
    quarantine.columns = [f"raw_{c}" if c in ("source", "row", "reason", "column") else c
                          for c in quarantine.columns]
    quarantine.insert(0, "column", marks.column[~ok])
    quarantine.insert(0, "reason", marks.reason[~ok])
    quarantine.insert(0, "row", raw.source_row[~ok].to_numpy())
    quarantine.insert(0, "source", raw.label)
    return Validated(accepted=accepted, quarantine=quarantine.reset_index(drop=True),
                     accepted_rows=ok)


def _discounts(marks: _Marks, out: dict[str, pd.Series], frame: pd.DataFrame,
               columns: dict[str, str]) -> None:
    """Optional ``list_price`` (> 0) and ``discount`` (a fraction, 0 <= d < 1) of order lines."""
    if "list_price" in columns:
        raw = frame[columns["list_price"]]
        price = _parse_numbers(raw)
        marks.mark(price.isna().to_numpy() & raw.notna().to_numpy(), "bad_list_price",
                   "list_price")
        marks.mark((price <= 0).fillna(False), "non_positive_list_price", "list_price")
        out["list_price"] = price
    if "discount" in columns:
        raw = frame[columns["discount"]]
        share = _parse_numbers(raw)
        marks.mark(share.isna().to_numpy() & raw.notna().to_numpy(), "bad_discount", "discount")
        marks.mark(((share < 0) | (share >= 1)).fillna(False), "discount_out_of_range",
                   "discount")
        out["discount"] = share


def _mark_non_products(marks: _Marks, product_id: pd.Series, mapping: TableMapping) -> None:
    bad = np.zeros(len(product_id), dtype=bool)
    if mapping.non_product_codes:
        codes = {c.strip().upper() for c in mapping.non_product_codes}
        bad |= product_id.str.upper().isin(codes).fillna(False).to_numpy()
    if mapping.non_product_pattern:
        pattern = re.compile(mapping.non_product_pattern)
        bad |= product_id.str.fullmatch(pattern).fillna(False).to_numpy()
    marks.mark(bad, "non_product_code", "product_id")


def _timestamps(marks: _Marks, out: dict[str, pd.Series], raw: pd.Series, name: str,
                mapping: TableMapping) -> None:
    parsed = _parse_timestamps(raw, mapping)
    raw_missing = raw.isna().to_numpy().copy()
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        raw_missing |= (raw.astype("string").str.strip() == "").fillna(True).to_numpy()
    marks.mark(raw_missing, "missing_date", name)
    marks.mark(parsed.isna().to_numpy() & ~raw_missing, "unparseable_date", name)
    out[name] = parsed
