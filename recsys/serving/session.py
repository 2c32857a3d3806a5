"""Session-aware lists: the shopper's other recent products add their neighbours to a list's
candidates, the most recent weighing most, so a list reflects the whole session so far and
not only the product on screen. Each re-scored item names the session products that shaped
it (``reason.evidence.session``). Without a session nothing changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recsys.models.neighbours import Neighbours
from recsys.serving.finish import Candidate
from recsys.serving.index import ServingIndex

__all__ = ["Session", "weighted", "rescore"]

Session = Sequence[tuple[str, float]]  # (product id, weight), most recent first
SHOWN = 3  # session products named per item, strongest first


def weighted(recent: Iterable[str], *, leave_out: Iterable[str] = (), weight: float,
             decay: float, length: int) -> list[tuple[str, float]]:
    """The session's products (most recent first, each once, ``leave_out`` left out) with
    their weights: ``weight`` for the most recent, ``decay`` times less for each older."""
    skip = set(leave_out)
    out: list[tuple[str, float]] = []
    for pid in recent:
        if pid in skip:
            continue
        skip.add(pid)
        out.append((pid, weight * decay ** len(out)))
        if len(out) == length:
            break
    return out if weight > 0 else []


def rescore(index: ServingIndex, table: Neighbours | None, candidates: list[Candidate],
            session: Session, limit: int) -> list[Candidate]:
    """``candidates`` (scaled to the best one) plus each session product's weighted
    neighbours (each row scaled to its best); the ``limit`` best products the session adds
    that were not candidates join with source ``session``."""
    if table is None or not session:
        return candidates
    ids_all, scores_all = np.asarray(table.ids), np.asarray(table.scores)
    parts_ids, parts_vals, parts_src = [], [], []
    for pid, w in session:
        code = index.code_of.get(pid)
        if code is None:
            continue
        ids = ids_all[code]
        keep = ids >= 0
        scores = scores_all[code][keep].astype(np.float64)
        peak = float(scores.max()) if len(scores) else 0.0
        if peak <= 0:
            continue
        parts_ids.append(ids[keep].astype(np.int64))
        parts_vals.append(w * scores / peak)
        parts_src.append(np.full(int(keep.sum()), code, dtype=np.int64))
    if not parts_ids:
        return candidates
    ids, vals, src = (np.concatenate(parts_ids), np.concatenate(parts_vals),
                      np.concatenate(parts_src))
    products, inverse = np.unique(ids, return_inverse=True)
    total = np.bincount(inverse, weights=vals)
    order = np.lexsort((-vals, inverse))  # by product, strongest contribution first
    starts = np.searchsorted(inverse[order], np.arange(len(products)))
    slot = {int(c): i for i, c in enumerate(products.tolist())}

    def named(i: int) -> list[str]:
        hi = starts[i + 1] if i + 1 < len(starts) else len(order)
        return [index.ids[int(c)] for c in src[order[starts[i]:hi]][:SHOWN].tolist()]

    peak = max((c.score for c in candidates), default=0.0)
    scale = 1.0 / peak if peak > 0 else 1.0
    out, seen = [], set()
    for cand in candidates:
        code = index.code_of.get(cand.product_id)
        seen.add(code)
        i = slot.get(code) if code is not None else None
        cand.score *= scale
        if i is not None:
            cand.score += float(total[i])
            cand.evidence["session"] = named(i)
        out.append(cand)
    for i in np.argsort(-total, kind="stable").tolist():
        if len(out) - len(candidates) == limit:
            break
        code = int(products[i])
        if code not in seen:
            out.append(Candidate(index.ids[code], float(total[i]), "session",
                                 {"session": named(i), "weight": round(float(total[i]), 6)}))
    return out
