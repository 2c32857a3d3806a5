"""The HTML rules report: one self-contained file (inline CSS and SVG charts; no scripts,
fonts or links to fetch) with the summary, the top rules, two charts and the glossary."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.charts import REPORT_CSS
from recsys.rules.export.charts import NETWORK_PAIRS, network_svg, scatter_svg
from recsys.rules.export.files import flat_rules, target, writing
from recsys.rules.export.glossary import (
    GLOSSARY,
    GLOSSARY_NOTE,
    MEANING,
    SUMMARY_LABELS,
    summary_text,
)
from recsys.rules.mining import RULE_COLUMNS
from recsys.rules.query import check_rules, select_rules

__all__ = ["export_html"]

_CSS = REPORT_CSS + """th{position:sticky;top:0}p.empty{font-size:1.1rem;color:#8a4b00}
div.wide{overflow-x:auto}table.rules td:nth-child(-n+2){min-width:16rem}
table.rules td.num{white-space:nowrap}
"""
_HEADERS = {  # the table's column headers, in words
    "antecedent_count": "orders with the first side", "consequent_count":
    "orders with the second side", "count": "orders with both", "zhangs_metric":
    "Zhang's metric", "jaccard": "Jaccard", "kulczynski": "Kulczynski", "fisher_p":
    "Fisher p-value"}

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
    check_rules(rules)
    target(path)
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
                  "<h2>Support and confidence</h2>", _figure(scatter_svg(rules),
                  f"Each dot is one of the {len(rules):,} rules; darker dots have higher lift."),
                  "<h2>Products bought together</h2>", _figure(network_svg(rules),
                  f"The {NETWORK_PAIRS} product pairs with the highest lift; thicker and "
                  "darker lines mean higher lift.")]
    parts += ["<h2>Glossary</h2>", _html_glossary(), "</body>", "</html>"]
    with writing(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return Path(path)


def _html_summary(rules: pd.DataFrame, shown: pd.DataFrame, summary: dict[str, Any] | None,
                  sort_by: str) -> str:
    items = [("Rules in this export", f"{len(rules):,}")]
    if len(shown) < len(rules):
        items.append(("Rules in the table", f"top {len(shown):,} by {sort_by}"))
    for key, value in (summary or {}).items():
        items.append((SUMMARY_LABELS.get(key, str(key).replace("_", " ").capitalize()),
                      summary_text(value)))
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
        f'<th title="{html.escape(c)}: {html.escape(MEANING.get(c, c))}">'
        f'{html.escape(_HEADERS.get(c, c))}</th>' for c in measures]
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
    return (f'<div class="wide"><table class="rules"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _html_glossary() -> str:
    rows = "".join(
        f"<tr><td><b>{html.escape(e['metric'])}</b></td><td>{html.escape(e['meaning'])}</td>"
        f"<td><code>{html.escape(e['formula'])}</code></td><td>{html.escape(e['range'])}</td>"
        "</tr>" for e in GLOSSARY)
    return (f"<p>{html.escape(GLOSSARY_NOTE)}</p><table><thead><tr><th>metric</th>"
            f"<th>meaning</th><th>formula</th><th>range</th></tr></thead><tbody>{rows}"
            "</tbody></table>")


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return "<p>No product pairs to draw (every rule has more than two products).</p>"
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
