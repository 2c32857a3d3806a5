"""`recsys forget`: after an erasure nothing findable by the customer's id (or their session's)
is left in the data directory, any artifact version (bytes, and Parquet decoded), the events
database (SQLite file bytes; the real PostgreSQL by query) or an access log; other customers
keep their data, every version still loads, and the erasure is recorded without the id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.artifact_checks import check_loads
from recsys.artifacts import ArtifactStore, load_npz
from recsys.cli import main
from recsys.erasure_store import erasures
from recsys.serving.store import ServingStore
from recsys.vocab import Vocabulary

GONE = "cust-erase-me-4711"
SESSION = "sess-of-erased-9931"
KEPT = ("cust-keep-0002", "cust-keep-0003")


def write_shop(tmp: Path, database_url: str) -> Path:
    raw = tmp / "raw"
    raw.mkdir()
    a, b = KEPT
    (raw / "orders.csv").write_text(
        "order_id,product_id,customer_id,ordered_at,quantity,unit_price\n"
        f"o1,mug,{GONE},2025-01-01T10:00:00,1,8.5\no1,tea,{GONE},2025-01-01T10:00:00,2,4.0\n"
        f"o2,mug,{a},2025-01-02T11:00:00,1,8.5\no2,tea,{a},2025-01-02T11:00:00,1,4.0\n"
        f"o3,mug,,2025-01-03T12:00:00,1,8.5\no4,kettle,{GONE},2025-01-04T09:00:00,1,30\n"
        f"o4,tea,{GONE},2025-01-04T09:00:00,1,4.0\no5,spoon,{b},2025-01-05T09:00:00,3,1.5\n"
        f"o6,tea,{b},2025-02-05T09:00:00,1,4.0\no7,mug,{a},2025-02-07T09:00:00,1,8.5\n"
        f"o8,mug,{GONE},not a date,1,8.5\n")
    (raw / "catalog.csv").write_text(
        "product_id,name,category,price\nmug,Mug,Home,8.5\ntea,Tea,Food,4.0\n"
        "kettle,Kettle,Home,30\nspoon,Spoon,Home,1.5\n")
    (raw / "events.csv").write_text(
        "product_id,event_type,occurred_at,session_id,customer_id\n"
        f"mug,view,2025-01-01T09:55:00,{SESSION},{GONE}\n"
        f"tea,view,2025-01-01T09:57:00,{SESSION},\n"
        f"mug,view,2025-01-02T10:00:00,s2,{a}\ntea,view,2025-01-02T10:01:00,s2,{a}\n")
    config = tmp / "recsys.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n[ingest]\norders = "{raw / "orders.csv"}"\n'
        f'events = "{raw / "events.csv"}"\ncatalog = "{raw / "catalog.csv"}"\n'
        # the shared test database holds other tests' events: train on the files alone
        f'server_events = false\n[popularity]\nwindow_days = 0\n'
        f'[artifacts]\nroot = "{tmp / "artifacts"}"\nkeep_last = 2\n'
        f'[serving]\ndatabase_url = "{database_url}"\n')
    return config


def store_events(database_url: str) -> None:
    store = ServingStore(database_url)
    try:
        for event in ({"event_type": "view", "product_id": "mug", "customer_id": GONE},
                      {"event_type": "click", "product_id": "tea", "session_id": SESSION},
                      {"event_type": "purchase", "product_id": "mug", "customer_id": GONE,
                       "session_id": SESSION, "order_id": "o99", "price": 8.5},
                      {"event_type": "view", "product_id": "mug", "customer_id": KEPT[0]}):
            store.add_event(event)
    finally:
        store.dispose()


def findable(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` holding a needle in their bytes or, for Parquet, any cell."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes()
        if path.suffix == ".parquet":
            text += repr(pq.read_table(path).to_pylist()).encode()
        found += [f"{path}: {n}" for n in needles if n.encode() in text]
    return found


def purchases_of(folder: Path) -> dict[str, list[tuple[int, int]]]:
    """customer id -> [(product code, last day)] from a version's purchase CSR."""
    ids = Vocabulary.load(folder / "customers.parquet").ids.tolist()
    bought = load_npz(folder / "purchases.npz")
    ptr = bought["indptr"]
    return {c: list(zip(bought["indices"][ptr[i]:ptr[i + 1]].tolist(),
                        bought["last_day"][ptr[i]:ptr[i + 1]].tolist(), strict=True))
            for i, c in enumerate(ids)}


