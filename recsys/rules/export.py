"""Merchandiser exports of mined rules: filtered, flattened to text, written as CSV, XLSX or HTML.

Input is a rules DataFrame from :func:`recsys.rules.mining.mine_rules` (list<string> columns
``antecedents`` / ``consequents`` plus counts and measures), optionally passed through
:func:`recsys.rules.mining.annotate`, which adds ``antecedent_names``, ``consequent_names``,
``antecedent_categories`` and ``consequent_categories`` (lists aligned with the ids).

Every writer goes to a temporary sibling file first and renames it into place, so a failed
export never leaves half a file behind. The HTML report is one self-contained file: inline
CSS and inline SVG charts, no scripts, fonts or links to fetch.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.charts import REPORT_CSS, chart_style, inline_svg
from recsys.errors import InputError
from recsys.rules.mining import RULE_COLUMNS

__all__ = [
    "GLOSSARY",
    "select_rules",
    "flat_rules",
    "export_csv",
    "export_xlsx",
    "export_html",
    "export_rules",
]

#: Text between the items of one side of a rule in flat exports: "85123A + 21232".
JOIN = " + "
#: Separator between the components of a category path: "Home > Kitchen > Mugs".
PATH_SEP = " > "

_SIDES = ("antecedent", "consequent")
_LIST_COLUMNS = tuple(f"{side}{suffix}" for side in _SIDES
                      for suffix in ("s", "_names", "_categories"))
_COUNT_COLUMNS = ("antecedent_count", "consequent_count", "count")
_XLSX_MAX_ROWS = 1_048_575  # one row of the 2^20 is the header
_NETWORK_PAIRS = 30
_LABELS_PER_ROW = 5.0  # node labels side by side across the network chart
_RASTER_POINTS = 2000  # scatter plots with more points embed a bitmap inside the SVG

GLOSSARY: list[dict[str, str]] = [
    {"metric": "antecedent_count",
     "meaning": "Number of orders that contain all the 'if' products (the antecedent, A).",
     "formula": "count(A)", "range": "1 to N (whole orders)"},
    {"metric": "consequent_count",
     "meaning": "Number of orders that contain all the 'then' products (the consequent, C).",
     "formula": "count(C)", "range": "1 to N (whole orders)"},
    {"metric": "count",
     "meaning": "Number of orders that contain every product of the rule, both sides together.",
     "formula": "count(A ∪ C)", "range": "1 to N (whole orders)"},
    {"metric": "support",
     "meaning": "Share of all orders that contain every product of the rule.",
     "formula": "s(A ∪ C) = count(A ∪ C) / N", "range": "0 to 1 (0% to 100%)"},
    {"metric": "confidence",
     "meaning": "Of the orders with the 'if' products, the share that also have the 'then' "
                "products: how often the recommendation would have been right.",
     "formula": "s(A ∪ C) / s(A)", "range": "0 to 1 (0% to 100%)"},
    {"metric": "lift",
     "meaning": "How many times more often the products are bought together than if they were "
                "unrelated. 1 = no relation; 2 = twice as often as chance; below 1 = less often.",
     "formula": "confidence / s(C)", "range": "0 to infinity; 1 = independent"},
    {"metric": "leverage",
     "meaning": "Share of orders with both sides minus the share expected by chance: how many "
                "extra orders (as a fraction of all orders) the association accounts for.",
     "formula": "s(A ∪ C) - s(A) × s(C)", "range": "-0.25 to 0.25; 0 = independent"},
    {"metric": "conviction",
     "meaning": "How much less often the rule is wrong than it would be by chance. Higher = a "
                "more dependable rule; inf when the rule was never wrong in the data.",
     "formula": "(1 - s(C)) / (1 - confidence)",
     "range": "0 to infinity (inf when confidence = 1); 1 = independent"},
    {"metric": "zhangs_metric",
     "meaning": "Strength of the association on a fixed scale: 1 = always bought together, "
                "0 = unrelated, -1 = never bought together.",
     "formula": "leverage / max(s(A ∪ C) × (1 - s(A)), s(A) × (s(C) - s(A ∪ C)))",
     "range": "-1 to 1; 0 = independent"},
    {"metric": "jaccard",
     "meaning": "Of the orders with either side, the share that contain both.",
     "formula": "s(A ∪ C) / (s(A) + s(C) - s(A ∪ C))", "range": "0 to 1"},
    {"metric": "kulczynski",
     "meaning": "Average of the confidence in both directions (if A then C, and if C then A); "
                "0.5 = neutral, near 1 = each side strongly implies the other.",
     "formula": "(confidence(A → C) + confidence(C → A)) / 2", "range": "0 to 1"},
    {"metric": "fisher_p",
     "meaning": "Chance of seeing at least this many orders with both sides if the products "
                "were unrelated (one-sided Fisher exact test). Small (below 0.01) = unlikely "
                "to be a coincidence. Empty when significance testing was switched off.",
     "formula": "P[X ≥ count(A ∪ C)], X ~ Hypergeometric(N orders, count(C), count(A) draws)",
     "range": "0 to 1; smaller = stronger evidence"},
]
_GLOSSARY_NOTE = ("A = the 'if' products (antecedent), C = the 'then' products (consequent), "
                  "N = number of orders mined, s(X) = support of X = count(X) / N.")
_MEANING = {entry["metric"]: entry["meaning"] for entry in GLOSSARY}

_SUMMARY_LABELS = {
    "n_orders": "Orders mined", "min_count": "Minimum count (orders)",
    "min_confidence": "Minimum confidence", "max_len": "Maximum products per rule",
    "baskets_excluded": "Bulk orders left out", "lines_excluded": "Order lines left out",
    "max_basket_items": "Largest order mined (products)",
    "itemsets_by_length": "Frequent itemsets by size", "rules": "Rules mined",
}


# --------------------------------------------------------------------------- checks and lists

def _check_rules(rules: pd.DataFrame) -> None:
    """Rules must carry every column of ``RULE_COLUMNS`` (the output of ``mine_rules``)."""
    if not isinstance(rules, pd.DataFrame):
        raise InputError(f"rules must be a pandas DataFrame, got {type(rules).__name__}")
    missing = [c for c in RULE_COLUMNS if c not in rules.columns]
    if missing:
        raise InputError(f"rules DataFrame lacks column(s) {', '.join(missing)}; pass the "
                         "output of recsys.rules.mining.mine_rules (optionally annotate()d)")


def _target(path: Path | str) -> Path:
    """The file to write, checked: its folder must exist and it must not be a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name inside it")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist; "
                         "create it first or choose another path")
    return path


