"""Implicit-feedback ALS with Spark MLlib (``implicitPrefs=True``), in the factor format the
local models job saves (``als.npz``: user and item factors, float32, rows in the codes of the
customer and product vocabularies; zeros for a customer or product MLlib never saw).

The confidence matrix is ``customer_item_matrix``'s, made and kept on Spark by the Spark
engine (recsys.spark.interactions: the driver never holds its non-zeros; a matrix in this
process, e.g. a benchmark's, is sent to the executors), MLlib fits there, and the factors
come back through Parquet parts one batch at a time (``recsys.spark.neighbours.stream``).
MLlib's model is Hu, Koren and Volinsky's with confidence 1 + alpha r and the L2 penalty
scaled by each row's ratings (ALS-WR), where implicit uses confidence alpha r and a plain
penalty: the same settings give close, not equal, factors (quality compared in
``benchmarks/spark_als_quality.py``).

MLlib's iterations grow each block's lineage; without checkpoints a task of a later iteration
overflows the JVM stack when it is deserialised (``StackOverflowError`` on a 1,000,000-order
shop). The fit checkpoints every ``CHECKPOINT_INTERVAL`` iterations into the Spark session's
checkpoint directory when one is set (``spark.checkpoint.dir``: on a cluster, a folder every
executor reaches), else into a folder of the scratch directory removed after the fit.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.matrices import Confidence, Interactions
from recsys.spark.interactions import SparkConfidence
from recsys.spark.neighbours import stream

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recsys.models.settings import ModelsConfig

__all__ = ["SparkALS", "CHECKPOINT_INTERVAL", "RATINGS_PER_BLOCK", "als_blocks", "mllib_blas"]

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 5  # iterations between ALS checkpoints
# MLlib builds each block's arrays in one task: with 2 blocks (a local[2] default) a
# 10,000,000-order shop's blocks overflowed a 4 GB JVM (OutOfMemoryError in makeBlocks)
RATINGS_PER_BLOCK = 2_000_000


def als_blocks(ratings: int, parallelism: int) -> int:
    """User and item blocks for MLlib's ALS: one per core at least, and more as the ratings
    grow, ``RATINGS_PER_BLOCK`` at most in each."""
    return max(parallelism, -(-ratings // RATINGS_PER_BLOCK))


def mllib_blas(spark: SparkSession) -> str:
    """The class of the BLAS MLlib's ALS calls in the driver's JVM (with a local master, the
    executors' too): ``dev.ludovic.netlib.blas.JNIBLAS`` when it loaded the system's
    ``libblas.so.3`` (e.g. OpenBLAS), else a Java one (``VectorBLAS``, ``Java8BLAS``...)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "the Spark session has no JVM"
    blas = getattr(jvm.org.apache.spark.ml.linalg, "BLAS$").__getattr__("MODULE$")  # Scala object
    return str(blas.nativeBLAS().getClass().getName())


class SparkALS:
    """``recsys.models.job``'s ``Factorizer`` on Spark MLlib."""

    def __init__(self, spark: SparkSession, scratch: Path, *, partitions: int | None = None
                 ) -> None:
        self.spark, self.scratch = spark, scratch
        self.partitions = partitions or spark.sparkContext.defaultParallelism

    def fit(self, confidence: Confidence, config: ModelsConfig
            ) -> tuple[np.ndarray, np.ndarray]:
        """(user factors, item factors) of the customers x products confidence matrix (a
        ``SparkConfidence``, released once fitted, or ``Interactions``)."""
        context = self.spark.sparkContext
        own = None
        if context.getCheckpointDir() is None or self._owns(context.getCheckpointDir()):
            own = self.scratch / f"als-checkpoints-{uuid.uuid4().hex}"
            context.setCheckpointDir(str(own))
        try:
            return self._fit(confidence, config)
        finally:
            if isinstance(confidence, SparkConfidence):
                confidence.release()
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)

    @staticmethod
    def _owns(folder: str | None) -> bool:
        """Whether ``folder`` is a checkpoint folder an earlier fit made (and removed)."""
        return folder is not None and "/als-checkpoints-" in folder

    def _fit(self, confidence: Confidence, config: ModelsConfig
             ) -> tuple[np.ndarray, np.ndarray]:
        from pyspark.ml.recommendation import ALS

        if isinstance(confidence, SparkConfidence):
            ratings, nnz = confidence.ratings, confidence.nnz
        elif isinstance(confidence, Interactions):
            coo = sp.coo_matrix(confidence.matrix)
            nnz = coo.nnz
            ratings = self.spark.createDataFrame(pd.DataFrame(
                {"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                 "rating": coo.data.astype(np.float32)}), "user int, item int, rating float")
        else:
            raise TypeError(f"SparkALS fits a SparkConfidence or Interactions, not {confidence!r}")
        blocks = als_blocks(nnz, self.partitions)
        log.info("MLlib ALS: %s ratings in %s x %s blocks, BLAS %s", f"{nnz:,}", blocks,
                 blocks, mllib_blas(self.spark))
        als = ALS(rank=config.als_factors, maxIter=config.als_iterations,
                  regParam=config.als_regularization, alpha=config.als_alpha,
                  implicitPrefs=True, seed=config.seed, userCol="user", itemCol="item",
                  ratingCol="rating", numUserBlocks=blocks, numItemBlocks=blocks,
                  intermediateStorageLevel="MEMORY_AND_DISK",
                  finalStorageLevel="MEMORY_AND_DISK", checkpointInterval=CHECKPOINT_INTERVAL)
        model = als.fit(ratings.repartition(blocks))
        n_users, n_items = len(confidence.rows), len(confidence.items)
        return (self._factors(model.userFactors, n_users, config.als_factors),
                self._factors(model.itemFactors, n_items, config.als_factors))

    def _factors(self, table: DataFrame, rows: int, rank: int) -> np.ndarray:
        out = np.zeros((rows, rank), dtype=np.float32)
        for batch in stream(table, self.scratch):
            ids = batch["id"].to_numpy(np.int64)
            if len(ids):
                out[ids] = np.stack(batch["features"].to_numpy()).astype(np.float32)
        return out
