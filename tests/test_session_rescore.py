"""The compiled session merge (``session.rescore``, V-SKNN's ``score_one``) serves exactly
what the plain numpy version it replaced served, on the demo shop for many random sessions:
same items, scores, reasons, fills and ``applied``, bit for bit. Also-viewed, which builds
only the candidates that can be shown (``finish.finish_pool``), against the version that
built every candidate and finished them all."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from recsys.models.neighbours import Neighbours
from recsys.serving import recommend, session
from recsys.serving.cold_start import borrowed_also_viewed
from recsys.serving.finish import Candidate, Decisions, Options, finish
from recsys.serving.index import ServingIndex, load_index
from recsys.serving.session import Session, session_of_recent


def reference_knn(index: ServingIndex, s: Session) -> tuple[np.ndarray, np.ndarray]:
    """V-SKNN as numpy calls (the version served before it was compiled)."""
    if index.sessions is None or s.knn_weight <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    by_indptr, by_indices, s_indptr, s_indices = index.sessions.arrays
    codes_seen = [index.code_of[p] for p in s.order if p in index.code_of]
    if not codes_seen:
        return np.zeros(0, np.int64), np.zeros(0)
    weights: dict[int, float] = {}
    for p, code in enumerate(codes_seen, start=1):
        weights[code] = p / len(codes_seen)
    codes = np.fromiter(weights, dtype=np.int64, count=len(weights))
    lo, hi = by_indptr[codes], by_indptr[codes + 1]
    if s.knn_sample > 0:  # each product's last sessions only
        lo = np.maximum(lo, hi - s.knn_sample)
    held = np.concatenate([by_indices[a:b] for a, b in zip(lo, hi, strict=True)])
    if not len(held):
        return np.zeros(0, np.int64), np.zeros(0)
    neighbours, inverse = np.unique(held, return_inverse=True)
    sims = np.bincount(inverse, weights=np.repeat(
        np.fromiter(weights.values(), dtype=np.float64, count=len(weights)), hi - lo))
    best = np.lexsort((neighbours, -sims))[: s.knn_k]
    rows = neighbours[best]
    s_lo, s_hi = s_indptr[rows], s_indptr[rows + 1]
    items = np.concatenate([s_indices[a:b] for a, b in zip(s_lo, s_hi, strict=True)])
    products, where = np.unique(items, return_inverse=True)
    scores = np.bincount(where, weights=np.repeat(sims[best], s_hi - s_lo))
    peak = float(scores.max()) if len(scores) else 0.0
    if peak <= 0:
        return np.zeros(0, np.int64), np.zeros(0)
    return products.astype(np.int64), s.knn_weight * scores / peak


def reference_rescore(index: ServingIndex, table: Neighbours | None,
                      candidates: list[Candidate], s: Session, limit: int) -> list[Candidate]:
    """``session.rescore`` as it was served before it was compiled (numpy and dicts)."""
    if not s:
        return candidates
    parts_ids, parts_vals, parts_src = [], [], []
    knn_ids, knn_vals = reference_knn(index, s)
    if len(knn_ids):
        parts_ids.append(knn_ids)
        parts_vals.append(knn_vals)
        parts_src.append(np.full(len(knn_ids), index.code_of.get(s.products[0], -1)))
    for pid, w in zip(s.products, s.weights, strict=True):
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
    shaped: dict[int, list[int]] = {}
    for code, by in zip(ids[wanted][strongest].tolist(), src[wanted][strongest].tolist(),
                        strict=True):
        names = shaped.setdefault(code, [])
        if by >= 0 and by not in names and len(names) < session.SHOWN:
            names.append(by)
    peak = max((c.score for c in candidates), default=0.0)
    scale = 1.0 / peak if peak > 0 else 1.0
    out = []
    for cand, code in zip(candidates, codes, strict=True):
        cand.score *= scale
        if code in total:
            cand.score += total[code]
            cand.evidence["session"] = [index.ids[c] for c in shaped[code]]
        out.append(cand)
    out += [Candidate(index.ids[c], total[c], "session",
                      {"session": [index.ids[b] for b in shaped[c]],
                       "weight": round(total[c], 6)}) for c in added]
    return out


def reference_also_viewed(index: ServingIndex, product_id: str, options: Options,
                          decisions: Decisions, s: Session) -> recommend.Result:
    """``recommend.also_viewed`` as it was served before it built candidates lazily: every
    candidate a ``Candidate``, rescored by the numpy version, all of them finished."""
    code = index.code_of.get(product_id)
    table = index.also_viewed
    limit = 3 * options.k + len(options.exclude) + 10
    candidates = []
    strongest = 0
    if code is not None and table is not None:
        ids = np.asarray(table.ids[code])
        keep = ids >= 0
        ids = ids[keep]
        sims = np.asarray(table.scores[code], dtype=np.float64)[keep]
        support = np.asarray(table.support[code], dtype=np.float64)[keep]
        strongest = int(support.max()) if len(support) else 0
        weight = index.ranking.also_viewed_support_weight
        counted = f"{index.ranking.also_viewed_counts}_with_both"

        def scaled(values: np.ndarray) -> np.ndarray:
            peak = float(values.max()) if len(values) else 0.0
            return values / peak if peak > 0 else values

        scores = scaled(sims) + weight * scaled(support)
        for i in np.argsort(-scores, kind="stable")[:limit].tolist():
            candidates.append(Candidate(index.ids[int(ids[i])], float(scores[i]), "also_viewed", {
                "seed": product_id, counted: int(support[i]),
                "similarity": round(float(sims[i]), 6)}))
    if not candidates:
        candidates = borrowed_also_viewed(index, product_id, code, limit)
    candidates = reference_rescore(index, table, candidates, s, limit)
    content = index.content
    if content is not None and strongest < content.min_support:
        candidates += [Candidate(index.ids[c], score, "content", {
            "seed": product_id, "similarity": round(score, 6), "shared_features": shared,
            "co_view_support": strongest}, 1)
            for c, score, shared in content.neighbours(code, product_id, limit)]
    return finish(index, candidates, options, decisions, seeds=[product_id],
                  fallback_category=index.categories.get(product_id),
                  never=frozenset([product_id]))


@pytest.fixture(scope="module")
def index(demo_artifact: Path) -> ServingIndex:
    return load_index(demo_artifact)


def served(list_of: Callable[..., recommend.Result], args: tuple[object, ...],
           scorer: Callable[..., list[Candidate]], monkeypatch: pytest.MonkeyPatch
           ) -> tuple[list[dict[str, Any]], str | None, list[str]]:
    """The list ``list_of(*args)`` with ``scorer`` as the session's rescoring."""
    monkeypatch.setattr(recommend, "rescore", scorer)
    result = list_of(*args)
    return result.items, result.fallback, result.applied


