"""The spreadsheet exports: CSV (formula-safe text) and an XLSX workbook with the rules, the
mining summary and the glossary."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.errors import InputError
from recsys.rules.export.files import flat_rules, writing
from recsys.rules.export.glossary import GLOSSARY, GLOSSARY_NOTE, SUMMARY_LABELS, summary_text

__all__ = ["export_csv", "export_xlsx"]

_COUNT_COLUMNS = ("antecedent_count", "consequent_count", "count")
_XLSX_MAX_ROWS = 1_048_575  # one row of the 2^20 is the header

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _no_formulas(values: pd.Series) -> pd.Series:
    """Text cells a spreadsheet would run as a formula, prefixed with ' (OWASP CSV injection)."""
    text = values.astype("string")
    risky = text.str.startswith(_FORMULA_START).fillna(False).to_numpy(bool)
    return values.where(~risky, "'" + text) if risky.any() else values


def export_csv(rules: pd.DataFrame, path: Path) -> Path:
    """Write :func:`flat_rules` as UTF-8 CSV with a header row; return the path. Text that a
    spreadsheet would take for a formula (a product name starting with =) is quoted."""
    table = flat_rules(rules)
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = _no_formulas(table[column])
    with writing(path) as tmp:
        table.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


def _xlsx_format(column: str) -> dict[str, Any]:
    if column in _COUNT_COLUMNS:
        return {"num_format": "#,##0"}
    if column in ("support", "confidence"):
        return {"num_format": "0.00%"}
    if column == "leverage":
        return {"num_format": "0.0000"}
    if column == "fisher_p":
        return {"num_format": "0.00E+00"}
    return {"num_format": "0.000"}


def _xlsx_cells(values: pd.Series) -> list[Any]:
    """Cell values xlsx can store: inf as the text "inf", NaN and missing as blank."""
    arr = values.to_numpy(dtype=object, na_value=None).copy()  # pandas 3 may hand a view
    if pd.api.types.is_float_dtype(values):
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
        arr[np.isnan(floats)] = None
        arr[np.isposinf(floats)] = "inf"
        arr[np.isneginf(floats)] = "-inf"
    return arr.tolist()


def export_xlsx(rules: pd.DataFrame, path: Path, *, title: str = "Association rules",
                summary: dict[str, Any] | None = None) -> Path:
    """Write an Excel workbook: sheet "rules" (bold frozen header, autofilter, number formats),
    "summary" when ``summary`` is given, and "glossary" explaining every measure."""
    import xlsxwriter

    table = flat_rules(rules)
    if len(table) > _XLSX_MAX_ROWS:
        raise InputError(f"{len(table):,} rules do not fit one Excel sheet ({_XLSX_MAX_ROWS:,} "
                         "rows); pick fewer with select_rules(rules, top=...) or export CSV")
    with writing(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_numbers": False,
                                              "strings_to_formulas": False,
                                              "strings_to_urls": False})
        try:
            book.set_properties({"title": title, "subject": "Association rules",
                                 "comments": GLOSSARY_NOTE})
            header = book.add_format({"bold": True, "bg_color": "#DDE5F0", "bottom": 1})
            _rules_sheet(book, table, header)
            if summary is not None:
                _summary_sheet(book, title, summary, header)
            _glossary_sheet(book, header)
        finally:
            book.close()
    return Path(path)


def _rules_sheet(book: Any, table: pd.DataFrame, header: Any) -> None:
    sheet = book.add_worksheet("rules")
    n_cols = max(len(table.columns), 1)
    for j, column in enumerate(table.columns):  # a loop over columns, not rows
        values = table[column]
        sheet.write(0, j, column, header)
        if pd.api.types.is_numeric_dtype(values):
            fmt = book.add_format(_xlsx_format(column))
            width = max(len(column) + 4, 11)
        else:
            fmt = None
            longest = values.astype("string").str.len().max() if len(values) else 0
            width = min(max(len(column) + 4, int(0 if pd.isna(longest) else longest) + 2), 60)
        sheet.set_column(j, j, width, fmt)
        if len(values):
            sheet.write_column(1, j, _xlsx_cells(values), fmt)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, len(table), n_cols - 1)
    sheet.activate()


def _summary_sheet(book: Any, title: str, summary: dict[str, Any], header: Any) -> None:
    sheet = book.add_worksheet("summary")
    sheet.write_row(0, 0, ["item", "value"], header)
    sheet.set_column(0, 0, 34)
    sheet.set_column(1, 1, 40)
    sheet.write_row(1, 0, ["title", title])
    for i, (key, value) in enumerate(summary.items(), start=2):
        sheet.write(i, 0, SUMMARY_LABELS.get(key, str(key)))
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(
                value):
            sheet.write_number(i, 1, float(value))
        else:
            sheet.write_string(i, 1, summary_text(value))
    sheet.freeze_panes(1, 0)


def _glossary_sheet(book: Any, header: Any) -> None:
    sheet = book.add_worksheet("glossary")
    wrap = book.add_format({"text_wrap": True, "valign": "top"})
    keys = ("metric", "meaning", "formula", "range")
    sheet.write_row(0, 0, list(keys), header)
    for j, width in enumerate((18, 70, 48, 30)):
        sheet.set_column(j, j, width, wrap)
    for i, entry in enumerate(GLOSSARY, start=1):
        sheet.write_row(i, 0, [entry[k] for k in keys], wrap)
    sheet.write(len(GLOSSARY) + 2, 0, GLOSSARY_NOTE)
    sheet.freeze_panes(1, 0)
