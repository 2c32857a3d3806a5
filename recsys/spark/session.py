"""Starting and stopping the Spark session of the Spark engine (the only place that builds one).

pyspark is an optional extra; without it the engine says how to install it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from recsys.errors import ConfigError
from recsys.spark.settings import SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["require_pyspark", "spark_session", "default_settings", "session_settings",
           "FIXED_SETTINGS"]

# Settings the engine relies on (they win over [spark] settings): timestamps are naive UTC
# everywhere in the project, and pandas <-> Spark goes through Arrow.
FIXED_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.pandas.convertToArrowArraySafely": "true",
}

_LOCAL = re.compile(r"^local(?:\[(\d+|\*)(?:,\d+)?\])?$")  # local, local[N], local[*], local[N,F]


def default_settings(master: str) -> dict[str, str]:
    """Settings the engine picks unless ``[spark] settings`` give them: Arrow batches of
    100,000 rows to the Python workers (the validation has a fixed cost per batch), and on a
    local master 4 shuffle partitions per core instead of Spark's 200 (each one a task with
    its own files); a cluster keeps Spark's default."""
    settings = {"spark.sql.execution.arrow.maxRecordsPerBatch": "100000"}
    local = _LOCAL.match(master.strip())
    if local:
        given = local.group(1)
        cores = (os.cpu_count() or 1) if given == "*" else int(given or 1)
        settings["spark.sql.shuffle.partitions"] = str(4 * cores)
    return settings


def require_pyspark() -> None:
    """Raise a ConfigError that says how to install pyspark when it is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError("the Spark engine needs pyspark, which is not installed: "
                          "pip install 'recsys[spark]'") from None


def session_settings(config: SparkConfig) -> dict[str, str]:
    """Every setting the session gets: the engine's defaults, then ``[spark] settings``, then
    ``FIXED_SETTINGS`` (and the executors' Python and PYTHONPATH first)."""
    settings = {"spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable)}
    if os.environ.get("PYTHONPATH"):  # a source checkout: executors import recsys from it too
        # absolute: an executor's Python runs in its own working directory
        settings["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(
            os.path.abspath(entry) for entry in os.environ["PYTHONPATH"].split(os.pathsep)
            if entry)
    return {**settings, **default_settings(config.master), **config.settings, **FIXED_SETTINGS}


@contextmanager
def spark_session(config: SparkConfig,
                  existing: SparkSession | None = None) -> Iterator[SparkSession]:
    """A session for ``config`` (stopped afterwards), or ``existing`` as it is (left running)."""
    if existing is not None:
        yield existing
        return
    require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(config.master).appName(config.app_name)
    # Executors' Python workers run the same interpreter as the driver unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = session_settings(config)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - py4j/JVM start-up errors have many types
        raise ConfigError(f"[spark] master {config.master!r}: Spark did not start: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    try:
        yield spark
    finally:
        spark.stop()
