"""The models job's Spark parts (local[2]): item-kNN (cosine, BM25) and EASE against a known
answer, a brute force, implicit's own weighting and the local models job on a slice of
Online Retail II; ALS on MLlib on planted groups; the purchase history and the repurchase cycles against
the local job."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from recsys import layout
from recsys.artifacts import save_parquet
from recsys.matrices import Interactions, InteractionWeights, item_vocabulary, order_item_matrix
from recsys.models.ease import ease_from_gram, ease_items
from recsys.models.job import LocalCoPurchase, run_models_job
from recsys.models.neighbours import Neighbours
from recsys.models.purchases import PurchaseHistory, PurchaseLines
from recsys.models.settings import ModelsConfig
from recsys.spark import als as spark_als
from recsys.spark.als import RATINGS_PER_BLOCK, SparkALS, als_blocks, mllib_blas
from recsys.spark.history import purchase_history_on_spark, repurchase_cycles_on_spark
from recsys.spark.ingest import to_spark_pandas
from recsys.spark.neighbours import (
    SparkCoPurchase,
    bm25_item_weights,
    ease_gram_on_spark,
    item_order_counts,
    knn_on_spark,
    order_baskets,
    pair_table,
    support_on_spark,
    write_neighbours,
)
from recsys.vocab import Vocabulary

TINY = pd.DataFrame([("o1", "a"), ("o1", "b"), ("o1", "c"), ("o1", "a"), ("o2", "a"),
                     ("o2", "b"), ("o3", "b"), ("o3", "c"), ("o4", "d")],
                    columns=["order_id", "product_id"], dtype="string")


def _tables(spark: Any, orders: pd.DataFrame, config: ModelsConfig, tmp: Path,
            items: Vocabulary | None = None, ease: bool = False
            ) -> tuple[Neighbours, Neighbours]:
    """The (local, Spark) item-kNN table of ``orders``, or their EASE tables."""
    items = items or item_vocabulary(orders)
    local = LocalCoPurchase(order_item_matrix(orders, items=items).matrix, config)
    frame = spark.createDataFrame(to_spark_pandas(orders[["order_id", "product_id"]]),
                                  "order_id string, product_id string")
    remote = SparkCoPurchase(spark, frame, items, config, scratch=tmp / "scratch")
    try:
        for name, maker in (("local", local), ("spark", remote)):
            (maker.save_ease if ease else maker.save_knn)(tmp / name)
    finally:
        remote.close()
    assert not list((tmp / "scratch").iterdir())  # the executors' parts are removed
    return Neighbours.load(tmp / "local", mmap=False), Neighbours.load(tmp / "spark", mmap=False)


def _brute_force(orders: pd.DataFrame, kind: str, top_k: int) -> Neighbours:
    """Every pair's similarity from dense matrices (implicit's weighting), sorted in full."""
    x = order_item_matrix(orders).matrix.astype(np.float32)
    if kind == "bm25":
        w = np.asarray(sp.csr_matrix(bm25_weight(x.T, K1=1.2, B=0.75).T).todense())
    else:
        w = x.toarray().astype(np.float64) / np.sqrt(np.asarray(x.sum(axis=0)))
    sim, counts = (w.T @ w).astype(np.float32), (x.T @ x).toarray().astype(np.int64)
    n = sim.shape[0]
    ids = np.full((n, top_k), -1, np.int32)
    scores = np.zeros((n, top_k), np.float32)
    support = np.zeros((n, top_k), np.int64)
    for i in range(n):
        ranked = [j for j in sorted(range(n), key=lambda j: (-sim[i, j], j))
                  if j != i and sim[i, j] > 0][:top_k]
        ids[i, :len(ranked)], scores[i, :len(ranked)] = ranked, sim[i, ranked]
        support[i, :len(ranked)] = counts[i, ranked]
    return Neighbours(ids=ids, scores=scores, support=support)


def _assert_same(got: Neighbours, expected: Neighbours, rtol: float = 1e-6) -> None:
    np.testing.assert_array_equal(got.ids, expected.ids)
    np.testing.assert_array_equal(got.support, expected.support)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=rtol, atol=0)


def test_cosine_knn_known_answer(spark_local: Any, tmp_path: Path) -> None:
    """a, b, c share orders; d is alone; e is in the catalog only (no neighbours)."""
    items = Vocabulary(pd.Index(["a", "b", "c", "d", "e"], dtype="string"))
    config = ModelsConfig(similarity="cosine", top_k=3, knn_k=10)
    local, spark = _tables(spark_local, TINY, config, tmp_path, items)
    cos = np.float32(2 / np.sqrt(6))  # a and b share 2 orders, a is in 2, b in 3
    expected = Neighbours(
        ids=np.array([[1, 2, -1], [0, 2, -1], [1, 0, -1], [-1] * 3, [-1] * 3], np.int32),
        scores=np.array([[cos, .5, 0], [cos, cos, 0], [cos, .5, 0], [0] * 3, [0] * 3],
                        np.float32),
        support=np.array([[2, 1, 0], [2, 2, 0], [2, 1, 0], [0] * 3, [0] * 3], np.int64))
    _assert_same(spark, expected)
    _assert_same(local, expected)


def test_bm25_item_weights_are_implicits() -> None:
    """weight(order, i) = a_i x idf(order): implicit's bm25_weight, bit for bit."""
    rng = np.random.default_rng(3)
    x = sp.random(60, 25, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    x.data[:] = 1
    counts = np.diff(x.tocsc().indptr)
    weighted = sp.coo_matrix(bm25_weight(x.T, K1=1.2, B=0.75).T)
    idf = np.log(25.0) - np.log1p(np.diff(x.indptr))
    a = bm25_item_weights(counts, 1.2, 0.75)
    np.testing.assert_array_equal(weighted.data, a[weighted.col] * idf[weighted.row])


@pytest.mark.parametrize("kind", ["cosine", "bm25"])
def test_knn_equals_a_brute_force(spark_local: Any, tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(7)
    rows = [(f"o{o:02d}", f"p{p}") for o in range(40)
            for p in rng.choice(12, size=int(rng.integers(1, 6)), replace=False)]
    orders = pd.DataFrame(rows, columns=["order_id", "product_id"], dtype="string")
    config = ModelsConfig(similarity=kind, top_k=6, knn_k=50)
    local, spark = _tables(spark_local, orders, config, tmp_path)
    _assert_same(spark, _brute_force(orders, kind, 6), rtol=1e-5)
    _assert_same(local, _brute_force(orders, kind, 6), rtol=1e-5)


@pytest.fixture(scope="module")
def retail(spark_local: Any, online_retail_path: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The first 600 purchase invoices of Online Retail II (no cancellations): the order x
    product matrix, and its baskets, counts and pair table on Spark (made once)."""
    raw = pd.read_parquet(online_retail_path, columns=["Invoice", "StockCode", "Quantity"])
    raw = raw[~raw["Invoice"].astype("string").str.startswith("C") & (raw["Quantity"] > 0)]
    first = raw["Invoice"].drop_duplicates().iloc[:600]
    lines = raw[raw["Invoice"].isin(first)]
    orders = pd.DataFrame({"order_id": lines["Invoice"].astype("string"),
                           "product_id": lines["StockCode"].astype("string")})
    items = item_vocabulary(orders)
    frame = spark_local.createDataFrame(to_spark_pandas(orders),
                                        "order_id string, product_id string")
    baskets = order_baskets(spark_local, frame, items).cache()
    pairs = pair_table(baskets).cache()
    yield {"matrix": order_item_matrix(orders, items=items).matrix, "pairs": pairs,
           "counts": item_order_counts(baskets, len(items)),
           "scratch": tmp_path_factory.mktemp("scratch")}
    pairs.unpersist()
    baskets.unpersist()


@pytest.mark.parametrize(("kind", "knn_k", "top_k"), [("cosine", 6, 5), ("bm25", 100, 50),
                                                      ("bm25", 6, 5)])
def test_knn_equals_the_local_job_on_online_retail(retail: dict[str, Any], tmp_path: Path,
                                                   kind: Literal["cosine", "bm25"], knn_k: int,
                                                   top_k: int) -> None:
    """The same neighbours and counts as implicit's; a small K makes implicit's own choice
    among tied candidates matter."""
    config = ModelsConfig(similarity=kind, knn_k=knn_k, top_k=top_k)
    LocalCoPurchase(retail["matrix"], config).save_knn(tmp_path / "local")
    table = knn_on_spark(retail["pairs"], retail["counts"], kind=kind, k=knn_k, top_k=top_k)
    write_neighbours(table, len(retail["counts"]), top_k, tmp_path / "spark", retail["scratch"])
    local = Neighbours.load(tmp_path / "local", mmap=False)
    assert (local.ids[:, 0] >= 0).sum() > 1000
    _assert_same(Neighbours.load(tmp_path / "spark", mmap=False), local, rtol=1e-5)


def test_ease_equals_the_local_job_on_online_retail(spark_local: Any, retail: dict[str, Any],
                                                    tmp_path: Path) -> None:
    config = ModelsConfig(ease_max_items=300, top_k=20)
    LocalCoPurchase(retail["matrix"], config).save_ease(tmp_path)
    local = Neighbours.load(tmp_path, mmap=False)
    kept = ease_items(retail["counts"], 300)
    gram = ease_gram_on_spark(spark_local, retail["pairs"], kept, retail["scratch"])
    ids, scores = ease_from_gram(gram, kept, len(retail["counts"]), lam=1.0, top_k=20)
    support = support_on_spark(spark_local, retail["pairs"], ids, retail["scratch"])
    assert (local.ids[:, 0] >= 0).sum() == 300
    _assert_same(Neighbours(ids=ids, scores=scores, support=support), local, rtol=1e-6)
    assert not list(retail["scratch"].iterdir())


def test_ease_memory_budget_caps_spark_as_it_caps_the_local_job(spark_local: Any,
                                                                 tmp_path: Path) -> None:
    """ease_memory_mb = 1 fits 512 products in float32: both engines keep the same 512 best
    sellers, say so in the same warning, and give the same table."""
    rng = np.random.default_rng(3)
    lines = [(f"o{o}", f"p{p:04d}") for o in range(3000)
             for p in rng.choice(700, size=int(rng.integers(2, 6)), replace=False)]
    orders = pd.DataFrame(lines, columns=["order_id", "product_id"], dtype="string")
    items = item_vocabulary(orders)
    config = ModelsConfig(ease_memory_mb=1, top_k=10)
    local = LocalCoPurchase(order_item_matrix(orders, items=items).matrix, config)
    frame = spark_local.createDataFrame(to_spark_pandas(orders),
                                        "order_id string, product_id string")
    remote = SparkCoPurchase(spark_local, frame, items, config, scratch=tmp_path / "scratch")
    try:
        assert local.save_ease(tmp_path / "local") == remote.save_ease(tmp_path / "spark") == 512
    finally:
        remote.close()
    assert remote.ease_warnings == local.ease_warnings
    assert "covers the 512 best-selling of 700" in remote.ease_warnings[0]
    _assert_same(Neighbours.load(tmp_path / "spark", mmap=False),
                 Neighbours.load(tmp_path / "local", mmap=False), rtol=1e-5)


@pytest.mark.parametrize("per_block", [None, 25])
def test_als_on_mllib_learns_planted_groups(spark_local: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture,
                                            per_block: int | None) -> None:
    """Two groups of customers buy from two disjoint halves of the catalog: every customer's
    best unseen products are in its own half; a product no one bought gets zero factors.
    Also with the ratings cut into 8 blocks (at most 25 each), as a large shop's are. The
    fit says which BLAS MLlib runs on."""
    if per_block is not None:
        monkeypatch.setattr(spark_als, "RATINGS_PER_BLOCK", per_block)
    rng = np.random.default_rng(5)
    rows, cols = [], []
    for user in range(40):
        half = user % 2
        for item in rng.choice(10, size=5, replace=False):
            rows.append(user)
            cols.append(2 * int(item) + half)  # even products for even customers
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(40, 21))
    config = ModelsConfig(als_factors=4, als_iterations=10)
    confidence = Interactions(matrix, Vocabulary([f"c{u}" for u in range(40)]),
                              Vocabulary([f"p{i}" for i in range(21)]))
    with caplog.at_level(logging.INFO, logger="recsys.spark.als"):
        users, items = SparkALS(spark_local, tmp_path).fit(confidence, config)
    blas = mllib_blas(spark_local)
    assert blas.startswith("dev.ludovic.netlib.blas.")
    said = [r.getMessage() for r in caplog.records if r.name == "recsys.spark.als"]
    blocks = 2 if per_block is None else 8
    assert said == [f"MLlib ALS: 200 ratings in {blocks} x {blocks} blocks, BLAS {blas}"]
    # it checkpointed into its own scratch folder (removed: tmp_path is empty below)
    assert str(tmp_path / "als-checkpoints-") in spark_local.sparkContext.getCheckpointDir()
    assert users.shape == (40, 4) and items.shape == (21, 4)
    assert users.dtype == items.dtype == np.float32
    assert not items[20].any() and np.abs(items[:20]).sum(axis=1).min() > 0
    scores = users @ items[:20].T
    scores[matrix[:, :20].toarray() > 0] = -np.inf
    best = scores.argmax(axis=1)
    assert (best % 2 == np.arange(40) % 2).all()
    assert not list(tmp_path.iterdir())


def _dated_orders(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    frame = pd.DataFrame({
        "order_id": pd.Series([f"o{i // 3}" for i in range(n)], dtype="string"),
        "customer_id": pd.Series([f"c{int(c)}" for c in rng.integers(0, 60, n)], dtype="string"),
        "product_id": pd.Series([f"p{int(p)}" for p in rng.integers(0, 25, n)], dtype="string"),
        "ordered_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(
            rng.integers(0, 200 * 24, n), unit="h")})
    frame.loc[frame.index % 17 == 0, "customer_id"] = pd.NA  # guests: left out
    return frame


def test_repurchase_cycles_equal_the_local_ones(spark_local: Any, tmp_path: Path) -> None:
    orders = _dated_orders(11)
    items = Vocabulary(pd.Index([*sorted(orders["product_id"].unique()), "zz"], dtype="string"))
    frame = spark_local.createDataFrame(to_spark_pandas(orders))
    for min_intervals, share in ((5, 0.3), (30, 0.5), (1, 0.0)):
        expected = _local_cycles(orders, items, min_intervals, share,
                                 tmp_path / str(min_intervals))
        got = repurchase_cycles_on_spark(spark_local, frame, items, min_intervals=min_intervals,
                                         min_repeat_share=share)
        save_parquet(got, tmp_path / "got.parquet")  # as the job writes it
        assert len(expected) > 0
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "got.parquet"), expected)


def _local_cycles(orders: pd.DataFrame, items: Vocabulary, min_intervals: int,
                  share: float, out: Path) -> pd.DataFrame:
    """The local models job's cycles (its repurchase.parquet)."""
    config = ModelsConfig(repurchase_min_intervals=min_intervals, repurchase_min_share=share,
                          als_factors=2, als_iterations=1)
    out.mkdir()
    run_models_job(orders, None, items, config, InteractionWeights(), out)
    return pd.read_parquet(layout.REPURCHASE.at(out))


def test_no_repurchase_cycles_is_the_local_empty_table(spark_local: Any, tmp_path: Path) -> None:
    orders = _dated_orders(12)
    items = Vocabulary(pd.Index(sorted(orders["product_id"].unique()), dtype="string"))
    got = repurchase_cycles_on_spark(spark_local, spark_local.createDataFrame(
        to_spark_pandas(orders)), items, min_intervals=10**6, min_repeat_share=0.3)
    save_parquet(got, tmp_path / "got.parquet")
    expected = _local_cycles(orders, items, 10**6, 0.3, tmp_path / "local")
    assert expected.empty
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "got.parquet"), expected)


def test_purchase_history_equals_the_local_one(spark_local: Any) -> None:
    orders = _dated_orders(13)
    orders.loc[orders.index % 23 == 0, "ordered_at"] = pd.NaT  # undated lines: day 1
    spans = orders.index % 3 == 2  # the third line of every order a week later
    orders.loc[spans, "ordered_at"] = orders.loc[spans, "ordered_at"] + pd.Timedelta(days=7)
    items = Vocabulary(pd.Index([*sorted(orders["product_id"].unique()), "zz"], dtype="string"))
    customers = Vocabulary(pd.Index([*sorted(orders["customer_id"].dropna().unique()),
                                     "only-views"], dtype="string"))
    expected = PurchaseHistory.of_sorted(PurchaseLines.of(orders, customers, items))
    got = purchase_history_on_spark(spark_local, spark_local.createDataFrame(
        to_spark_pandas(orders)), items, customers)
    assert len(got.customer) == len(orders.dropna(subset=["customer_id"])[
        ["customer_id", "product_id"]].drop_duplicates())
    assert (expected.orders >= 2).any() and (expected.last_day == 1).any()
    for field in ("customer", "product", "last_day", "orders"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), field)
        assert getattr(got, field).dtype == getattr(expected, field).dtype, field


