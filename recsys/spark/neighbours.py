"""The co-purchase neighbour tables on Spark: item-kNN (cosine or BM25, as ``implicit``) and
EASE, from the pair counts of the order lines, in the local models job's table format.

Pairs: each order's distinct products joined with themselves (the item with itself too),
grouped by (i, j, basket size): orders holding both and the smallest such order id. From
them, per item on the executors (``applyInPandas``): the co-occurrence count (exact), the
score (cosine: count / sqrt(n_i n_j); BM25: implicit's ``bm25_weight`` of the binary order
x product matrix, so a_i a_j x the sum of idf^2 over the shared orders), implicit's own
K-best selection (its heap, fed in its visiting order, so ties fall where they fall there),
then the local top-K. EASE: the Gram matrix of the ``ease_max_items`` best sellers (sum of
1 / basket size over shared orders) is summed on Spark and inverted on the driver.

Outputs are written by the executors as Parquet parts under a scratch folder and streamed by
the driver, one batch at a time, into memory-mapped ``.npy`` files: the driver never holds
the pair table, only the (items x K) arrays on disk and the EASE Gram matrix.
"""

from __future__ import annotations

import heapq
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.layout import NEIGHBOUR_ARRAYS
from recsys.models.ease import GRAM_DTYPE, ease_coverage, ease_from_gram
from recsys.models.neighbours import Neighbours
from recsys.spark.ingest import to_spark_pandas
from recsys.vocab import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recsys.models.settings import ModelsConfig

__all__ = ["SparkCoPurchase", "item_codes", "order_baskets", "pair_table", "item_order_counts",
           "knn_on_spark", "bm25_item_weights", "implicit_k_best", "repeated_sum",
           "ease_gram_on_spark", "support_on_spark", "stream", "write_neighbours"]

KNN_SCHEMA = "item int, rank int, neighbour int, score float, support long"


def order_baskets(spark: SparkSession, orders: DataFrame, items: Vocabulary) -> DataFrame:
    """Distinct (order_id, item) of the order lines; ``item`` is the product's code in
    ``items`` (lines of other products are left out, as ``order_item_matrix`` does)."""
    from pyspark.sql import functions as F

    return (orders.select(F.col("order_id").cast("string"), F.col("product_id").cast("string"))
            .join(F.broadcast(item_codes(spark, items)), "product_id")
            .select("order_id", "item").distinct())


def item_codes(spark: SparkSession, items: Vocabulary) -> DataFrame:
    """(product_id, item): each product's code in ``items``."""
    return spark.createDataFrame(to_spark_pandas(pd.DataFrame(
        {"product_id": pd.Series(items.ids).astype(object),
         "item": np.arange(len(items), dtype=np.int32)})), "product_id string, item int")


def pair_table(baskets: DataFrame) -> DataFrame:
    """(i, j, b, n, first): ``n`` orders of ``b`` distinct products hold both i and j (i == j
    included), ``first`` the smallest of their order ids."""
    from pyspark.sql import functions as F

    sizes = baskets.groupBy("order_id").agg(F.count(F.lit(1)).cast("int").alias("b"))
    left = baskets.join(sizes, "order_id").withColumnRenamed("item", "i")
    right = baskets.withColumnRenamed("item", "j")
    return (left.join(right, "order_id").groupBy("i", "j", "b")
            .agg(F.count(F.lit(1)).alias("n"), F.min("order_id").alias("first")))


def item_order_counts(baskets: DataFrame, n_items: int) -> np.ndarray:
    """Orders holding each product code (int64, one per code)."""
    counted = pd.DataFrame(baskets.groupBy("item").count().toPandas())
    out = np.zeros(n_items, dtype=np.int64)
    out[counted["item"].to_numpy(np.int64)] = counted["count"].to_numpy(np.int64)
    return out


def bm25_item_weights(counts: np.ndarray, k1: float, b: float) -> np.ndarray:
    """Per product, implicit's ``bm25_weight`` factor of a binary order x product matrix
    (its float32 steps mirrored): weight(order, i) = a_i x idf(order)."""
    row_sums = counts.astype(np.float32)
    length_norm = (1.0 - b) + b * row_sums / row_sums.mean()
    ones = np.ones(len(counts), dtype=np.float32)
    return np.asarray(ones * (k1 + 1.0) / (k1 * length_norm + ones), dtype=np.float64)


def knn_on_spark(pairs: DataFrame, counts: np.ndarray, *, kind: Literal["cosine", "bm25"],
                 k: int, top_k: int, k1: float = 1.2, b: float = 0.75) -> DataFrame:
    """Rows (item, rank, neighbour, score, support) of the top-``top_k`` table that
    ``recsys.models.job`` builds with ``ItemKNN(kind, k)`` on the same orders."""
    n_items = len(counts)
    if kind == "bm25":
        weight = bm25_item_weights(counts, k1, b)
    else:
        weight = 1.0 / np.sqrt(np.maximum(counts, 1).astype(np.float64))
    score_of = _scorer(kind, weight, n_items)
    return pairs.groupBy("i").applyInPandas(_item_top_k(score_of, k, top_k), KNN_SCHEMA)


