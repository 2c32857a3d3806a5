"""`recsys run --engine spark` from the command line: local[2] from the [spark] section, and
the message without pyspark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.spark.session import default_settings, session_settings
from recsys.spark.settings import SparkConfig
from tests.conftest import write_small_config
from tests.spark_fixtures import SMALL, require_spark, stop_active_session


def _with_spark_section(tmp_path: Path) -> Path:
    config = write_small_config(tmp_path)
    settings = ", ".join(f'"{k}" = "{v}"' for k, v in SMALL.items())
    config.write_text(config.read_text() + f'[spark]\nmaster = "local[2]"\n'
                      f"settings = {{ {settings} }}\n")
    return config


def test_without_pyspark_the_error_says_how_to_install(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` raises ImportError
    assert main(["-q", "run", "--engine", "spark", "--config",
                 str(_with_spark_section(tmp_path))]) == 1
    assert "pip install 'recsys[spark]'" in capsys.readouterr().err


def test_run_engine_spark_from_the_config(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    require_spark()
    stop_active_session()
    config = _with_spark_section(tmp_path)
    assert main(["-q", "run", "--engine", "spark", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "orders: 10 read, 8 accepted, 2 rejected" in out
    manifest = ArtifactStore(tmp_path / "artifacts").verify()
    assert manifest.metrics["basket_stats"] == {"orders": 5, "products_ordered": 4,
                                                "mean_basket_size": 1.6, "max_basket_size": 2}
    assert manifest.config["spark"]["master"] == "local[2]"


def test_bad_engine_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--engine", "flink"])
    assert "invalid choice: 'flink'" in capsys.readouterr().err


@pytest.mark.parametrize(("master", "partitions"), [
    ("local", "4"), ("local[2]", "8"), ("local[3,2]", "12"), ("spark://h:7077", None),
    ("yarn", None)])
def test_engine_defaults_by_master(master: str, partitions: str | None) -> None:
    # local masters: 4 shuffle partitions per core, not Spark's 200; a cluster keeps Spark's
    settings = default_settings(master)
    assert settings.get("spark.sql.shuffle.partitions") == partitions
    assert settings["spark.sql.execution.arrow.maxRecordsPerBatch"] == "100000"


def test_config_settings_win_over_the_defaults_but_not_over_the_fixed_ones() -> None:
    config = SparkConfig(master="local[2]", settings={
        "spark.sql.shuffle.partitions": "3", "spark.sql.session.timeZone": "Europe/Paris"})
    settings = session_settings(config)
    assert settings["spark.sql.shuffle.partitions"] == "3"
    assert settings["spark.sql.session.timeZone"] == "UTC"
    assert settings["spark.sql.execution.arrow.maxRecordsPerBatch"] == "100000"


def _own_process(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``source`` run as a script in a Python process of its own (its own Spark session: the
    test process's shared session must not be the one that dies or stops)."""
    require_spark()
    script = tmp_path / "script.py"
    script.write_text(source)
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)})


OUT_OF_MEMORY = """
import os
import subprocess
import sys
from recsys.errors import ConfigError
from recsys.spark.session import spark_session
from recsys.spark.settings import SparkConfig

config = SparkConfig(master="local[1]", settings={"spark.driver.memory": "512m",
                                                  "spark.ui.enabled": "false"})
try:
    with spark_session(config) as spark:
        spark.range(0, 500_000_000).selectExpr("collect_list(id) AS ids").collect()
except ConfigError as exc:
    print(f"ConfigError: {exc}")
    sys.exit(1)
"""


def test_a_jvm_out_of_memory_says_what_to_give_spark(tmp_path: Path) -> None:
    """Spark's JVM exits on an OutOfMemoryError: the run ends with a config error that names
    the memory settings, not with py4j's connection error from the dead JVM."""
    done = _own_process(OUT_OF_MEMORY, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    said = done.stdout
    assert said.startswith("ConfigError: [spark] master 'local[1]': Spark"), done.stderr[-3000:]
    assert "OutOfMemoryError" in said and "spark.driver.memory" in said, said
    assert "Connection refused" not in said


OTHER_ERROR = """
import sys
from recsys.errors import InputError
from recsys.spark.session import spark_session
from recsys.spark.settings import SparkConfig

try:
    with spark_session(SparkConfig(master="local[1]",
                                   settings={"spark.ui.enabled": "false"})) as spark:
        spark.range(3).count()
        raise InputError("orders.csv row 2: a bad date")
except InputError as exc:
    print(f"InputError: {exc}")
    sys.exit(3)
"""


def test_other_errors_under_a_live_spark_pass_through_as_they_are(tmp_path: Path) -> None:
    """Only a lost JVM or an OutOfMemoryError becomes the memory message."""
    done = _own_process(OTHER_ERROR, tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.strip() == "InputError: orders.csv row 2: a bad date"
