"""The rules browser: search, filter, sort and page the served rules; approve or reject the
ticked ones or every matching one (up to ``BULK_CAP``)."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from recsys.console.deps import (
    ConsoleDep,
    Editor,
    FormDep,
    Rules,
    SessionDep,
    Viewer,
    rule_statuses,
)
from recsys.console.forms import RulesDecision, parse
from recsys.console.rules import METRICS, PAGE_SIZE, STATUSES, RuleBrowserQuery
from recsys.console.site import PREFIX, page_router, redirect, render
from recsys.rules.export import GLOSSARY

__all__ = ["router", "BULK_CAP"]

BULK_CAP = 1000  # a bulk action decides at most this many rules, the first in the shown order
router = page_router()


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, console: ConsoleDep, user: Viewer, table: Rules,
               rule_filter: Annotated[RuleBrowserQuery, Query()]) -> HTMLResponse:
    decided, statuses = rule_statuses(console, table)
    rows = table.select(rule_filter, statuses)
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(rule_filter.page, pages)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    counts = np.bincount(statuses, minlength=len(STATUSES))
    return render(request, "rules.html", user=user, f=rule_filter, total=len(rows),
                  all_rules=len(table), page=page, pages=pages,
                  rules=table.describe(shown, statuses, decided), metrics=METRICS,
                  statuses=STATUSES, status_counts=dict(zip(STATUSES, counts.tolist(),
                                                            strict=True)),
                  bulk_cap=BULK_CAP, glossary={g["metric"]: g["meaning"] for g in GLOSSARY})


@router.post("/rules/decide")
def decide_rules(console: ConsoleDep, user: Editor, table: Rules, session: SessionDep,
                 form: FormDep) -> RedirectResponse:
    data = parse(RulesDecision, form, key=form.getlist("key"))
    back = f"{PREFIX}/rules?{data.query()}"
    if data.action == "reject" and not data.reason:
        session.flash("Not rejected: a rejection needs a reason.")
        return redirect(back)
    decided, statuses = rule_statuses(console, table)
    if data.scope == "matching":
        matching = table.select(data, statuses)
        keys = table.keys[matching[:BULK_CAP]].tolist()
        if len(matching) > BULK_CAP:
            session.flash(f"Only the first {BULK_CAP:,} of the {len(matching):,} matching "
                          "rules (in the order shown) were considered.")
    else:
        keys = [k for k in data.key if k in table.row_of_key]
    status = "approved" if data.action == "approve" else "rejected"
    todo = [k for k in dict.fromkeys(keys)
            if decided.decided.get(k, ("new", None))[0] != status]
    kind = "approve_rule" if data.action == "approve" else "block_rule"
    console.store.add_decisions([{"kind": kind, "rule_key": k} for k in todo],
                                by=user.name, reason=data.reason or None)
    session.flash(f"{status.capitalize()} {len(todo):,} rule{'s' * (len(todo) != 1)}"
                  + (f" ({len(keys) - len(todo):,} already {status})"
                     if len(keys) > len(todo) else "") + ".")
    return redirect(back)