def test_served_lists_are_those_of_the_numpy_version(index: ServingIndex,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    assert index.sessions is not None and index.also_viewed is not None
    products = list(index.ids)
    unavailable = [p for p in products if p not in index.available]
    decisions = [Decisions(), Decisions(blocked_products=frozenset(rng.sample(products, 20)),
                                        category_cap=2)]
    categories = sorted(index.category_paths)
    assert index.content is not None
    # every list completed from content neighbours (as for a product with little traffic)
    thin = replace(index, content=replace(index.content, min_support=10**9))
    # and a third of the products without co-view neighbours (borrowed from content's)
    table = index.also_viewed
    ids = np.array(table.ids)
    ids[rng.sample(range(len(ids)), len(ids) // 3)] = -1
    thin = replace(thin, also_viewed=Neighbours(ids, np.asarray(table.scores),
                                                np.asarray(table.support)))
    applied: set[str] = set()
    sources: set[str] = set()
    shaped = 0
    for case in range(400):
        on_screen = rng.choice(products)
        recent = [rng.choice(products) for _ in range(rng.randint(1, 9))]
        recent += ["never-seen"] * (case % 7 == 0) + [on_screen] * (case % 5 == 0)
        recent += rng.sample(unavailable, 1) if unavailable and case % 3 == 0 else []
        rng.shuffle(recent)
        s = session_of_recent(recent, [on_screen], weight=rng.choice([0.0, 0.3, 1.0]),
                              decay=rng.choice([0.5, 1.0]), length=rng.choice([3, 20]),
                              knn_weight=rng.choice([0.0, 4.0]),
                              knn_k=rng.choice([1, 5, 100]),
                              knn_sample=rng.choice([0, 1, 20, 500]))
        options = Options(k=rng.choice([1, 10, 20]), in_stock_only=rng.random() < 0.7,
                          exclude=frozenset(rng.sample(products, rng.choice([0, 3]))),
                          rank_by=rng.choice(["score", "value"]),
                          min_score_share=rng.choice([0.0, 0.05]),
                          max_p_value=rng.choice([1.0, 0.05]), fill=rng.random() < 0.8)
        d = decisions[case % 2]
        cart = [on_screen, rng.choice(products)]
        # also-viewed: pruned candidates against every candidate finished; with boosts and
        # pins, a category, reordering by value, and without the session too
        d_viewed = d if case % 3 else Decisions(
            boosts={p: rng.choice([0.5, 3.0]) for p in rng.sample(products, 30)},
            pins={on_screen: ((rng.choice(products), rng.randint(1, 4)),)},
            blocked_products=frozenset(rng.sample(products, 5)))
        o_viewed = replace(options, category=rng.choice(categories)) if case % 4 == 1 else options
        for viewed in (s, session.NO_SESSION):
            args = (index if case % 5 else thin, on_screen, o_viewed, d_viewed, viewed)
            new_list = recommend.also_viewed(*args)
            old_list = reference_also_viewed(*args)
            assert ((new_list.items, new_list.fallback, new_list.applied) ==
                    (old_list.items, old_list.fallback, old_list.applied)), (case, viewed, o_viewed)
            assert orjson.dumps(new_list.items) == orjson.dumps(old_list.items)  # key order
            applied.update(a.split(":")[0] for a in new_list.applied)
            sources.update(i["reason"]["source"] for i in new_list.items)
        for list_of, seed in ((recommend.bought_together, on_screen),
                              (recommend.cart_addons, cart)):
            list_args = (index, seed, options, d, s)
            new = served(list_of, list_args, session.rescore, monkeypatch)
            old = served(list_of, list_args, reference_rescore, monkeypatch)
            assert new == old, (case, list_of.__name__, s, options)
            shaped += any(i["reason"]["evidence"].get("session") for i in new[0])
    assert shaped > 400  # most lists were changed by their session
    # every reason finish names in also-viewed lists was met
    assert {"blocked_product", "out_of_stock_or_inactive", "category_filter", "weak_evidence",
            "boost", "bury", "pinned", "category_cap"} <= applied, applied
    assert {"also_viewed", "session", "content", "content_co_viewed", "pinned",
            "popular"} <= sources, sources


def test_best_by_value_ranks_as_a_stable_sort_in_key_order() -> None:
    """The merge's top products: a stable sort of the negated values in key order of the
    rows not skipped, ties, limits past the end and all rows skipped included."""
    rng = np.random.default_rng(1)
    for case in range(2000):
        n = int(rng.integers(0, 60))
        keys = rng.permutation(500)[:n].astype(np.int64)
        values = rng.integers(0, 5, n).astype(np.float64) if case % 2 else rng.random(n)
        skip = rng.random(n) < (0.0, 0.3, 1.0)[case % 3]
        limit = int(rng.integers(0, 70))
        rest = np.flatnonzero(~skip)
        by_key = rest[np.argsort(keys[rest], kind="stable")]
        assert session._best_by_value(values, keys, skip, limit).tolist() == by_key[
            np.argsort(-values[by_key], kind="stable")[:limit]].tolist(), case