def _scorer(kind: str, weight: np.ndarray, n_items: int) -> Callable[..., np.ndarray]:
    """score(i, neighbours, support, per-row n, per-row b, row starts) for one item."""

    def cosine(i: int, cols: np.ndarray, support: np.ndarray, n: np.ndarray,
               sizes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return repeated_sum(weight[cols] * weight[i], support)

    def bm25(i: int, cols: np.ndarray, support: np.ndarray, n: np.ndarray,
             sizes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        idf = np.log(float(n_items)) - np.log1p(sizes.astype(np.float64))
        return weight[i] * weight[cols] * np.add.reduceat(n * idf * idf, starts)

    return bm25 if kind == "bm25" else cosine


def repeated_sum(term: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``term`` added ``times`` times to 0, one addition after the other, as implicit's
    accumulator does: equal products of the counts and the weights can round apart there,
    and its K-best choice sees those last bits."""
    order = np.argsort(times, kind="stable")
    term, times = term[order], times[order]
    sums = np.zeros(len(term), dtype=np.float64)
    start = 0
    for k in range(1, int(times.max(initial=0)) + 1):
        start += int(np.searchsorted(times[start:], k))  # times ascending: a suffix is left
        sums[start:] += term[start:]
    out = np.empty_like(sums)
    out[order] = sums
    return out


def _item_top_k(score_of: Callable[..., np.ndarray], k: int, top_k: int
                ) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def run(frame: pd.DataFrame) -> pd.DataFrame:
        i = int(frame["i"].iloc[0])
        frame = frame.sort_values(["j", "b"], kind="stable")
        j = frame["j"].to_numpy(np.int64)
        starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
        n = frame["n"].to_numpy(np.int64)
        cols = j[starts]
        support = np.add.reduceat(n, starts)
        first = frame.groupby("j", sort=True)["first"].min().to_numpy()
        score = score_of(i, cols, support, n, frame["b"].to_numpy(np.int64), starts)
        kept = np.sort(implicit_k_best(score, cols, first, k))
        s32 = score[kept].astype(np.float32)
        ok = (cols[kept] != i) & (s32 > 0)
        kept, s32 = kept[ok], s32[ok]
        best = np.argsort(-s32, kind="mergesort")[:top_k]  # stable: lower code first on ties
        return pd.DataFrame({"item": np.full(len(best), i, np.int32),
                             "rank": np.arange(len(best), dtype=np.int32),
                             "neighbour": cols[kept[best]].astype(np.int32),
                             "score": s32[best], "support": support[kept[best]]})

    return run


def implicit_k_best(score: np.ndarray, cols: np.ndarray, first: np.ndarray, k: int
                    ) -> np.ndarray:
    """Positions of the ``k`` entries implicit's ``all_pairs_knn`` keeps for one item: its
    accumulator hands the neighbours over newest first-touch first (orders ascending, codes
    ascending in an order), to a min-heap of (score, code) that takes a newcomer only when it
    scores strictly above the heap's least."""
    if len(cols) <= k:
        return np.arange(len(cols))
    touched = pd.factorize(pd.Series(first, dtype=object), sort=True)[0]
    visit = np.lexsort((cols, touched))[::-1]
    heap: list[tuple[float, int, int]] = []
    for pos in visit.tolist():
        entry = (float(score[pos]), int(cols[pos]), pos)
        if len(heap) < k:
            heapq.heappush(heap, entry)
        elif entry[0] > heap[0][0]:
            heapq.heapreplace(heap, entry)
    return np.array([pos for _, _, pos in heap], dtype=np.int64)


def ease_gram_on_spark(spark: SparkSession, pairs: DataFrame, kept: np.ndarray,
                       scratch: Path) -> np.ndarray:
    """The (m x m) Gram matrix of the ``kept`` codes with rows weighted 1/sqrt(basket size):
    G[i, j] = sum over the orders holding both of 1 / basket size."""
    from pyspark.sql import functions as F

    pos = np.full(int(kept.max(initial=-1)) + 1, -1, dtype=np.int64)
    pos[kept] = np.arange(len(kept))
    codes = spark.createDataFrame(pd.DataFrame({"c": kept.astype(np.int32)}), "c int")
    among = (pairs.join(F.broadcast(codes.withColumnRenamed("c", "i")), "i", "left_semi")
             .join(F.broadcast(codes.withColumnRenamed("c", "j")), "j", "left_semi"))
    sums = among.groupBy("i", "j").agg(F.sum(F.col("n") / F.col("b")).alias("g"))
    gram = np.zeros((len(kept), len(kept)), dtype=GRAM_DTYPE)  # inverted in place: 4 m^2 bytes
    for batch in stream(sums, scratch):
        gram[pos[batch["i"].to_numpy()], pos[batch["j"].to_numpy()]] = batch["g"].to_numpy()
    return gram


def support_on_spark(spark: SparkSession, pairs: DataFrame, ids: np.ndarray,
                     scratch: Path) -> np.ndarray:
    """Orders holding both item i and each neighbour ids[i, j] (0 for padding)."""
    from pyspark.sql import functions as F

    rows, ranks = np.nonzero(ids >= 0)
    wanted = spark.createDataFrame(pd.DataFrame(
        {"i": rows.astype(np.int32), "rank": ranks.astype(np.int32),
         "j": ids[rows, ranks].astype(np.int32)}), "i int, rank int, j int")
    counted = (wanted.join(pairs, ["i", "j"]).groupBy("i", "rank")
               .agg(F.sum("n").alias("support")))
    out = np.zeros(ids.shape, dtype=np.int64)
    for batch in stream(counted, scratch):
        out[batch["i"].to_numpy(), batch["rank"].to_numpy()] = batch["support"].to_numpy()
    return out


def stream(frame: DataFrame, scratch: Path) -> Iterator[pd.DataFrame]:
    """``frame``'s rows, a Parquet batch at a time: written by the executors under
    ``scratch`` (a folder every node sees), read back by the driver, then removed."""
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="recsys-spark-models-", dir=scratch))
    try:
        frame.write.mode("overwrite").parquet(str(folder / "parts"))
        for part in sorted((folder / "parts").glob("part-*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=1_000_000):
                yield batch.to_pandas()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_neighbours(table: DataFrame, n_items: int, top_k: int, folder: Path,
                     scratch: Path) -> None:
    """A neighbour table folder (``NEIGHBOUR_ARRAYS`` as ``.npy``) from rows (item, rank,
    neighbour, score, support), filled batch by batch through memory maps."""
    if n_items == 0:  # nothing to map: the empty arrays as the local job saves them
        Neighbours(ids=np.zeros((0, top_k), np.int32), scores=np.zeros((0, top_k), np.float32),
                   support=np.zeros((0, top_k), np.int64)).save(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {a.name: np.lib.format.open_memmap(folder / f"{a.name}.npy", mode="w+",
                                                dtype=np.dtype(a.dtype), shape=(n_items, top_k))
              for a in NEIGHBOUR_ARRAYS}
    arrays["ids"][:] = -1
    for batch in stream(table, scratch):
        at = (batch["item"].to_numpy(), batch["rank"].to_numpy())
        arrays["ids"][at] = batch["neighbour"].to_numpy()
        arrays["scores"][at] = batch["score"].to_numpy()
        arrays["support"][at] = batch["support"].to_numpy()
    for array in arrays.values():
        array.flush()
    del arrays


class SparkCoPurchase:
    """The co-purchase tables of ``recsys.models.job`` (its ``CoPurchaseTables``) made on
    Spark from the order lines ``orders`` (a Spark frame)."""

    def __init__(self, spark: SparkSession, orders: DataFrame, items: Vocabulary,
                 config: ModelsConfig, scratch: Path) -> None:
        from pyspark import StorageLevel

        self.spark, self.config, self.scratch, self.n_items = spark, config, scratch, len(items)
        baskets = order_baskets(spark, orders, items).persist(StorageLevel.MEMORY_AND_DISK)
        self.counts = item_order_counts(baskets, self.n_items)
        self.pairs = pair_table(baskets).persist(StorageLevel.MEMORY_AND_DISK)
        self._baskets = baskets
        self.ease_warnings: list[str] = []  # the memory budget's cap, when it set one
        self._knn: Path | None = None

    def save_knn(self, folder: Path) -> None:
        """The item-kNN table (``config.similarity``, ``knn_k``, ``top_k``) into ``folder``."""
        if self._knn is not None:  # made once: later tables are copies
            shutil.copytree(self._knn, folder, dirs_exist_ok=True)
            return
        table = knn_on_spark(self.pairs, self.counts, kind=self.config.similarity,
                             k=self.config.knn_k, top_k=self.config.top_k)
        write_neighbours(table, self.n_items, self.config.top_k, folder, self.scratch)
        self._knn = folder

    def save_ease(self, folder: Path) -> int:
        """The EASE table into ``folder``; returns the products that got neighbours."""
        kept, self.ease_warnings = ease_coverage(self.counts, self.config.ease_max_items,
                                                 self.config.ease_memory_mb)
        gram = ease_gram_on_spark(self.spark, self.pairs, kept, self.scratch)
        ids, scores = ease_from_gram(gram, kept, self.n_items, lam=self.config.ease_lambda,
                                     top_k=self.config.top_k)
        support = support_on_spark(self.spark, self.pairs, ids, self.scratch)
        Neighbours(ids=ids, scores=scores, support=support).save(folder)
        return int((ids[:, 0] >= 0).sum())

    def close(self) -> None:
        """Drop the cached baskets and pairs (a second call does nothing)."""
        self.pairs.unpersist()
        self._baskets.unpersist()