@contextmanager
def _writing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it into place on success."""
    final = _target(path)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _lists(column: pd.Series) -> pa.ListArray:
    """A rules list column as one contiguous pyarrow list<string> array."""
    arr = pa.array(column.array) if isinstance(column.dtype, pd.ArrowDtype) else pa.array(
        column.to_numpy(dtype=object), type=pa.list_(pa.string()))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_list(arr.type) or arr.type.value_type != pa.string():
        arr = arr.cast(pa.list_(pa.string()))
    return arr


def _rows_where(lists: pa.ListArray, hit: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """Boolean mask of the rows whose list holds at least one value for which ``hit`` is true."""
    flat = lists.flatten()
    parents = pc.list_parent_indices(lists).to_numpy()
    hits = pc.fill_null(hit(flat), False).to_numpy(zero_copy_only=False)
    mask = np.zeros(len(lists), dtype=bool)
    mask[parents[hits]] = True
    return mask


def _join(lists: pa.ListArray) -> pa.Array:
    """Each list as one string, items joined by `` + `` (missing items as empty text)."""
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    values = pc.fill_null(lists.flatten(), "")
    return pc.binary_join(pa.ListArray.from_arrays(offsets, values), JOIN)


def _normalise_path(values: pa.Array) -> pa.Array:
    """Category paths with single spaces around each ``>`` and lower-cased, for matching."""
    spaced = pc.replace_substring_regex(values, pattern=r"\s*>\s*", replacement=PATH_SEP)
    return pc.utf8_lower(pc.utf8_trim_whitespace(spaced))


# ------------------------------------------------------------------------------- selection

def select_rules(rules: pd.DataFrame, *, min_lift: float | None = None,
                 product: str | None = None, category: str | None = None,
                 top: int | None = None, sort_by: str = "lift") -> pd.DataFrame:
    """Rules filtered and sorted for a merchandiser.

    ``product``: rules with that product id on either side. ``category``: rules with a product
    in that category path or below it on either side, matched on whole `` > `` components and
    case-insensitively ("Home > Kit" matches "Home > Kit > Mugs", not "Home > Kitchen"); needs
    the ``*_categories`` columns of ``annotate``. Sorted by ``sort_by`` descending (``fisher_p``
    ascending: the smallest p-value is the strongest evidence), ties by ``count`` descending;
    then the first ``top``.
    """
    _check_rules(rules)
    if sort_by not in rules.columns or not pd.api.types.is_numeric_dtype(rules[sort_by]):
        numeric = [c for c in rules.columns if pd.api.types.is_numeric_dtype(rules[c])]
        raise InputError(f"cannot sort rules by {sort_by!r}; use one of {', '.join(numeric)}")
    if top is not None and top < 0:
        raise InputError(f"top must be zero or more, got {top}")
    keep = np.ones(len(rules), dtype=bool)
    if min_lift is not None:
        keep &= (rules["lift"] >= min_lift).to_numpy()
    if product is not None:
        either = np.zeros(len(rules), dtype=bool)
        for side in _SIDES:
            either |= _rows_where(_lists(rules[f"{side}s"]), lambda v: pc.equal(v, product))
        keep &= either
    if category is not None:
        keep &= _in_category(rules, category)
    out = rules[keep]
    ascending = sort_by == "fisher_p"
    by, order = ([sort_by], [ascending]) if sort_by == "count" else (
        [sort_by, "count"], [ascending, False])
    out = out.sort_values(by, ascending=order, kind="stable", na_position="last")
    if top is not None:
        out = out.head(top)
    return out.reset_index(drop=True)


def _in_category(rules: pd.DataFrame, category: str) -> np.ndarray:
    """Rows with a product whose category path equals ``category`` or lies below it."""
    missing = [f"{side}_categories" for side in _SIDES
               if f"{side}_categories" not in rules.columns]
    if missing:
        raise InputError(f"filtering by category needs the {' and '.join(missing)} column(s); "
                         "run recsys.rules.mining.annotate(rules, catalog) with a catalog that "
                         "has a 'category' column first")
    parts = [p.strip().lower() for p in category.split(">")]
    if not all(parts):
        raise InputError(f"category {category!r} is not a category path like 'Home > Kitchen'")
    wanted = PATH_SEP.join(parts)

    def hit(values: pa.Array) -> pa.Array:
        paths = _normalise_path(values)
        return pc.or_(pc.equal(paths, wanted), pc.starts_with(paths, wanted + PATH_SEP))

    either = np.zeros(len(rules), dtype=bool)
    for side in _SIDES:
        either |= _rows_where(_lists(rules[f"{side}_categories"]), hit)
    return either


# ----------------------------------------------------------------------------- flat table

def flat_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """One row per rule with its list columns as text ("85123A + 21232"), ids beside names,
    then every other column (counts and measures) unchanged."""
    _check_rules(rules)
    present = [c for c in _LIST_COLUMNS if c in rules.columns]
    rest = [c for c in rules.columns if c not in present]
    out = pd.DataFrame(index=rules.index)
    for column in present:
        out[column] = pd.Series(pd.arrays.ArrowExtensionArray(_join(_lists(rules[column]))),
                                index=rules.index)
    for column in rest:
        out[column] = rules[column]
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------ CSV

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
    with _writing(path) as tmp:
        table.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


# ----------------------------------------------------------------------------------- XLSX

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
    with _writing(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_numbers": False,
                                              "strings_to_formulas": False,
                                              "strings_to_urls": False})
        try:
            book.set_properties({"title": title, "subject": "Association rules",
                                 "comments": _GLOSSARY_NOTE})
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
        sheet.write(i, 0, _SUMMARY_LABELS.get(key, str(key)))
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(
                value):
            sheet.write_number(i, 1, float(value))
        else:
            sheet.write_string(i, 1, _summary_text(value))
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
    sheet.write(len(GLOSSARY) + 2, 0, _GLOSSARY_NOTE)
    sheet.freeze_panes(1, 0)


def _summary_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_summary_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_summary_text(v) for v in value)
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):g}"
    return json.dumps(value, default=str)


# ----------------------------------------------------------------------------------- HTML

_CSS = REPORT_CSS + """th{position:sticky;top:0}p.empty{font-size:1.1rem;color:#8a4b00}
"""

_HTML_NUMBER: dict[str, Callable[[float], str]] = {
    "antecedent_count": "{:,.0f}".format, "consequent_count": "{:,.0f}".format,
    "count": "{:,.0f}".format, "support": "{:.2%}".format, "confidence": "{:.2%}".format,
    "leverage": "{:.4f}".format, "fisher_p": "{:.2e}".format,
}


def export_html(rules: pd.DataFrame, path: Path, *, title: str = "Association rules",
                summary: dict[str, Any] | None = None, top: int = 50,
                sort_by: str = "lift") -> Path:
    """Write a self-contained HTML report: summary, the ``top`` rules by ``sort_by``, a support
    vs confidence scatter coloured by lift, a network of the strongest product pairs (both
    inline SVG) and the glossary. Opens offline: no scripts, external CSS, fonts or links."""
    _check_rules(rules)
    _target(path)
    shown = select_rules(rules, top=top, sort_by=sort_by)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>", _html_summary(rules, shown, summary, sort_by)]
    if rules.empty:
        parts.append('<p class="empty">No rules: nothing met the mining thresholds. Lower '
                     "min_support / min_confidence or mine more orders.</p>")
    else:
        parts += ["<h2>Top rules</h2>", _html_table(shown),
                  "<h2>Support and confidence</h2>", _figure(_scatter_svg(rules),
                  f"Each dot is one of the {len(rules):,} rules; colour shows lift."),
                  "<h2>Products bought together</h2>", _figure(_network_svg(rules),
                  f"The {_NETWORK_PAIRS} product pairs with the highest lift; thicker and "
                  "darker lines mean higher lift.")]
    parts += ["<h2>Glossary</h2>", _html_glossary(), "</body>", "</html>"]
    with _writing(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return Path(path)


def _html_summary(rules: pd.DataFrame, shown: pd.DataFrame, summary: dict[str, Any] | None,
                  sort_by: str) -> str:
    items = [("Rules in this export", f"{len(rules):,}")]
    if len(shown) < len(rules):
        items.append(("Rules in the table", f"top {len(shown):,} by {sort_by}"))
    for key, value in (summary or {}).items():
        items.append((_SUMMARY_LABELS.get(key, str(key).replace("_", " ").capitalize()),
                      _summary_text(value)))
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="summary">{rows}</dl>'


def _side_cells(flat: pd.DataFrame, side: str) -> list[str]:
    """Names (when annotated) above the ids in small print, escaped."""
    ids = [html.escape(v) for v in flat[f"{side}s"].tolist()]
    if f"{side}_names" not in flat.columns:
        return ids
    names = [html.escape(v) for v in flat[f"{side}_names"].tolist()]
    return [f"{n}<br><small>{i}</small>" for n, i in zip(names, ids, strict=True)]


def _html_table(shown: pd.DataFrame) -> str:
    flat = flat_rules(shown)
    measures = [c for c in RULE_COLUMNS[2:] if c in flat.columns]
    head = ["<th>If the order has</th>", "<th>it often also has</th>"] + [
        f'<th title="{html.escape(_MEANING.get(c, c))}">{html.escape(c)}</th>' for c in measures]
    columns: list[list[str]] = [_side_cells(flat, "antecedent"), _side_cells(flat, "consequent")]
    for c in measures:
        fmt = _HTML_NUMBER.get(c, "{:.3f}".format)
        values = flat[c].to_numpy(dtype=np.float64, na_value=np.nan)
        columns.append(["" if np.isnan(v) else f'{fmt(v)}' for v in values])
    n_text = 2
    body = []
    for row in zip(*columns, strict=True):  # at most `top` rows
        cells = [f"<td>{v}</td>" if j < n_text else f'<td class="num">{v}</td>'
                 for j, v in enumerate(row)]
        body.append(f'<tr class="rule">{"".join(cells)}</tr>')
    return (f"<table><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _html_glossary() -> str:
    rows = "".join(
        f"<tr><td><b>{html.escape(e['metric'])}</b></td><td>{html.escape(e['meaning'])}</td>"
        f"<td><code>{html.escape(e['formula'])}</code></td><td>{html.escape(e['range'])}</td>"
        "</tr>" for e in GLOSSARY)
    return (f"<p>{html.escape(_GLOSSARY_NOTE)}</p><table><thead><tr><th>metric</th>"
            f"<th>meaning</th><th>formula</th><th>range</th></tr></thead><tbody>{rows}"
            "</tbody></table>")


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return "<p>No product pairs to draw (every rule has more than two products).</p>"
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


# ------------------------------------------------------------------------------ charts

def _scatter_svg(rules: pd.DataFrame) -> str:
    # A bare Figure (no pyplot): no GUI backend is touched and nothing is left open to close.
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    with chart_style("scatter"):
        fig = Figure(figsize=(7.5, 4.8))
        ax = fig.add_subplot()
        order = np.argsort(rules["lift"].to_numpy())  # highest lift drawn last, on top
        points = ax.scatter(rules["support"].to_numpy()[order],
                            rules["confidence"].to_numpy()[order],
                            c=rules["lift"].to_numpy()[order], cmap="viridis", s=18,
                            alpha=0.8, edgecolors="none", rasterized=len(rules) > _RASTER_POINTS)
        fig.colorbar(points, ax=ax, label="lift")
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set_xlabel("support (share of all orders with the whole rule)")
        ax.set_ylabel("confidence")
        ax.grid(alpha=0.3)
        return inline_svg(fig, "scatter")


def _strongest_pairs(rules: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` unordered product pairs (single-product rules) with the highest lift."""
    ant, con = _lists(rules["antecedents"]), _lists(rules["consequents"])
    single = (pc.list_value_length(ant).to_numpy() == 1) & (
        pc.list_value_length(con).to_numpy() == 1)
    a = ant.flatten().to_numpy(zero_copy_only=False)
    c = con.flatten().to_numpy(zero_copy_only=False)
    a_row = pc.list_parent_indices(ant).to_numpy()
    c_row = pc.list_parent_indices(con).to_numpy()
    a_of = a[single[a_row]]
    c_of = c[single[c_row]]
    rows = np.flatnonzero(single)
    pairs = pd.DataFrame({
        "u": np.where(a_of < c_of, a_of, c_of), "v": np.where(a_of < c_of, c_of, a_of),
        "lift": rules["lift"].to_numpy()[rows], "count": rules["count"].to_numpy()[rows]})
    best = pairs.groupby(["u", "v"], as_index=False).agg(lift=("lift", "max"),
                                                          count=("count", "max"))
    return best.sort_values(["lift", "count"], ascending=False, kind="stable").head(n)


def _product_names(rules: pd.DataFrame) -> dict[str, str]:
    """Product id -> name from the annotated columns (empty when not annotated)."""
    names: dict[str, str] = {}
    for side in _SIDES:
        if f"{side}_names" not in rules.columns:
            continue
        ids = _lists(rules[f"{side}s"]).flatten().to_numpy(zero_copy_only=False)
        labels = pc.fill_null(_lists(rules[f"{side}_names"]).flatten(), "").to_numpy(
            zero_copy_only=False)
        names.update(zip(ids.tolist(), labels.tolist(), strict=True))
    return names


def _label(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _packed_layout(graph: Any) -> tuple[dict[Any, np.ndarray], tuple[float, float]]:
    """spring_layout (fixed seed) of each connected component, packed in rows like shelves;
    positions and the (width, height) they span, in units of about one node label's width.

    One spring layout of a disconnected graph pushes the components to the far edges and
    squeezes each of them into a corner; laid out apart, every component keeps its room.
    """
    import networkx as nx

    boxes = []
    for nodes in sorted(nx.connected_components(graph), key=lambda c: (-len(c), min(c))):
        sub = graph.subgraph(nodes)
        scale = 0.55 * math.sqrt(len(nodes))
        pos = nx.spring_layout(sub, k=1.0 / math.sqrt(len(nodes)), iterations=200, seed=7,
                               scale=scale)
        xy = np.array([pos[n] for n in sub.nodes]).reshape(-1, 2)
        xy -= xy.min(axis=0)
        if xy[:, 0].max() > xy[:, 1].max():  # stand it upright: labels are wide, not tall
            xy = xy[:, ::-1]
        boxes.append((list(sub.nodes), xy, xy.max(axis=0) + (1.0, 0.4)))  # room for labels
    row_width = max(max(float(size[0]) for _, _, size in boxes), _LABELS_PER_ROW)
    out: dict[Any, np.ndarray] = {}
    x = y = row_height = 0.0
    for nodes, xy, (width, height) in boxes:  # a loop over components, at most 60
        if x > 0 and x + width > row_width:
            x, y, row_height = 0.0, y - row_height, 0.0
        for node, point in zip(nodes, xy + (x + 0.5, y - height), strict=True):
            out[node] = point
        x += float(width)
        row_height = max(row_height, float(height))
    return out, (row_width, row_height - y)


def _network_svg(rules: pd.DataFrame) -> str | None:
    import networkx as nx
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    pairs = _strongest_pairs(rules, _NETWORK_PAIRS)
    if pairs.empty:
        return None
    graph = nx.Graph()
    graph.add_weighted_edges_from(pairs[["u", "v", "lift"]].itertuples(index=False),
                                  weight="lift")
    pos, (width, height) = _packed_layout(graph)
    names = _product_names(rules)
    lifts = pairs["lift"].to_numpy(dtype=np.float64)
    low, high = float(lifts.min()), float(lifts.max())
    scaled = (lifts - low) / (high - low) if high > low else np.full(len(lifts), 0.5)
    segments = [(pos[u], pos[v]) for u, v in zip(pairs["u"], pairs["v"], strict=True)]
    with chart_style("network"):
        fig_width = 10.0  # inches: about five 24-character labels side by side
        fig = Figure(figsize=(fig_width, min(max(fig_width * height / width, 3.0), 18.0)))
        ax = fig.add_subplot()
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1)
        edges = LineCollection(segments, linewidths=1.0 + 6.0 * scaled, cmap="viridis",
                               norm=norm, alpha=0.75, zorder=1)
        edges.set_array(lifts)
        ax.add_collection(edges)
        xy = np.array([pos[node] for node in graph.nodes])
        ax.scatter(xy[:, 0], xy[:, 1], s=60, color="#e07a1f", edgecolors="white", zorder=2)
        for node, (x, y) in zip(graph.nodes, xy, strict=True):  # at most 2 x 30 labels
            ax.text(x, y + 0.04, _label(names.get(node, node)), ha="center", va="bottom",
                    fontsize=7, parse_math=False, zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.7})
        fig.colorbar(edges, ax=ax, label="lift", shrink=0.6, location="bottom", pad=0.02)
        ax.set_axis_off()
        ax.set_xlim(-0.1, width + 0.1)
        ax.set_ylim(-height - 0.1, 0.3)
        return inline_svg(fig, "network")


# --------------------------------------------------------------------------------- dispatch

_WRITERS: dict[str, Callable[..., Path]] = {
    "csv": export_csv, "xlsx": export_xlsx, "html": export_html,
}


def export_rules(rules: pd.DataFrame, fmt: str, path: Path, **kwargs: Any) -> Path:
    """Write ``rules`` as ``fmt`` ("csv", "xlsx" or "html") to ``path``; keyword arguments go
    to that format's writer."""
    writer = _WRITERS.get(str(fmt).strip().lower().lstrip("."))
    if writer is None:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(_WRITERS)}")
    return writer(rules, path, **kwargs)
