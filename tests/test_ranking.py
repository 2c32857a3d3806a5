"""The served rankers against known answers: EASE against its closed form, multi-item rule
lookup against brute force, and cart / also-viewed scores computed by hand."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.artifacts import Manifest
from recsys.models import ease
from recsys.models.ease import _inverse_in_place, ease_item_limit, ease_neighbours
from recsys.models.neighbours import Neighbours
from recsys.popularity import GLOBAL_SCOPE
from recsys.serving.index import Ranking, ServingIndex
from recsys.serving.recommend import Decisions, Options, also_viewed, bought_together, cart_addons
from recsys.serving.served_rules import rule_table
from recsys.serving.session import line_weights
from recsys.vocab import Vocabulary


def _closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    """B = -P / diag(P), P = (X'X + lam I)^-1, rows of X weighted 1/sqrt(size)."""
    w = x / np.sqrt(np.maximum(x.sum(axis=1, keepdims=True), 1))
    p = np.linalg.inv(w.T @ w + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_neighbours_are_the_closed_form_top_k() -> None:
    rng = np.random.default_rng(7)
    x = (rng.random((400, 30)) < 0.15).astype(float)
    b = _closed_form(x, lam=2.0)
    table = ease_neighbours(sp.csr_matrix(x), lam=2.0, top_k=5)
    assert table.products == 30 and not table.warnings
    for i in range(30):
        positive = [j for j in np.argsort(-b[i], kind="stable") if b[i, j] > 0][:5]
        assert table.ids[i][table.ids[i] >= 0].tolist() == positive
        np.testing.assert_allclose(table.scores[i][: len(positive)], b[i, positive], rtol=1e-5)


def test_float32_ease_keeps_the_float64_closed_form_on_skewed_baskets() -> None:
    """Best sellers in most orders and rare products in a few (a badly conditioned X'X, as in
    real shops): the float32 in-place inverse gives the float64 closed form's neighbours."""
    rng = np.random.default_rng(11)
    popularity = 0.6 / np.arange(1, 301) ** 0.8
    x = (rng.random((5000, 300)) < popularity).astype(float)
    x[:, 1] = np.maximum(x[:, 1], x[:, 0] * (rng.random(5000) < 0.97))  # nearly collinear
    for lam in (0.5, 1.0, 10.0):
        b = _closed_form(x, lam=lam)
        table = ease_neighbours(sp.csr_matrix(x), lam=lam, top_k=20)
        checked = 0
        for i in range(300):
            got = table.ids[i][table.ids[i] >= 0]
            np.testing.assert_allclose(table.scores[i][: len(got)], b[i, got], rtol=1e-3,
                                       atol=1e-6)
            best = np.sort(b[i][b[i] > 0])[::-1][:20]
            np.testing.assert_allclose(np.sort(table.scores[i][: len(got)])[::-1],
                                       best, rtol=1e-3, atol=1e-6)
            checked += len(got)
        assert checked > 300 * 10


def test_in_place_inverse_equals_numpy_and_writes_over_its_input() -> None:
    rng = np.random.default_rng(5)
    a = rng.random((50, 50))
    spd = a @ a.T + 50 * np.eye(50)
    upper = np.triu(spd).astype(np.float32)  # only the upper triangle is read
    out = _inverse_in_place(upper)
    assert np.shares_memory(out, upper)
    np.testing.assert_allclose(out, np.linalg.inv(spd), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(out, out.T)
    with pytest.raises(ValueError, match="not positive definite"):
        _inverse_in_place(np.array([[1.0, 2.0], [0.0, 1.0]], dtype=np.float32))


def test_ease_memory_is_one_float32_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's allocations while EASE runs over m = 1,500 products peak below 1.4 x the m x m
    float32 matrix (a float64 Gram matrix and its inverse were 4 x)."""
    m = 1500
    monkeypatch.setattr(ease, "_BLOCK_FLOATS", 32 * m)
    rng = np.random.default_rng(2)
    x = sp.random(2000, m, density=0.01, format="csr", random_state=rng)
    tracemalloc.start()
    try:
        table = ease_neighbours(x, lam=1.0, top_k=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.products == m
    assert peak < 1.4 * 4 * m**2


def test_ease_covers_only_the_best_selling_products() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((300, 12)) < 0.3).astype(float)
    x[:, 11] = 0
    x[:2, 11] = 1  # the rarest product
    ids = ease_neighbours(sp.csr_matrix(x), lam=1.0, top_k=3, max_items=11).ids
    assert (ids[11] == -1).all()
    assert 11 not in ids
    full = ease_neighbours(sp.csr_matrix(x[:, :11]), lam=1.0, top_k=3).ids
    assert (ids[:11] == full).all()
    # a memory budget for 11 products gives the same table, and says so
    budget = 4 * 11.5**2 / 2**20
    assert ease_item_limit(30, budget) == 11
    capped = ease_neighbours(sp.csr_matrix(x), lam=1.0, top_k=3, memory_mb=budget)
    assert (capped.ids == ids).all() and capped.products == 11
    assert len(capped.warnings) == 1 and "11 best-selling of 12" in capped.warnings[0]
    assert ease_item_limit(10_000, 512) == 10_000 and ease_item_limit(30_000, 512) == 11_585


@settings(max_examples=60, deadline=None)
@given(rules=st.lists(st.tuples(st.frozensets(st.integers(0, 9), min_size=1, max_size=3),
                                st.integers(0, 9)), min_size=1, max_size=40),
       cart=st.frozensets(st.integers(0, 9), min_size=0, max_size=8))
def test_multi_rule_lookup_equals_brute_force(rules: list[tuple[frozenset[int], int]],
                                              cart: frozenset[int]) -> None:
    sets = [np.array(sorted(a), dtype=np.int32) for a, _ in rules]
    lengths = sorted({len(s) for s in sets})
    parts = []
    for length in lengths:
        rows = np.array([i for i, s in enumerate(sets) if len(s) == length])
        parts.append((rows, np.stack([sets[i] for i in rows])))
    n = len(rules)
    multi = rule_table(parts, np.array([c for _, c in rules]), np.linspace(0.9, 0.1, n,
                       dtype=np.float32), np.ones(n, np.float32), np.ones(n, np.int64))
    expected = {tuple(s) for s in sets if set(s.tolist()) <= cart}
    codes = np.array(sorted(cart), dtype=np.int32)
    for limit in (0, 10_000):  # vectorised scan, and subset enumeration
        found = multi.sets_in(codes, combinations_limit=limit)
        assert {tuple(f.tolist()) for f in found} == expected
        for antecedents in found:
            consequents = sorted(int(multi.consequent[r])
                                 for r in range(*multi.rules_of(antecedents)))
            assert consequents == sorted(c for a, c in rules if a == frozenset(
                antecedents.tolist()))


def _index() -> ServingIndex:
    """Five products; tables and rules chosen so that every score is easy by hand."""
    ids = ["a", "b", "c", "d", "e"]
    table = Neighbours(  # EASE: a -> c 0.4, d 0.2; b -> c 0.1, e 0.5
        ids=np.array([[2, 3], [2, 4], [-1, -1], [-1, -1], [-1, -1]], np.int32),
        scores=np.array([[0.4, 0.2], [0.1, 0.5], [0, 0], [0, 0], [0, 0]], np.float32),
        support=np.array([[7, 3], [2, 9], [0, 0], [0, 0], [0, 0]], np.int64))
    knn = Neighbours(  # item-kNN: a -> d 1.0; b -> d 1.0
        ids=np.array([[3, -1], [3, -1], [-1, -1], [-1, -1], [-1, -1]], np.int32),
        scores=np.array([[1.0, 0], [1.0, 0], [0, 0], [0, 0], [0, 0]], np.float32),
        support=np.array([[3, 0], [4, 0], [0, 0], [0, 0], [0, 0]], np.int64))
    rules = rule_table(  # a -> c (confidence 0.6), a + b -> e (0.8)
        [(np.array([0]), np.array([[0]], np.int32)), (np.array([1]), np.array([[0, 1]], np.int32))],
        np.array([2, 4]), np.array([0.6, 0.8], np.float32), np.array([2.0, 3.0], np.float32),
        np.array([7, 5], np.int64))
    manifest = Manifest(version="v1", created_at=datetime.now(UTC).isoformat(), git_commit=None,
                        config={}, config_hash="", inputs={}, libraries={})
    return ServingIndex(
        manifest=manifest, items=Vocabulary(ids), code_of={p: i for i, p in enumerate(ids)},
        ids=ids, names={}, prices={}, margins={}, categories={}, available=frozenset(ids),
        popular={GLOBAL_SCOPE: [(p, 1) for p in ids]}, loaded_at=datetime.now(UTC),
        also_viewed=table, bought_together=table, bought_together_knn=knn,
        ranking=Ranking(cart_knn_weight=0.5, rule_weight=0.25, also_viewed_support_weight=2.0),
        rules=rules)


def _scores(result: object) -> dict[str, float]:
    return {i["product_id"]: i["score"] for i in result.items  # type: ignore[attr-defined]
            if i["reason"]["source"] != "popular"}


def test_cart_scores_by_hand() -> None:
    index = _index()
    result = cart_addons(index, ["a", "b"], Options(k=3), Decisions())
    # EASE sums: c 0.5, d 0.2, e 0.5 (max 0.5); kNN sums: d 2.0 (max 2.0)
    # rules: a->c (0.6); a+b->e (0.8)
    assert _scores(result) == pytest.approx({"c": 1.0 + 0.25 * 0.6, "d": 0.4 + 0.5,
                                             "e": 1.0 + 0.25 * 0.8})
    reasons = {i["product_id"]: i["reason"] for i in result.items}
    assert reasons["e"]["source"] == "rule" and reasons["e"]["evidence"]["seed"] == ["a", "b"]
    assert reasons["e"]["evidence"]["rule"] == "a+b->e"
    assert reasons["d"]["source"] == "bought_together"
    assert reasons["d"]["evidence"]["seed"] == "a" and reasons["d"]["evidence"]["co_purchases"] == 3


def test_cart_lines_touched_last_count_most() -> None:
    assert line_weights(["a", "b", "c"], ["b", "x", "a", "b"], 0.5) == {
        "b": 1.0, "a": 0.5, "c": 0.25}  # c: not in the session, older than its oldest
    assert line_weights(["a", "b"], ["x"], 0.5) is None  # no order known: every line alike
    assert line_weights(["a", "b"], ["b", "a"], 1.0) is None
    index = _index()
    result = cart_addons(index, ["a", "b"], Options(k=3), Decisions(),
                         line_weights=line_weights(["a", "b"], ["b", "a"], 0.5))
    # EASE sums: c 0.5 x 0.4 + 0.1 = 0.3, d 0.5 x 0.2 = 0.1, e 0.5 (max 0.5);
    # kNN sums: d 0.5 x 1 + 1 = 1.5 (max 1.5); rules as above, unweighted
    assert _scores(result) == pytest.approx({"c": 0.6 + 0.25 * 0.6, "d": 0.2 + 0.5,
                                             "e": 1.0 + 0.25 * 0.8})


def test_single_product_and_blocked_rule() -> None:
    index = _index()
    result = bought_together(index, "a", Options(k=2), Decisions())
    # EASE: c 0.4, d 0.2 (max 0.4); kNN: d 1.0; rule a->c 0.6
    assert _scores(result) == pytest.approx({"c": 1.0 + 0.25 * 0.6, "d": 0.5 + 0.5})
    blocked = bought_together(index, "a", Options(k=2),
                              Decisions(blocked_rules=frozenset(["a->c"])))
    # by no source at all, not even the best-seller fill
    assert [i["product_id"] for i in blocked.items] == ["d", "b"]
    assert "blocked_rule:1" in blocked.applied
    cart = cart_addons(index, ["a", "b"], Options(k=3),
                       Decisions(blocked_rules=frozenset(["a+b->e"])))
    assert cart.items[0]["product_id"] == "c"  # e keeps only its EASE score
    assert {i["product_id"]: i["reason"]["source"] for i in cart.items}["e"] == "bought_together"


def test_also_viewed_reranked_by_support() -> None:
    index = _index()
    result = also_viewed(index, "b", Options(k=2), Decisions())
    # b: c sim 0.1 support 2, e sim 0.5 support 9 -> e 1 + 2, c 0.2 + 2 x 2/9
    assert _scores(result) == pytest.approx({"e": 3.0, "c": 0.2 + 4 / 9}, rel=1e-5)


def _reference_blend(seeds: list[int], weights: list[float], ease: Neighbours,
                     knn: Neighbours, knn_weight: float, fired: list[tuple[int, int, float]],
                     rule_weight: float, silent: set[int], reason: set[int]) -> dict[int, float]:
    """The blend in plain Python: product -> score (the ``reason`` products left out)."""
    sums: list[dict[int, float]] = [{}, {}]
    for t, table in enumerate((ease, knn)):
        for s, w in zip(seeds, weights, strict=True):
            for code, score in zip(table.ids[s].tolist(), table.scores[s].tolist(),
                                   strict=True):
                if code >= 0 and code not in silent:
                    sums[t][code] = sums[t].get(code, 0.0) + w * float(score)
    best_rule: dict[int, float] = {}
    for _, consequent, confidence in fired:
        if consequent not in silent:
            best_rule[consequent] = max(best_rule.get(consequent, 0.0), confidence)
    peaks = [max(d.values(), default=0.0) or 1.0 for d in sums]
    out = {}
    for code in set(sums[0]) | set(sums[1]) | set(best_rule):
        if code in reason:
            continue
        out[code] = (sums[0].get(code, 0.0) / peaks[0]
                     + knn_weight * sums[1].get(code, 0.0) / peaks[1]
                     + rule_weight * best_rule.get(code, 0.0))
    return out


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), n_seeds=st.integers(1, 5), n_rules=st.integers(0, 30),
       limit=st.integers(1, 40))
def test_compiled_blend_equals_plain_python(seed: int, n_seeds: int, n_rules: int,
                                            limit: int) -> None:
    from recsys.serving.blend import NO_ROWS, BlendInput, blend

    rng = np.random.default_rng(seed)
    n, k = 40, 6

    def table() -> Neighbours:
        ids = np.array([rng.choice(n, size=k, replace=False) for _ in range(n)], np.int32)
        ids[rng.random((n, k)) < 0.2] = -1
        scores = np.round(rng.random((n, k)), 2).astype(np.float32)
        return Neighbours(ids=ids, scores=scores, support=rng.integers(1, 9, (n, k)))

    ease, knn = table(), table()
    seeds = sorted(rng.choice(n, size=n_seeds, replace=False).tolist())
    weights = rng.choice([1.0, 0.8, 0.64, 0.3], size=n_seeds)  # a cart's line weights
    consequent = rng.integers(0, n, n_rules).astype(np.int32)
    confidence = np.round(rng.random(n_rules), 2).astype(np.float32)
    silent = np.zeros(n, bool)
    silent[seeds] = True
    silent[rng.choice(n, 3)] = True
    reason = rng.random(n) < 0.15
    codes, scores, row, *_, counts = blend(BlendInput(
        seeds=np.array(seeds, np.int64), seed_weights=weights, e_ids=ease.ids,
        e_scores=ease.scores,
        e_support=ease.support, k_ids=knn.ids, k_scores=knn.scores, k_support=knn.support,
        knn_weight=0.3, rule_lo=np.array([0], np.int64), rule_hi=np.array([n_rules], np.int64),
        rule_consequent=consequent, rule_confidence=confidence, rule_weight=0.5,
        blocked_rows=NO_ROWS, pair_seed=NO_ROWS, pair_item=NO_ROWS, silent=silent,
        reason_a=reason, reason_b=np.zeros(0, bool), limit=limit))
    expected = _reference_blend(seeds, weights.tolist(), ease, knn, 0.3,
                                [(r, int(c), float(confidence[r]))
                                 for r, c in enumerate(consequent)], 0.5,
                                set(np.flatnonzero(silent).tolist()),
                                set(np.flatnonzero(reason).tolist()))
    candidates = {int(c) for c in np.r_[ease.ids[seeds].ravel(), knn.ids[seeds].ravel(),
                                        consequent] if c >= 0 and not silent[c]}
    assert counts.tolist() == [sum(bool(reason[c]) for c in candidates), 0, 0]
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    assert codes.tolist() == [c for c, _ in ranked]
    np.testing.assert_allclose(scores, [v for _, v in ranked], rtol=1e-9)
    for code, r in zip(codes.tolist(), row.tolist(), strict=True):  # the best rule's row
        fired = [i for i in range(n_rules) if consequent[i] == code]
        assert (r == -1) == (not fired)
        if fired:
            assert confidence[r] == max(confidence[fired])
