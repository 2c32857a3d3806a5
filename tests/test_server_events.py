"""The API's stored events feed the next training run (``recsys run``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text

from recsys.app import create_app
from recsys.config import load_config
from recsys.pipeline import run_pipeline
from recsys.serving.index import load_index
from recsys.serving.store import EVENTS
from tests.conftest import write_small_config


def _support(artifacts: Path, product: str, neighbour: str) -> int:
    index = load_index(artifacts)
    table = index.also_viewed
    assert table is not None
    row = index.code_of[product]
    hits = [int(s) for c, s in zip(table.ids[row].tolist(), table.support[row].tolist(),
                                   strict=True) if c == index.code_of[neighbour]]
    return hits[0] if hits else 0


@pytest.fixture
def posted(tmp_path: Path) -> Path:
    """The small shop's artifact, then three sessions viewing spoon and kettle posted to the
    API, and one bad row written to the events table behind the API's back."""
    config_path = write_small_config(tmp_path)
    config = load_config(config_path)
    run_pipeline(config, show_progress=False)
    assert _support(tmp_path / "artifacts", "spoon", "kettle") == 0
    with TestClient(create_app(config.serving_settings())) as client:
        for session in ("z1", "z2", "z3"):
            for product in ("spoon", "kettle"):
                answer = client.post("/v1/events", json={
                    "event_type": "view", "product_id": product, "session_id": session})
                assert answer.status_code == 201
        client.post("/v1/events", json={"event_type": "impression", "session_id": "z1"})
    engine = create_engine(config.serving.database_url)
    with engine.begin() as conn:
        conn.execute(insert(EVENTS).values(received_at=pd.Timestamp.now(tz="UTC"),
                                           event_type="teleport", product_id="mug",
                                           session_id="z9"))
    engine.dispose()
    return config_path


def test_the_next_run_trains_on_the_events_the_api_stored(posted: Path) -> None:
    config = load_config(posted)
    report, manifest = run_pipeline(config, show_progress=False)
    server = report.tables["server_events"]
    # 6 views read (the impression names no product), the bad row quarantined with its reason
    assert (server.rows_read, server.rows_accepted, server.rows_rejected) == (7, 6, 1)
    assert server.rejected_by_reason == {"unknown_event_type": 1}
    saved = json.loads((Path(config.data_dir) / "report.json").read_text())
    assert saved["tables"]["server_events"]["rows_accepted"] == 6
    quarantine = pd.read_csv(Path(config.data_dir) / "quarantine" / "server_events.csv")
    assert quarantine["reason"].tolist() == ["unknown_event_type"]
    assert manifest.inputs["rows"]["server_events"]["accepted"] == 6
    label = manifest.inputs["sources"]["server_events"]
    assert label.startswith(config.serving.database_url) and "FROM recsys_events" in label
    assert len(pd.read_parquet(Path(config.data_dir) / "events.parquet")) == 3 + 6
    assert _support(Path(config.artifacts.root), "spoon", "kettle") == 3


def test_an_export_of_the_table_is_not_counted_twice(posted: Path, tmp_path: Path) -> None:
    config = load_config(posted)
    engine = create_engine(config.serving.database_url)
    with engine.connect() as conn:
        stored = pd.read_sql("SELECT product_id, event_type, received_at AS occurred_at, "
                             "session_id, customer_id FROM recsys_events WHERE product_id "
                             "IS NOT NULL AND event_type = 'view'", conn)
    engine.dispose()
    export = tmp_path / "export.csv"
    stored.iloc[:2].to_csv(export, index=False)  # two of the six views, exported
    text = posted.read_text().replace(str(tmp_path / "raw" / "events.csv"), str(export))
    posted.write_text(text)
    report, _ = run_pipeline(load_config(posted), show_progress=False)
    assert report.tables["server_events"].rejected_by_reason == {"duplicate_event": 2,
                                                                 "unknown_event_type": 1}
    assert report.tables["server_events"].rows_accepted == 4
    assert _support(Path(config.artifacts.root), "spoon", "kettle") == 3


def test_an_event_id_stored_twice_is_trained_on_once(posted: Path) -> None:
    """A table written without the server's unique index (another writer, a restored dump)
    holding a retried beacon twice: the first copy is read, the second quarantined."""
    config = load_config(posted)
    engine = create_engine(config.serving.database_url)
    now = pd.Timestamp.now(tz="UTC")
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_recsys_events_event_key"))
        for product, key, later in (("spoon", "b-9", 0), ("kettle", "b-10", 0),
                                    ("spoon", "b-9", 5)):
            conn.execute(insert(EVENTS).values(
                received_at=now + pd.Timedelta(seconds=later), event_type="view",
                product_id=product, session_id="z4", event_key=key))
    engine.dispose()
    report, _ = run_pipeline(config, show_progress=False)
    server = report.tables["server_events"]
    assert server.rejected_by_reason == {"duplicate_event": 1, "unknown_event_type": 1}
    assert (server.rows_read, server.rows_accepted) == (10, 8)
    quarantine = pd.read_csv(Path(config.data_dir) / "quarantine" / "server_events.csv")
    duplicate = quarantine[quarantine["reason"] == "duplicate_event"]
    assert duplicate["event_key"].tolist() == ["b-9"] and duplicate["column"].tolist() == [
        "event_id"]
    assert _support(Path(config.artifacts.root), "spoon", "kettle") == 4


def test_the_server_table_as_the_events_source_is_read_once(posted: Path) -> None:
    config = load_config(posted)
    url = config.serving.database_url
    posted.write_text(posted.read_text().replace(
        f'events = "{Path(config.data_dir).parent / "raw" / "events.csv"}"',
        f'events = "{url}#recsys_events"'))
    text = posted.read_text()
    assert "#recsys_events" in text
    mapping = Path(load_config(posted).ingest.mapping or "")
    mapping.write_text(mapping.read_text() + '[events]\nquery = "SELECT product_id, event_type, '
                       'received_at AS occurred_at, session_id, customer_id FROM recsys_events '
                       'WHERE product_id IS NOT NULL"\n')
    report, _ = run_pipeline(load_config(posted), show_progress=False)
    assert "server_events" not in report.tables
    assert report.tables["events"].rows_accepted == 6


def test_the_switch_turns_it_off(posted: Path) -> None:
    posted.write_text(posted.read_text().replace("[ingest]\n", "[ingest]\nserver_events = false\n"))
    config = load_config(posted)
    report, _ = run_pipeline(config, show_progress=False)
    assert "server_events" not in report.tables
    assert _support(Path(config.artifacts.root), "spoon", "kettle") == 0
