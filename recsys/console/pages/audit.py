"""Undo (one decision or a whole batch), the audit log, and the decisions the served version
no longer holds (flagged)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from recsys.console import review
from recsys.console.deps import ConsoleDep, Editor, FormDep, Index, Rules, SessionDep, Viewer
from recsys.console.forms import Undo, parse
from recsys.console.site import page_router, redirect, render, safe_next

__all__ = ["router"]

AUDIT_PAGE = 100
router = page_router()


@router.post("/undo")
def undo(console: ConsoleDep, user: Editor, session: SessionDep,
         form: FormDep) -> RedirectResponse:
    data = parse(Undo, form)
    ids = console.store.batch_decisions(data.batch_id) if data.batch_id else (
        [data.decision_id] if data.decision_id else [])
    done = console.store.deactivate_decisions(ids, by=user.name, reason=data.reason or None)
    session.flash(f"Undone {len(done):,} decision{'s' * (len(done) != 1)}." if done else
                  "Nothing to undo: the decision is not active any more.")
    return redirect(safe_next(data.next, "/audit"))


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, console: ConsoleDep, user: Viewer, index: Index,
               table: Rules, page: Annotated[int, Query(ge=1, le=1_000_000)] = 1
               ) -> HTMLResponse:
    total = console.store.count_audit()
    pages = max(1, math.ceil(total / AUDIT_PAGE))
    entries = console.store.audit_log(limit=AUDIT_PAGE,
                                      offset=(min(page, pages) - 1) * AUDIT_PAGE)
    batch_sizes: dict[str, int] = {}
    for entry in entries:  # one page of the log
        entry["missing"] = review.missing_from(entry, index, table)
        batch_sizes[entry["batch_id"]] = batch_sizes.get(entry["batch_id"], 0) + 1
    return render(request, "audit.html", user=user, entries=entries, page=min(page, pages),
                  pages=pages, total=total, batch_sizes=batch_sizes)


@router.get("/flagged", response_class=HTMLResponse)
def flagged_page(request: Request, console: ConsoleDep, user: Viewer, index: Index,
                 table: Rules) -> HTMLResponse:
    found = review.flagged(console.store.list_decisions(), index, table)
    return render(request, "flagged.html", user=user, flagged=found)
