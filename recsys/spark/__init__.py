"""The Spark engine: `recsys run --engine spark` runs the offline jobs on Apache Spark and
publishes the same artifact format as the local engine. One module per stage: ``session``
(start/stop), ``ingest``, ``pipeline`` (the jobs and the publish). Nothing here imports
pyspark at import time; it is the optional extra ``recsys[spark]``.
"""

from recsys.spark.settings import SparkConfig

__all__ = ["SparkConfig"]
