"""Secrets (the API key, passwords in database and ingest URLs) never reach an artifact, a
data directory, a log line or a printed report; the manifest keeps the full config's hash."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.config import load_config
from recsys.redact import REDACTED, redact, redact_text
from tests.conftest import write_small_shop

API_KEY = "env-api-key-Zq7Xv0sP2mL9wK4tR8yB3nC6"
DB_PASSWORD = "db-pw-Hj5Kq2Lw9"
INGEST_PASSWORD = "ingest-pw-Tf3Rz8Nb1"


def test_redact_by_field_and_url_password() -> None:
    config: dict[str, Any] = {
        "serving": {"api_key": "abc", "database_url": "postgresql://u:pw1@h/db",
                    "port": 8000, "session_secret": None},
        "ingest": {"orders": "mysql://shop:p%40ss@db:3306/x#orders",
                   "catalog": "sqlite:///var/x.db", "events": None},
        "extra": [{"token": "t"}, "https://user:pw2@example.org/a"]}
    out = redact(config)
    assert out["serving"] == {"api_key": REDACTED, "session_secret": None, "port": 8000,
                              "database_url": f"postgresql://u:{REDACTED}@h/db"}
    assert out["ingest"] == {"orders": f"mysql://shop:{REDACTED}@db:3306/x#orders",
                             "catalog": "sqlite:///var/x.db", "events": None}
    assert out["extra"] == [{"token": REDACTED}, f"https://user:{REDACTED}@example.org/a"]
    assert config["serving"]["api_key"] == "abc"  # a copy: the input is untouched
    assert redact_text("no url, a:b@c") == "no url, a:b@c"
    assert redact({"api_keys": {"shop": "k1", "other": ["k2", None]}}) == {
        "api_keys": {"shop": REDACTED, "other": [REDACTED, None]}}
    assert redact_text("postgresql://u:p@ss@db/x?y=1 and s3://a:b@c") == (
        f"postgresql://u:{REDACTED}@db/x?y=1 and s3://a:{REDACTED}@c")


def _pg_orders(url: str, table: str, shop: dict[str, Path]) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    pd.read_csv(shop["orders"], dtype=str).to_sql(table, engine, index=False)
    engine.dispose()


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


def _files_holding(root: Path, secrets: list[bytes]) -> list[str]:
    return [f"{path}: {secret!r}" for path in root.rglob("*") if path.is_file()
            for secret in secrets if secret in path.read_bytes()]


@pytest.mark.services
def test_no_secret_in_artifacts_data_logs_or_show(
        postgres_url: str, pg_table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    shop = write_small_shop(tmp_path / "raw")
    _pg_orders(postgres_url, pg_table, shop)
    ingest_url = _with_password(postgres_url, INGEST_PASSWORD)  # trust auth ignores it
    database_url = _with_password(postgres_url, DB_PASSWORD)
    config = tmp_path / "recsys.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[ingest]\norders = "{ingest_url}#{pg_table}"\ncatalog = "{shop["catalog"]}"\n'
        f'events = "{shop["events"]}"\nmapping = "{shop["mapping"]}"\n'
        f'[demo]\ngenerate_if_missing = false\n[popularity]\nwindow_days = 0\n'
        f'[artifacts]\nroot = "{tmp_path / "artifacts"}"\n'
        f'[serving]\ndatabase_url = "{database_url}"\n', encoding="utf-8")
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)
    assert main(["run", "--config", str(config)]) == 0
    assert main(["artifacts", "--config", str(config), "list"]) == 0
    assert main(["artifacts", "--config", str(config), "show"]) == 0
    assert main(["artifacts", "--config", str(config), "verify"]) == 0
    captured = capsys.readouterr()
    secrets = [API_KEY, DB_PASSWORD, INGEST_PASSWORD]
    for text in (captured.out, captured.err, caplog.text):
        assert not [s for s in secrets if s in text]
    assert not _files_holding(tmp_path / "artifacts", [s.encode() for s in secrets])
    assert not _files_holding(tmp_path / "data", [s.encode() for s in secrets])

    shown = json.loads(captured.out[captured.out.index("{"):captured.out.rindex("}") + 1])
    assert shown["config"]["serving"]["api_key"] == REDACTED
    assert shown["config"]["serving"]["database_url"] == _with_password(postgres_url, REDACTED)
    assert shown["inputs"]["sources"]["orders"].startswith(_with_password(postgres_url,
                                                                          REDACTED))
    full = load_config(config)  # the environment's key included
    assert full.serving.api_key == API_KEY
    assert shown["config_hash"] == full.hash()  # provenance: the hash of the full config
    assert API_KEY not in repr(full) and DB_PASSWORD not in repr(full.serving_settings())


def test_show_redacts_a_manifest_written_before_redaction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ArtifactStore(tmp_path)
    with store.staging() as folder:
        (folder / "a.json").write_text("{}")
        manifest = store.publish(folder, config={}, config_hash="h", inputs={})
    path = store.path() / "manifest.json"
    old = json.loads(path.read_text())
    old["config"] = {"serving": {"api_key": API_KEY}}
    path.write_text(json.dumps(old))
    assert main(["artifacts", "--root", str(tmp_path), "show", manifest.version]) == 0
    out = capsys.readouterr().out
    assert API_KEY not in out and json.loads(out)["config"]["serving"]["api_key"] == REDACTED


def test_no_secret_anywhere_without_services(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The same without PostgreSQL: the key from the environment, a password in the (unused
    here) database URL."""
    from tests.conftest import write_small_config

    config = write_small_config(tmp_path)
    text = config.read_text()
    old = text[text.index("database_url"):].splitlines()[0]
    config.write_text(text.replace(
        old, f'database_url = "postgresql+psycopg://shop:{DB_PASSWORD}@db.internal/shop"'))
    monkeypatch.setenv("RECSYS_SERVING_API_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)
    assert main(["run", "--config", str(config)]) == 0
    assert main(["artifacts", "--config", str(config), "show"]) == 0
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert API_KEY not in text and DB_PASSWORD not in text
    secrets = [API_KEY.encode(), DB_PASSWORD.encode()]
    assert not _files_holding(tmp_path / "artifacts", secrets)
    assert not _files_holding(tmp_path / "data", secrets)
    assert REDACTED in captured.out


def test_an_unparsable_database_url_is_named_without_its_password() -> None:
    from recsys.errors import ConfigError
    from recsys.serving.store import ServingStore

    with pytest.raises(ConfigError) as caught:
        ServingStore("postgresql+psycopg://shop:s3cret-pw@db:notaport/shop")
    assert "s3cret-pw" not in str(caught.value)
    assert "notaport" in str(caught.value)
