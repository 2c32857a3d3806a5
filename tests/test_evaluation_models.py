"""One contract suite run against every evaluation ranker on a tiny matrix with a known
answer: the item bought with item 3 is item 4; batch equals single; filters; k larger than
the catalog; save and load round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import ArtifactError
from recsys.evaluation.baselines import (
    ALSRanker,
    Cooccurrence,
    CosineItemKNN,
    ItemKNNRanker,
    OwnMostBought,
    Popularity,
)
from recsys.evaluation.candidate import CartCandidate, HistoryCandidate, ViewCandidate
from recsys.models.ranker import BATCH_CELLS, Ranker, load_ranker, top_k
from recsys.models.rankers import EaseRanker

# rows (orders) x 6 items: {0, 1, 2} go together, {3, 4} go together, 5 sells alone and most
BASKETS = np.array([
    [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0],
    [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1],
    [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0],
], dtype=np.float32)
N_ITEMS = BASKETS.shape[1]
QUERIES = sp.csr_matrix(np.array([[0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0]],
                                 dtype=np.float32))

FACTORIES: dict[str, Callable[[], Ranker]] = {
    "popularity": Popularity,
    "cooccurrence": lambda: Cooccurrence(min_count=1),
    "cooccurrence_max": lambda: Cooccurrence(min_count=1, combine="max"),
    "bm25_itemknn": lambda: ItemKNNRanker("bm25", k=10),
    "cosine_itemknn": lambda: CosineItemKNN(k=10),
    "als": lambda: ALSRanker(factors=4, regularization=0.01, alpha=10.0, iterations=20, seed=3),
    "own_most_bought": OwnMostBought,
    "ease": lambda: EaseRanker(lam=0.5, top_k=4),
    "cart_candidate": lambda: CartCandidate(lam=0.5, bm25_weight=0.2, top_k=4),
    "view_candidate": lambda: ViewCandidate(cooc_weight=1.0, top_k=4),
    "history_candidate": lambda: HistoryCandidate(knn_weight=0.3),
}
ITEM_BASED = ["cooccurrence", "cooccurrence_max", "bm25_itemknn", "cosine_itemknn", "als", "ease",
              "cart_candidate",
              "view_candidate", "history_candidate"]


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> tuple[str, Ranker]:
    return request.param, FACTORIES[request.param]().fit(sp.csr_matrix(BASKETS))


def test_known_answer(fitted: tuple[str, Ranker]) -> None:
    name, model = fitted
    ids, _ = model.recommend(QUERIES, 1)
    if name in ITEM_BASED:
        assert ids[:, 0].tolist()[0] == 4  # bought with 3
        assert ids[1, 0] in (1, 2) and ids[2, 0] == 3
    elif name == "popularity":
        assert ids[:, 0].tolist() == [5, 5, 5]
    else:  # own most-bought without the query's own items: best sellers
        assert ids[:, 0].tolist() == [5, 5, 5]


def test_batch_equals_single(fitted: tuple[str, Ranker]) -> None:
    _, model = fitted
    ids, scores = model.recommend(QUERIES, 4)
    for row in range(QUERIES.shape[0]):
        one_ids, one_scores = model.recommend(QUERIES[row], 4)
        assert one_ids[0].tolist() == ids[row].tolist()
        np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5, atol=1e-6)
    small_ids, _ = model.recommend(QUERIES, 4, batch_size=1)
    assert small_ids.tolist() == ids.tolist()


def test_filters(fitted: tuple[str, Ranker]) -> None:
    _, model = fitted
    ids, _ = model.recommend(QUERIES, N_ITEMS, exclude=np.array([5, 1]))
    for row in range(QUERIES.shape[0]):
        listed = set(ids[row][ids[row] >= 0].tolist())
        assert not listed & {5, 1}
        assert not listed & set(QUERIES[row].indices.tolist())  # the query's own items
        assert len(listed) == N_ITEMS - 3
    kept, _ = model.recommend(QUERIES, N_ITEMS, filter_query=False)
    assert (kept >= 0).all()  # every item listed once the query's own are allowed
    assert all(sorted(row) == list(range(N_ITEMS)) for row in kept.tolist())


def test_k_larger_than_the_catalog(fitted: tuple[str, Ranker]) -> None:
    _, model = fitted
    ids, scores = model.recommend(QUERIES, 50)
    assert ids.shape == (3, 50) and scores.shape == (3, 50)
    assert ((ids >= 0).sum(axis=1) == N_ITEMS - 1).all()
    assert (ids[:, N_ITEMS - 1:] == -1).all() and np.isneginf(scores[:, N_ITEMS - 1:]).all()
    assert (np.diff(scores[:, : N_ITEMS - 1], axis=1) <= 0).all()  # best first


def test_save_and_load_round_trip(fitted: tuple[str, Ranker], tmp_path: Path) -> None:
    _, model = fitted
    model.save(tmp_path / "model.npz")
    loaded = load_ranker(tmp_path / "model.npz")
    assert type(loaded) is type(model) and loaded.params() == model.params()
    np.testing.assert_allclose(loaded.score(QUERIES), model.score(QUERIES), rtol=1e-6)


def test_load_checks_the_class(tmp_path: Path) -> None:
    Popularity().fit(sp.csr_matrix(BASKETS)).save(tmp_path / "model.npz")
    assert isinstance(Ranker.load(tmp_path / "model.npz"), Popularity)
    with pytest.raises(ArtifactError, match="holds a Popularity, not a EaseRanker"):
        EaseRanker.load(tmp_path / "model.npz")
    np.savez(tmp_path / "odd.npz", __ranker__=np.array("Nope"), __params__=np.array("{}"),
             __n_items__=np.array(1))
    with pytest.raises(ArtifactError, match="unknown ranker 'Nope'"):
        load_ranker(tmp_path / "odd.npz")


def test_own_most_bought_ranks_repeat_purchases_first() -> None:
    model = OwnMostBought().fit(sp.csr_matrix(BASKETS))
    history = sp.csr_matrix(np.array([[0, 1, 3, 0, 2, 0]], dtype=np.float32))
    ids, _ = model.recommend(history, 4, filter_query=False)
    assert ids[0].tolist() == [2, 4, 1, 5]  # by orders, then best sellers


def test_top_k_ties_go_to_the_lower_code() -> None:
    scores = np.array([[1.0, 3.0, 3.0, -np.inf, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    ids, vals = top_k(scores, 3)
    assert ids.tolist() == [[1, 2, 4], [0, 1, 2]]
    ids, _ = top_k(scores, 6)
    assert ids[0].tolist() == [1, 2, 4, 0, -1, -1]  # -inf is never listed


def test_recommend_rejects_a_wrong_width() -> None:
    model = Popularity().fit(sp.csr_matrix(BASKETS))
    with pytest.raises(ValueError, match="item columns"):
        model.recommend(sp.csr_matrix((1, 3)), 2)


def test_cooccurrence_max_is_the_best_single_rule() -> None:
    model = Cooccurrence(min_count=1, combine="max").fit(sp.csr_matrix(BASKETS))
    queries = sp.csr_matrix(np.array([[1, 1, 0, 1, 0, 0], [0] * 6, [0, 0, 1, 0, 1, 1]],
                                     dtype=np.float32))
    conf = model.confidence.toarray()
    brute = np.array([conf[row.indices].max(axis=0) if row.nnz else np.zeros(N_ITEMS)
                      for row in queries])
    for budget in (N_ITEMS, 2 * N_ITEMS, 1 << 20):  # blocks of one, two, all query items
        np.testing.assert_allclose(model.score(queries, max_floats=budget), brute)
    assert conf[3, 4] == pytest.approx(4 / 4) and conf[0, 1] == pytest.approx(3 / 4)


def test_default_batches_bound_the_dense_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a large catalogue a batch of queries holds at most BATCH_CELLS dense scores, and
    the lists equal those of one batch."""
    rng = np.random.default_rng(4)
    n_items = 40_000
    model = Popularity().fit(sp.random(300, n_items, density=0.001, format="csr",
                                       random_state=rng))
    queries = sp.random(700, n_items, density=0.0002, format="csr", random_state=rng)
    whole, _ = model.recommend(queries, 10, batch_size=700)
    shapes: list[tuple[int, int]] = []
    score = Popularity.score

    def recorded(self: Popularity, block: sp.csr_matrix) -> np.ndarray:
        out = score(self, block)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(Popularity, "score", recorded)
    ids, _ = model.recommend(queries, 10)
    assert ids.tolist() == whole.tolist()
    assert len(shapes) > 1 and max(r * c for r, c in shapes) <= BATCH_CELLS
