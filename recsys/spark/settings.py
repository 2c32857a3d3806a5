"""The ``[spark]`` config section: where the Spark engine runs and extra Spark settings.

Kept apart from the engine so that reading a config never imports pyspark.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SparkConfig"]


class SparkConfig(BaseModel):
    """Spark master and settings for ``recsys run --engine spark``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str = Field("local[*]", min_length=1,
                        description="local[N], local[*] or spark://host:7077, yarn, k8s://...")
    app_name: str = Field("recsys", min_length=1, description="the application's name in Spark")
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="extra Spark settings passed through, e.g. spark.executor.memory = \"8g\"")
    chunk_rows: int = Field(1_000_000, ge=1_000,
                            description="rows the driver holds at once when it assembles an "
                                        "output file from the executors' parts")
