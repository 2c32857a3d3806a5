"""Real Spark for the Spark engine's tests: ``local[2]``, and a standalone cluster (a master
and one worker started with pyspark's own ``bin/spark-class`` on 127.0.0.1, stopped after).

One SparkContext lives per process: each fixture stops whichever session is active before it
starts its own. Skipped (failed in CI) when pyspark or Java is missing. Small settings: the
machine is shared.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.spark.settings import SparkConfig

SMALL = {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g",
         "spark.executor.memory": "1g", "spark.ui.enabled": "false",
         "spark.ui.showConsoleProgress": "false", "spark.default.parallelism": "2"}


# Debian's PostgreSQL JDBC driver (apt-get install libpostgresql-jdbc-java), for JDBC sources.
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
if JDBC_JAR.exists() and "PYSPARK_SUBMIT_ARGS" not in os.environ:
    # on the driver's class path from the start: whichever test starts this process's JVM
    # first, a later JDBC read finds the driver (spark.jars alone comes too late then)
    os.environ["PYSPARK_SUBMIT_ARGS"] = (f"--jars {JDBC_JAR} --driver-class-path {JDBC_JAR} "
                                         "pyspark-shell")


def spark_config(master: str) -> SparkConfig:
    jars = {"spark.jars": str(JDBC_JAR)} if JDBC_JAR.exists() else {}
    return SparkConfig(master=master, settings={**SMALL, **jars})


def require_spark() -> None:
    from tests.conftest import skip_or_fail  # conftest imports this module's fixtures

    try:
        import pyspark  # noqa: F401
    except ImportError:
        skip_or_fail("pyspark is not installed (pip install 'recsys[spark]')")
    if shutil.which("java") is None:
        skip_or_fail("java is not on PATH (the Spark engine needs Java 17+)")


def stop_active_session() -> None:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def _start(config: SparkConfig):  # noqa: ANN202 - pyspark is imported lazily
    from recsys.spark.session import spark_session

    context = spark_session(config)
    spark = context.__enter__()
    spark.sparkContext.setLogLevel("ERROR")
    return context, spark


@pytest.fixture(scope="module")
def spark_local() -> Iterator[object]:
    """A ``local[2]`` session for one test module."""
    require_spark()
    stop_active_session()
    context, spark = _start(spark_config("local[2]"))
    yield spark
    context.__exit__(None, None, None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"spark process exited early:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail(f"spark master not listening on {port} after {timeout:.0f} s")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A standalone cluster (master + one 1-core worker on 127.0.0.1) and a session on it."""
    require_spark()
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    logs = tmp_path_factory.mktemp("spark-cluster")
    port = _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(logs / "work"),
           "PYSPARK_PYTHON": sys.executable}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        master_log = logs / "master.log"
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
             "--port", str(port), "--webui-port", str(_free_port())],
            stdout=master_log.open("wb"), stderr=subprocess.STDOUT, env=env))
        _wait_for_port(port, procs[0], master_log, 120)
        procs.append(subprocess.Popen(
            [str(spark_class), "org.apache.spark.deploy.worker.Worker",
             f"spark://127.0.0.1:{port}", "--cores", "1", "--memory", "2g", "--host",
             "127.0.0.1", "--webui-port", str(_free_port())],
            stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT, env=env))
        stop_active_session()
        config = SparkConfig(master=f"spark://127.0.0.1:{port}",
                             settings={**spark_config("local").settings,
                                       "spark.driver.host": "127.0.0.1",
                                       "spark.driver.bindAddress": "127.0.0.1",
                                       "spark.cores.max": "1"})
        context, spark = _start(config)
        yield spark
        context.__exit__(None, None, None)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
