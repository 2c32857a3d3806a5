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
    lost = False
    try:
        yield spark
    except Exception as exc:
        texts = [_text(link) for link in _chain(exc)]
        lost = _jvm_lost(exc, texts) or _stopped(spark)
        if lost:
            raise ConfigError(_jvm_stopped(config.master, texts)) from exc
        raise
    finally:
        try:
            spark.stop()
        except Exception:  # noqa: BLE001 - py4j's errors from a JVM that is gone
            if not lost:
                raise


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (ten at most)."""
    out: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(out) < 10:
        out.append(link)
        link = link.__cause__ or link.__context__
    return out


def _text(exc: BaseException) -> str | None:
    """``str(exc)``; None when that fails (a Py4JJavaError asks the JVM for its message: it
    fails once the JVM is gone)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return None


def _stopped(spark: SparkSession) -> bool:
    """Whether the session's SparkContext was stopped under the job (the JVM's shutdown on an
    OutOfMemoryError stops it first) or its JVM no longer answers."""
    try:
        return bool(spark.sparkContext._jsc.sc().isStopped())
    except Exception:  # noqa: BLE001 - py4j raises network or protocol errors, by version
        return True


def _jvm_lost(exc: BaseException, texts: list[str | None]) -> bool:
    """Whether ``exc`` (its chain's ``texts``: None where ``str`` failed) says that Spark's
    JVM went away (it exits on an OutOfMemoryError) or ran out of memory."""
    from py4j.protocol import Py4JNetworkError

    return any(text is None or "OutOfMemoryError" in text for text in texts) or any(
        isinstance(link, Py4JNetworkError) for link in _chain(exc))


def _jvm_stopped(master: str, texts: list[str | None]) -> str:
    """What to say when Spark's JVM died or ran out of memory under a job (``texts``: the
    job's exception chain)."""
    memory = any("OutOfMemoryError" in (text or "") for text in texts)
    what = ("Spark ran out of memory during the run (java.lang.OutOfMemoryError)" if memory
            else "Spark's JVM stopped during the run (most often out of memory: look for "
                 "java.lang.OutOfMemoryError in Spark's log above)")
    return (f"[spark] master {master!r}: {what}. Give Spark more memory ([spark] settings: "
            "spark.driver.memory, and with a cluster spark.executor.memory; with a local "
            "master the executors run in the driver's JVM) or smaller tasks "
            "(spark.sql.shuffle.partitions, spark.sql.files.maxPartitionBytes), then run again")