def test_cold_start_inputs_equal_the_local_ones(spark_local: Any) -> None:
    """The cold_start job's order lines on Spark: the order x product matrix (up to the order
    of its rows) and the best sellers of the orders holding none of the held-out products,
    with and without a time window, per category scope."""
    from recsys.models.cold_start_job import LocalOrderLines
    from recsys.spark.pipeline import SparkOrderLines

    orders = _dated_orders(seed=8).assign(
        quantity=lambda f: (f.index % 4 + 1).astype("int64"),
        unit_price=lambda f: (f.index % 5 + 0.5).astype("float64"))
    catalog = pd.DataFrame({"product_id": pd.Series([f"p{i}" for i in range(25)], dtype="string"),
                            "category": pd.Series([f"C{i % 3} > S{i % 2}" for i in range(25)],
                                                  dtype="string")})
    items = item_vocabulary(catalog, orders)
    local = LocalOrderLines(orders)
    spark = SparkOrderLines(spark_local, spark_local.createDataFrame(to_spark_pandas(orders)))
    got, expected = spark.baskets(items), local.baskets(items)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert sorted(map(tuple, got.toarray().tolist())) == sorted(
        map(tuple, expected.toarray().tolist()))
    held = ["p3", "p7", "p11"]
    for window_days in (0, 30):
        got_table, expected_table = (
            lines.best_sellers_without(held, catalog, window_days=window_days, top_k=10)
            for lines in (spark, local))
        assert not got_table["product_id"].isin(held).any()
        assert got_table["scope"].nunique() > 3
        pd.testing.assert_frame_equal(got_table, expected_table, check_exact=False, rtol=1e-12)


def test_als_blocks_grow_with_the_ratings() -> None:
    assert als_blocks(0, 2) == 2 and als_blocks(RATINGS_PER_BLOCK * 2, 2) == 2
    assert als_blocks(RATINGS_PER_BLOCK * 2 + 1, 2) == 3
    assert als_blocks(25_000_000, 4) == -(-25_000_000 // RATINGS_PER_BLOCK)