def run_forget(tmp: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_shop(tmp, database_url)
    for _ in range(2):
        assert main(["-q", "run", "--config", str(config)]) == 0
    store_events(database_url)
    log = tmp / "access.log"
    log.write_text(
        json.dumps({"path": f"/v1/customers/{GONE}/recommendations", "status": 200}) + "\n"
        + json.dumps({"path": "/v1/popular", "query": f"customer_id={GONE}&k=3"}) + "\n"
        + json.dumps({"path": f"/v1/customers/{KEPT[0]}/recommendations"}) + "\n")
    store = ArtifactStore(tmp / "artifacts")
    old, current = store.versions()
    assert findable(tmp / "artifacts", [GONE]) and findable(tmp / "data", [GONE, SESSION])
    before = purchases_of(store.path(current))
    capsys.readouterr()

    assert main(["-q", "forget", "--config", str(config), "--access-log", str(log), GONE]) == 0
    out = capsys.readouterr().out
    assert GONE not in out and SESSION not in out
    report = json.loads(out)
    assert report["customers"] == 1
    assert report["rows"] == {
        "access log access.log": 2, "artifacts: analytics/customer_segments.parquet": 2,
        "artifacts: analytics/customers.parquet": 2,
        "artifacts: analytics/discount_customers.parquet": 2,
        "artifacts: analytics/lifecycle.parquet": 2,
        "artifacts: analytics/recommendations.parquet": 2, "artifacts: customers.parquet": 2,
        "artifacts: purchases.npz": 6, "data: events.parquet": 2, "data: orders.parquet": 4,
        "data: quarantine/orders.csv": 1, "database: events": 3}
    assert findable(tmp / "artifacts", [GONE, SESSION]) == []
    assert findable(tmp / "data", [GONE, SESSION]) == []
    assert GONE not in log.read_text() and KEPT[0] in log.read_text()

    assert store.versions()[0] == old and report["versions"][old] == old  # rewritten in place
    assert len(store.versions()) == 2  # keep_last = 2: the erasure pruned no version
    new = store.current_version()
    assert new != current and report["versions"][current] == new and current not in (
        store.versions())
    for version in store.versions():
        check_loads(store.root, version)
    after = purchases_of(store.path(new))
    assert GONE not in after and after == {c: v for c, v in before.items() if c != GONE}
    als = load_npz(store.path(new) / "als.npz")
    assert als["user_factors"].shape[0] == len(KEPT)
    assert np.array_equal(load_npz(store.path(new) / "purchases.npz")["shape"], [2, 4])

    recorded = erasures(database_url)[-1]
    assert recorded["customers"] == 1 and recorded["rows"] == report["rows"]
    assert GONE not in json.dumps(recorded, default=str)

    assert main(["-q", "forget", "--config", str(config), GONE]) == 0  # nothing left to do
    assert json.loads(capsys.readouterr().out)["rows"] == {}
    assert store.current_version() == new


def test_forget_everywhere_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database_url = f"sqlite:///{tmp_path / 'recsys.db'}"
    run_forget(tmp_path, database_url, capsys)
    assert GONE.encode() not in (tmp_path / "recsys.db").read_bytes()
    assert SESSION.encode() not in (tmp_path / "recsys.db").read_bytes()
    assert ServingStore(database_url).count_events(customer_id=KEPT[0]) == 1


@pytest.mark.services
def test_forget_everywhere_postgres(postgres_url: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import create_engine, text

    run_forget(tmp_path, postgres_url, capsys)
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        rows: int = conn.execute(
            text("SELECT count(*) FROM recsys_events WHERE customer_id = :c "
                 "OR session_id = :s OR cast(recsys_events AS text) LIKE :p"),
            {"c": GONE, "s": SESSION, "p": f"%{GONE}%"}).scalar_one()
        kept: int = conn.execute(
            text("SELECT count(*) FROM recsys_events WHERE customer_id = :c"),
            {"c": KEPT[0]}).scalar_one()
        conn.execute(text("DELETE FROM recsys_events WHERE customer_id = :c"), {"c": KEPT[0]})
        conn.commit()
    engine.dispose()
    assert rows == 0 and kept == 1


def test_forget_with_the_database_down_fails_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_shop(tmp_path, "postgresql+psycopg://postgres:pw-Xy7@127.0.0.1:1/test")
    assert main(["-q", "run", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["-q", "forget", "--config", str(config), GONE]) == 1
    err = capsys.readouterr().err
    assert "refused the erasure" in err and "127.0.0.1:1" in err and "pw-Xy7" not in err
    assert "Traceback" not in err
    assert findable(tmp_path / "data", [GONE])  # nothing was erased: it can be retried


def test_forget_checks_its_arguments_before_erasing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_shop(tmp_path, f"sqlite:///{tmp_path / 'recsys.db'}")
    store_events(f"sqlite:///{tmp_path / 'recsys.db'}")
    missing = tmp_path / "no-such.log"
    assert main(["-q", "forget", "--config", str(config), "--access-log", str(missing),
                 GONE]) == 1
    assert f"access log(s) not found: {missing}" in capsys.readouterr().err
    assert main(["-q", "forget", "--config", str(config), " "]) == 1
    assert "none of them empty" in capsys.readouterr().err
    assert ServingStore(f"sqlite:///{tmp_path / 'recsys.db'}").count_events(
        customer_id=GONE) == 2
