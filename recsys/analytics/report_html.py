"""Small HTML pieces shared by the sections of `recsys report`: number formats, definition
lists, tables (numeric columns right-aligned, headers included) and figures."""

from __future__ import annotations

import html
import math

__all__ = ["money", "share", "days", "dl", "table", "figure", "interval"]


def money(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:,.2f}"


def share(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.1%}"


def days(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f}"


def interval(est: float, low: float, high: float, is_money: bool) -> str:
    """``estimate [low, high]``; empty when the estimate cannot be computed."""
    fmt = money if is_money else share
    if not math.isfinite(est):
        return ""
    return f"{fmt(est)} [{fmt(low)}, {fmt(high)}]"


def dl(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="summary">{rows}</dl>'


def table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """Columns from ``numeric_from`` on are numbers: right-aligned, their headers too."""
    def cls(j: int) -> str:
        return ' class="num"' if j >= numeric_from else ""

    th = "".join(f"<th{cls(j)}>{html.escape(h)}</th>" for j, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(j)}>{html.escape(c)}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str | None, caption: str, name: str) -> str:
    """The chart with its caption, or a note that names the chart that is not drawn."""
    if svg is None:
        return f'<p class="note">No {html.escape(name)} chart: not enough data to draw it.</p>'
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
