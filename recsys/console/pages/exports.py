"""The filtered rules as CSV, XLSX, or the self-contained HTML report."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import HTMLResponse, Response

from recsys.console.deps import ConsoleDep, Rules, Viewer, rule_statuses
from recsys.console.rules import RuleBrowserQuery, RuleBrowserTable
from recsys.console.site import REPORT_CSP, Console, page_router
from recsys.rules.export import export_csv, export_html, export_xlsx

__all__ = ["router"]

router = page_router()
Filter = Annotated[RuleBrowserQuery, Query()]


def _export(console: Console, table: RuleBrowserTable, rule_filter: RuleBrowserQuery,
            fmt: Literal["csv", "xlsx"]) -> Response:
    _, statuses = rule_statuses(console, table)
    frame = table.export_frame(table.select(rule_filter, statuses), statuses)
    with tempfile.TemporaryDirectory(prefix="recsys-export-") as folder:
        path = Path(folder) / f"rules.{fmt}"
        if fmt == "csv":
            export_csv(frame, path)
        else:
            export_xlsx(frame, path, title=f"Rules of version {table.version}")
        body = path.read_bytes()
    media = "text/csv; charset=utf-8" if fmt == "csv" else (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="rules-{table.version}.{fmt}"'})


@router.get("/rules/export.csv")
def export_rules_csv(console: ConsoleDep, user: Viewer, table: Rules,
                     rule_filter: Filter) -> Response:
    return _export(console, table, rule_filter, "csv")


@router.get("/rules/export.xlsx")
def export_rules_xlsx(console: ConsoleDep, user: Viewer, table: Rules,
                      rule_filter: Filter) -> Response:
    return _export(console, table, rule_filter, "xlsx")


@router.get("/rules/report.html", response_class=HTMLResponse)
def rules_report(console: ConsoleDep, user: Viewer, table: Rules,
                 rule_filter: Filter) -> HTMLResponse:
    """The HTML rules report (charts and glossary) of the filtered rules."""
    _, statuses = rule_statuses(console, table)
    frame = table.export_frame(table.select(rule_filter, statuses), statuses)
    shown = {k: v for k, v in rule_filter.fields().items() if k != "page"}
    with tempfile.TemporaryDirectory(prefix="recsys-report-") as folder:
        path = export_html(frame, Path(folder) / "rules.html",
                           title=f"Rules of version {table.version}",
                           summary={"artifact version": table.version,
                                    "filter": shown or "none"},
                           top=100, sort_by=rule_filter.sort)
        page = path.read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})
