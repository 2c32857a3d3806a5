"""A product's page (its rules, neighbours, bundles, what the API shows for it now, the
decisions about it) and the decisions taken there: pin, boost or bury, block."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from recsys.console import review
from recsys.console.deps import (
    ConsoleDep,
    Editor,
    FormDep,
    Index,
    Rules,
    SessionDep,
    Viewer,
    rule_statuses,
)
from recsys.console.forms import ProductDecision, parse
from recsys.console.site import page_router, redirect, render, safe_next
from recsys.serving import service
from recsys.serving.index import ServingIndex

__all__ = ["router"]

router = page_router()


@router.get("/product", response_class=HTMLResponse)
def product_page(request: Request, console: ConsoleDep, user: Viewer, index: Index,
                 table: Rules,
                 product_id: Annotated[str, Query(alias="id", min_length=1, max_length=128)],
                 pin: Annotated[str, Query(max_length=128)] = "") -> HTMLResponse:
    code = index.code_of.get(product_id)
    if code is None:
        raise HTTPException(status_code=404, detail=f"Product {product_id!r} is not in "
                                                    f"version {index.version}.")
    decided, statuses = rule_statuses(console, table)
    confidence = table.metrics["confidence"]

    def best(rows: np.ndarray, n: int) -> list[dict[str, Any]]:
        """The n most confident of these rules (ties in file order)."""
        return table.describe(rows[np.argsort(-confidence[rows], kind="stable")][:n],
                              statuses, decided)

    return render(
        request, "product.html", user=user, product=index.describe(product_id),
        available=product_id in index.available,
        rules_from=_by_consequent(best(table.rows_with(product_id, "antecedent"), 500), 50),
        rules_to=[{**r, "more": []} for r in best(table.rows_with(product_id, "consequent"),
                                                  20)],
        also_viewed=_neighbours(index, index.also_viewed, code),
        also_viewed_counts=index.ranking.also_viewed_counts,
        bundles=_bundles(index, code)[:20],
        api=service.product_lists(console.serving, index, product_id),
        decisions=[d for d in console.store.list_decisions() if review.concerns(d, product_id)],
        pin=pin)


@router.post("/product/decide")
def decide_product(console: ConsoleDep, user: Editor, index: Index, session: SessionDep,
                   form: FormDep) -> RedirectResponse:
    data = parse(ProductDecision, form)
    back = safe_next(data.next, "/rules")
    unknown = [p for p in (data.product, data.seed) if p and p not in index.code_of]
    if unknown:
        session.flash(f"Nothing changed: {', '.join(unknown)} is not a product of "
                      f"version {index.version}.")
        return redirect(back)
    product, seed = review.label(index, data.product), review.label(index, data.seed or "")
    if data.action == "pin":
        if not data.seed or data.position is None or data.seed == data.product:
            session.flash("Not pinned: a pin needs another product and a position.")
            return redirect(back)
        decision: dict[str, Any] = {"kind": "pin", "seed_id": data.seed,
                                    "product_id": data.product, "position": data.position}
        done = f"Pinned {product} at position {data.position} for {seed}."
    elif data.action == "boost":
        if data.factor is None:
            session.flash("Not changed: boosting or burying needs a factor.")
            return redirect(back)
        decision = {"kind": "boost", "product_id": data.product, "factor": data.factor}
        done = (f"{'Boosted' if data.factor >= 1 else 'Buried'} {product} "
                f"(score x {data.factor:g}) everywhere.")
    else:
        decision = {"kind": "block_product", "product_id": data.product}
        done = f"Blocked {product} from every list."
    console.store.add_decisions([decision], by=user.name, reason=data.reason or None)
    session.flash(done)
    return redirect(back)


def _by_consequent(rules: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Rules grouped by what they recommend, the first ``n`` consequents in the order given:
    each the first (most confident) rule, with the others of its consequent in ``more`` (a
    product is one line however many antecedents lead to it)."""
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for rule in rules:
        key = tuple(pid for pid, _ in rule["consequents"])
        if key in groups:
            groups[key]["more"].append(rule)
        elif len(groups) < n:
            groups[key] = {**rule, "more": []}
    return list(groups.values())


def _neighbours(index: ServingIndex, table: Any, code: int, n: int = 20
                ) -> list[dict[str, Any]]:
    """A product's precomputed neighbours with their evidence, before any business rule."""
    if table is None:
        return []
    ids, scores, support = (table.ids[code, :n].tolist(), table.scores[code, :n].tolist(),
                            table.support[code, :n].tolist())
    return [{"product_id": index.ids[i], "name": index.names.get(index.ids[i], ""),
             "similarity": s, "support": int(u)}
            for i, s, u in zip(ids, scores, support, strict=True) if i >= 0]


def _bundles(index: ServingIndex, code: int) -> list[dict[str, Any]]:
    """Every mined bundle holding the product, with its evidence, best gain first."""
    return [{"products": [index.describe(index.ids[c]) for c in bundle.products],
             "count": bundle.count, "expected_gain": bundle.expected_gain,
             "anchor": index.ids[bundle.anchor], "anchor_confidence": bundle.anchor_confidence}
            for bundle in sorted(index.bundles.get(code, []), key=lambda b: -b.expected_gain)]
