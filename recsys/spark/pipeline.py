"""`recsys run --engine spark`: ingest on Spark, the jobs, and the publish of the local engine.

The artifact is written by the local writers (``recsys.pipeline.run_jobs``), so its format is
the one serving reads. Jobs with a Spark version here replace the local ones; the others run
locally on the data directory that Spark wrote.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from recsys.artifacts import Manifest
from recsys.config import Config
from recsys.ingest import IngestReport
from recsys.pipeline import JOBS, run_jobs
from recsys.spark.session import require_pyspark, spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["run_on_spark"]


def run_on_spark(config: Config, *, show_progress: bool = True,
                 spark: SparkSession | None = None) -> tuple[IngestReport, Manifest]:
    """Run the pipeline on ``spark`` (or a session from ``[spark]``, stopped afterwards)."""
    require_pyspark()
    from recsys.spark.ingest import ingest_on_spark

    with spark_session(config.spark, spark) as session:
        ingest_fn = partial(ingest_on_spark, session, chunk_rows=config.spark.chunk_rows)
        return run_jobs(config, show_progress=show_progress, ingest_fn=ingest_fn, jobs=dict(JOBS))
