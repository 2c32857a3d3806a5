"""Hardening outside the server: a corrupt manifest does not stop `artifacts list`; customer
data and the database are owner-only; SQL ingest reads in read-only transactions; production
keys are long."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.config import Config
from recsys.errors import ConfigError, InputError
from recsys.ingest import ingest
from recsys.mapping import SourceMapping
from tests.conftest import write_small_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_list_shows_a_corrupt_manifest_as_unreadable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ArtifactStore(tmp_path)
    versions = []
    for _ in range(3):
        with store.staging() as folder:
            (folder / "a.json").write_text("{}")
            versions.append(store.publish(folder, config={}, config_hash="h", inputs={}).version)
    (store.path(versions[1]) / "manifest.json").write_text("{not json")
    assert main(["artifacts", "--root", str(tmp_path), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"  {versions[0]}  created")
    assert lines[1].startswith(f"  {versions[1]}  unreadable: cannot read")
    assert lines[2].startswith(f"* {versions[2]}  created")


def test_data_artifacts_and_database_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: without explicit modes, files would be 0644
    try:
        config = write_small_config(tmp_path)
        assert main(["-q", "run", "--config", str(config)]) == 0
        assert main(["-q", "users", "list", "--config", str(config)]) == 0
    finally:
        os.umask(old)
    for root in (tmp_path / "data", tmp_path / "artifacts"):
        assert _mode(root) == 0o700
        entries = [p for p in root.rglob("*") if p.name not in ("CURRENT", ".lock")]
        assert any(p.suffix == ".parquet" for p in entries)
        assert {str(p): _mode(p) for p in entries if p.is_dir()} == {
            str(p): 0o700 for p in entries if p.is_dir()}
        assert {str(p): _mode(p) for p in entries if p.is_file()} == {
            str(p): 0o600 for p in entries if p.is_file()}
    assert _mode(tmp_path / "recsys.db") == 0o600


def _sqlite_orders(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (order_id TEXT, product_id TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [("o1", "a"), ("o1", "b")])
    return f"sqlite:///{path}"


@pytest.mark.parametrize("query", [
    "DELETE FROM orders RETURNING *",
    "SELECT * FROM orders; DELETE FROM orders",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
])
def test_sqlite_query_cannot_write(tmp_path: Path, query: str) -> None:
    url = _sqlite_orders(tmp_path / "shop.db")
    mapping = SourceMapping.model_validate({"orders": {"query": query}})
    with pytest.raises(InputError, match="shop.db"):
        ingest({"orders": url}, mapping, tmp_path / "data", show_progress=False)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    assert not (tmp_path / "data").exists()


def test_sqlite_query_still_reads(tmp_path: Path) -> None:
    url = _sqlite_orders(tmp_path / "shop.db")
    mapping = SourceMapping.model_validate(
        {"orders": {"query": "SELECT * FROM orders ORDER BY product_id DESC;\n"}})
    report = ingest({"orders": url}, mapping, tmp_path / "data", show_progress=False)
    assert report.tables["orders"].rows_accepted == 2


@pytest.mark.services
@pytest.mark.parametrize("query", [
    "SELECT nextval('{t}_seq') AS order_id, 'p' AS product_id",  # writes, inside one SELECT
    "SELECT * FROM {t} FOR UPDATE",
    "SELECT * FROM {t}; DELETE FROM {t}",
    "SELECT * FROM {t}; COMMIT; DELETE FROM {t}",
    "WITH gone AS (DELETE FROM {t} RETURNING *) SELECT * FROM gone",
])
def test_postgres_query_that_writes_fails(postgres_url: str, pg_table: str, tmp_path: Path,
                                          query: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {pg_table} (order_id text, product_id text)"))
        conn.execute(text(f"INSERT INTO {pg_table} VALUES ('o1', 'a'), ('o1', 'b')"))
        conn.execute(text(f"CREATE SEQUENCE {pg_table}_seq"))
    try:
        mapping = SourceMapping.model_validate({"orders": {"query": query.format(t=pg_table)}})
        with pytest.raises(InputError, match="the database refused the read"):
            ingest({"orders": postgres_url}, mapping, tmp_path / "data", show_progress=False)
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT count(*) FROM {pg_table}")).scalar_one() == 2
            assert conn.execute(text(f"SELECT last_value FROM {pg_table}_seq")).scalar_one() == 1
            called: bool = conn.execute(
                text(f"SELECT is_called FROM {pg_table}_seq")).scalar_one()
            assert called is False  # nextval never ran
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SEQUENCE IF EXISTS {pg_table}_seq"))
        engine.dispose()


@pytest.mark.services
def test_postgres_read_only_message(postgres_url: str, pg_table: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SEQUENCE {pg_table}"))
    engine.dispose()
    mapping = SourceMapping.model_validate(
        {"orders": {"query": f"SELECT nextval('{pg_table}') AS order_id, 'p' AS product_id"}})
    with pytest.raises(InputError, match="read-only transaction"):
        ingest({"orders": postgres_url}, mapping, tmp_path / "data", show_progress=False)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SEQUENCE {pg_table}"))
    engine.dispose()


@pytest.mark.parametrize("key", ["short-key-31-characters-long-xxx"[:31], "x" * 8])
def test_production_needs_a_32_character_key(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", key)
    monkeypatch.setenv("RECSYS_SERVING_STOREFRONT_KEY", "a-public-storefront-key")
    config = Config.model_validate({"serving": {"environment": "production"}})
    with pytest.raises(ConfigError, match="at least 32 characters"):
        config.serving_settings()
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", key + "y" * (32 - len(key)))
    assert len(config.serving_settings().api_key) == 32
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", key)
    monkeypatch.delenv("RECSYS_SERVING_ENVIRONMENT", raising=False)
    assert Config().serving_settings().api_key == key  # development: 8 is still enough


def test_a_readable_config_holding_a_secret_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from recsys.config import load_config

    path = tmp_path / "recsys.toml"
    path.write_text('[serving]\napi_key = "a-secret-key-in-the-file-0123456789"\n')
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="recsys.config"):
        load_config(path)
    assert "holds a secret" in caplog.text and "a-secret-key" not in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level("WARNING", logger="recsys.config"):
        load_config(path)
    path.write_text('[serving]\nport = 9000\n')
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="recsys.config"):
        load_config(path)
    assert caplog.text == ""


def test_clv_output_folder_is_owner_only(tmp_path: Path) -> None:
    from tests.conftest import write_small_shop

    shop = write_small_shop(tmp_path / "raw")
    assert main(["-q", "ingest", "--orders", str(shop["orders"]), "--catalog",
                 str(shop["catalog"]), "--mapping", str(shop["mapping"]), "--out",
                 str(tmp_path / "data")]) == 0
    assert main(["-q", "clv", "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "clv")]) == 0
    assert (tmp_path / "clv" / "customers.parquet").exists()
    assert _mode(tmp_path / "clv") == 0o700
