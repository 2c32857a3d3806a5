"""Also-viewed of a product without co-view data, borrowed from its content neighbours'
lists (``recsys.serving.cold_start``): scores computed by hand on a five-product index."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.artifacts import Manifest
from recsys.models.content import ContentModel
from recsys.models.neighbours import Neighbours
from recsys.popularity import GLOBAL_SCOPE
from recsys.serving.cold_start import borrowed_also_viewed
from recsys.serving.content import ContentIndex
from recsys.serving.index import Ranking, ServingIndex
from recsys.serving.recommend import Decisions, Options, also_viewed
from recsys.vocab import Vocabulary


def _index(neighbours: int = 2, prior: float = 0.5) -> ServingIndex:
    """a -> c (sim 0.4, 7 sessions), d (0.2, 3); b -> c (0.1, 2), e (0.5, 9); c, d, e have
    no co-view row. Content: new product "n" ~ a 0.8, b 0.4; c ~ a 0.6. Category "cat"
    (n's): best sellers d (10 orders), e (5)."""
    ids = ["a", "b", "c", "d", "e"]
    table = Neighbours(
        ids=np.array([[2, 3], [2, 4], [-1, -1], [-1, -1], [-1, -1]], np.int32),
        scores=np.array([[0.4, 0.2], [0.1, 0.5], [0, 0], [0, 0], [0, 0]], np.float32),
        support=np.array([[7, 3], [2, 9], [0, 0], [0, 0], [0, 0]], np.int64))
    content_table = Neighbours(
        ids=np.array([[-1], [-1], [0], [-1], [-1]], np.int32),
        scores=np.array([[0], [0], [0.6], [0], [0]], np.float32),
        support=np.array([[0], [0], [2], [0], [0]], np.int64))
    model = ContentModel(np.zeros(0, dtype=object), np.zeros(0), sp.csr_matrix((5, 0)))
    content = ContentIndex(model, content_table, added={"n": [(0, 0.8, 3), (1, 0.4, 2)]},
                           min_support=3)
    manifest = Manifest(version="v1", created_at=datetime.now(UTC).isoformat(), git_commit=None,
                        config={}, config_hash="", inputs={}, libraries={})
    return ServingIndex(
        manifest=manifest, items=Vocabulary(ids), code_of={p: i for i, p in enumerate(ids)},
        ids=ids, names={}, prices={}, margins={}, categories={"n": "cat", "c": "cat"},
        available=frozenset(ids + ["n"]),
        popular={GLOBAL_SCOPE: [(p, 1) for p in ids], "cat": [("d", 10), ("e", 5)]},
        loaded_at=datetime.now(UTC), also_viewed=table,
        ranking=Ranking(also_viewed_support_weight=2.0, cold_start_neighbours=neighbours,
                        cold_start_prior=prior),
        content=content)


def test_borrowed_scores_by_hand() -> None:
    found = borrowed_also_viewed(_index(), "n", None, 10)
    # via a (cosine 0.8): c (0.4/0.4 + 2 x 7/7) = 3, d (0.2/0.4 + 2 x 3/7)
    # via b (cosine 0.4): c (0.1/0.5 + 2 x 2/9), e (0.5/0.5 + 2 x 9/9) = 3
    c = 0.8 * 3 + 0.4 * (0.2 + 2 * 2 / 9)
    d = 0.8 * (0.5 + 2 * 3 / 7)
    e = 0.4 * 3
    expected = {"c": 1.0, "d": d / c + 0.5 * 10 / 10, "e": e / c + 0.5 * 5 / 10}
    assert [x.product_id for x in found] == ["c", "d", "e"]
    assert {x.product_id: x.score for x in found} == pytest.approx(expected)
    via = {x.product_id: (x.evidence["via"], x.evidence["content_similarity"]) for x in found}
    assert via == {"c": ("a", 0.8), "d": ("a", 0.8), "e": ("b", 0.4)}
    # d and e are also the category's best sellers, which raised them; c is not
    assert [x.evidence.get("category_best_seller", False) for x in found] == [False, True, True]
    assert {x.source for x in found} == {"content_co_viewed"}


def test_the_prior_alone_adds_a_category_best_seller_nobody_co_viewed() -> None:
    index = _index(neighbours=1, prior=2.0)  # a alone: c 3 x 0.8 (scaled 1), d ...
    found = {x.product_id: x for x in borrowed_also_viewed(index, "n", None, 10)}
    d = 0.8 * (0.5 + 2 * 3 / 7) / (0.8 * 3)
    assert found["d"].score == pytest.approx(d + 2.0)
    assert found["e"].score == pytest.approx(2.0 * 5 / 10)  # only a best seller
    assert found["e"].evidence["category_best_seller"] is True
    assert "via" not in found["e"].evidence


def test_the_shops_best_sellers_as_the_prior() -> None:
    """With the prior's scope the shop, the shop's best sellers (a to e, one order each)
    take the category's place, and say so."""
    index = _index(neighbours=1, prior=2.0)
    shop = replace(index, ranking=replace(index.ranking, cold_start_prior_scope="shop"))
    found = {x.product_id: x for x in borrowed_also_viewed(shop, "n", None, 10)}
    d = 0.8 * (0.5 + 2 * 3 / 7) / (0.8 * 3)
    assert {p: x.score for p, x in found.items()} == pytest.approx(
        {"a": 2.0, "b": 2.0, "c": 3.0, "d": d + 2.0, "e": 2.0})
    assert found["e"].evidence["shop_best_seller"] is True
    assert "category_best_seller" not in found["e"].evidence and "via" not in found["e"].evidence
    assert found["d"].evidence["via"] == "a"
    # d was borrowed via a and the prior raised it too: the reason says both
    assert found["d"].evidence["shop_best_seller"] is True


def test_a_known_product_without_co_views_never_gets_itself() -> None:
    found = borrowed_also_viewed(_index(prior=0.0), "c", 2, 10)
    assert [x.product_id for x in found] == ["d"]  # a's list is c, d; c is the seed


def test_served_also_viewed_borrows_only_without_co_view_data() -> None:
    index = _index()
    new = also_viewed(index, "n", Options(k=5, in_stock_only=False), Decisions())
    sources = [(i["product_id"], i["reason"]["source"]) for i in new.items]
    # borrowed first, then the content neighbours themselves (tier 1)
    assert sources == [("c", "content_co_viewed"), ("d", "content_co_viewed"),
                       ("e", "content_co_viewed"), ("a", "content"), ("b", "content")]
    warm = also_viewed(index, "a", Options(k=5, in_stock_only=False), Decisions())
    plain = also_viewed(replace(index, content=None), "a", Options(k=5, in_stock_only=False),
                        Decisions())
    assert warm.items == plain.items  # a product with co-views keeps its own list
    assert warm.items[0]["reason"]["source"] == "also_viewed"


def test_neighbours_without_co_views_leave_the_prior_alone() -> None:
    index = _index()  # c's one content neighbour is a; d's content row is empty
    assert index.content is not None
    empty = replace(index, content=replace(index.content, added={"n": [(3, 0.9, 1)]}))
    found = borrowed_also_viewed(empty, "n", None, 10)  # d has no co-view row
    assert [(x.product_id, x.score) for x in found] == [("d", 0.5), ("e", 0.25)]
    assert all(x.evidence["category_best_seller"] for x in found)


def test_zero_neighbours_keeps_the_content_list() -> None:
    index = _index(neighbours=0)
    assert borrowed_also_viewed(index, "n", None, 10) == []
    served = also_viewed(index, "n", Options(k=2, in_stock_only=False), Decisions())
    assert [i["product_id"] for i in served.items] == ["a", "b"]
