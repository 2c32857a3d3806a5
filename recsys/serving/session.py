"""Session-aware lists: the shopper's other recent products add their neighbours to a list's
candidates, the most recent weighing most, and the training sessions most like the session so
far (V-SKNN, ``recsys.models.session_knn``) vote for theirs, so a list reflects the whole
session and not only the product on screen. Each re-scored item names the session products
that shaped it (``reason.evidence.session``). Without a session nothing changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from recsys.models.neighbours import Neighbours
from recsys.serving.finish import Candidate
from recsys.serving.index import ServingIndex

__all__ = ["Session", "NO_SESSION", "weighted", "session_of_recent", "rescore"]

SHOWN = 3  # session products named per item, strongest first


@dataclass(frozen=True)
class Session:
    """The session's other products with their weights (most recent first), the whole
    session oldest first (the V-SKNN query: its last products are those on screen), and the
    V-SKNN share and neighbour count."""

    recent: tuple[tuple[str, float], ...] = ()
    order: tuple[str, ...] = ()
    knn_weight: float = 0.0
    knn_k: int = 100

    def __bool__(self) -> bool:
        return bool(self.recent)


NO_SESSION = Session()


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
    return out


def session_of_recent(recent: list[str], on_screen: list[str], *, weight: float, decay: float,
                      length: int, knn_weight: float, knn_k: int) -> Session:
    """The Session of ``recent`` (most recent first) around the ``on_screen`` products."""
    others = weighted(recent, leave_out=on_screen, weight=weight, decay=decay, length=length)
    if not others:
        return NO_SESSION
    order = tuple(pid for pid, _ in reversed(others)) + tuple(dict.fromkeys(on_screen))
    return Session(tuple(others), order, knn_weight, knn_k)


def _knn(index: ServingIndex, session: Session) -> tuple[np.ndarray, np.ndarray]:
    """(product codes, V-SKNN scores scaled to the best) for the session; empty without."""
    if index.sessions is None or session.knn_weight <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    codes = [index.code_of[p] for p in session.order if p in index.code_of]
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0)
    products, scores = index.sessions.score_one(codes, k=session.knn_k)
    peak = float(scores.max()) if len(scores) else 0.0
    if peak <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    return products, session.knn_weight * scores / peak


def rescore(index: ServingIndex, table: Neighbours | None, candidates: list[Candidate],
            session: Session, limit: int) -> list[Candidate]:
    """``candidates`` (scaled to the best one) plus each session product's weighted
    neighbours (each row scaled to its best) plus the V-SKNN scores (scaled to the best,
    times ``knn_weight``); the ``limit`` best products the session adds that were not
    candidates join with source ``session``."""
    if not session:
        return candidates
    parts_ids, parts_vals, parts_src = [], [], []
    knn_ids, knn_vals = _knn(index, session)
    if len(knn_ids):  # named after the session's most recent other product
        parts_ids.append(knn_ids)
        parts_vals.append(knn_vals)
        parts_src.append(np.full(len(knn_ids), index.code_of.get(session.recent[0][0], -1)))
    for pid, w in session.recent:
        code = index.code_of.get(pid)
        if code is None or table is None or w <= 0:
            continue
        ids = np.asarray(table.ids[code])
        keep = ids >= 0
        scores = np.asarray(table.scores[code])[keep].astype(np.float64)
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
    sums = np.bincount(inverse, weights=vals)
    total = dict(zip(products.tolist(), sums.tolist(), strict=True))
    codes = [index.code_of.get(c.product_id, -1) for c in candidates]
    new = ~np.isin(products, np.asarray(codes, dtype=np.int64))
    added = products[new][np.argsort(-sums[new], kind="stable")[:limit]].tolist()
    wanted = np.isin(ids, np.asarray(codes + added, dtype=np.int64))
    strongest = np.argsort(-vals[wanted], kind="stable")
    shaped: dict[int, list[int]] = {}  # product -> session products, strongest first
    for code, by in zip(ids[wanted][strongest].tolist(), src[wanted][strongest].tolist(),
                        strict=True):
        names = shaped.setdefault(code, [])
        if by >= 0 and by not in names and len(names) < SHOWN:
            names.append(by)

    def named(code: int) -> list[str]:
        return [index.ids[c] for c in shaped[code]]

    peak = max((c.score for c in candidates), default=0.0)
    scale = 1.0 / peak if peak > 0 else 1.0
    out = []
    for cand, code in zip(candidates, codes, strict=True):
        cand.score *= scale
        if code in total:
            cand.score += total[code]
            cand.evidence["session"] = named(code)
        out.append(cand)
    out += [Candidate(index.ids[c], total[c], "session",
                      {"session": named(c), "weight": round(total[c], 6)}) for c in added]
    return out
