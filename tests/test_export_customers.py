"""`recsys export-customers`: columns, filters, top-k, chunking, CSV / Parquet / PostgreSQL, bad
input; end to end from `recsys run` (twice: the second run's flows read the first)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.analytics.export import ExportRequest, export_customers
from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.errors import InputError
from tests.conftest import write_small_config


def _folder(tmp: Path) -> tuple[Path, Path]:
    """A hand-made analytics folder (5 customers) and a catalog with names."""
    folder = tmp / "analytics"
    folder.mkdir()
    ids = ["a", "b", "c", "d", "e"]
    pd.DataFrame({
        "customer_id": pd.array(ids, dtype="string"),
        "segment": ["champions", "at_risk", "lost", "at_risk", "loyal"],
        "orders": [5, 2, 1, 3, 4], "revenue": [500.0, 80.0, 10.0, 120.0, 300.0],
        "first_order": pd.to_datetime(["2024-01-01"] * 5),
        "last_order": pd.to_datetime(["2024-12-01", "2024-08-01", "2024-02-01", "2024-09-15",
                                      "2024-11-20"]),
        "recency_days": [30.0, 152.0, 334.0, 107.0, 41.0],
        "historical_clv": [900.0, 150.0, 20.0, 210.0, 600.0],
        "predicted_clv": [400.0, 35.5, 0.0, 60.25, 250.0],
        "p_alive": [0.95, 0.4, 0.05, 0.5, 0.9],
        "expected_purchases": [4.0, 0.5, 0.0, 0.8, 3.0],
        "next_order_due": pd.to_datetime(["2025-01-05 13:00", "2024-09-01 00:00", "2024-03-01 00:00",
                                          "2024-10-20 00:00", "2024-12-24 00:00"]),
        "churn_risk": [False, True, True, True, False],
    }).to_parquet(folder / "customers.parquet", index=False)
    pd.DataFrame({"customer_id": ids,
                  "stage": ["stable", "at_risk", "churned", "declining", "growing"]}
                 ).to_parquet(folder / "lifecycle.parquet", index=False)
    pd.DataFrame({"customer_id": ids, "rec_1": ["p1", "p2", "p1", "p3", None],
                  "rec_2": ["p2", "p9", "p3", "p1", None], "rec_3": ["p3", "p1", None, None, None]}
                 ).to_parquet(folder / "recommendations.parquet", index=False)
    catalog = tmp / "catalog.parquet"
    pd.DataFrame({"product_id": ["p1", "p2", "p3"], "name": ["Mug", "Tea, green", "Pot"]}
                 ).to_parquet(catalog, index=False)
    return folder, catalog



def _server_config(tmp_path: Path, *, blocked: str, more: str = "") -> Path:
    """A config whose server database (SQLite in ``tmp_path``) blocks product ``blocked``."""
    from recsys.serving.store import ServingStore

    database = f"sqlite:///{tmp_path / 'recsys.db'}"
    config = tmp_path / "recsys.toml"
    config.write_text(f'[serving]\ndatabase_url = "{database}"\n{more}')
    store = ServingStore(database)
    store.add_decision("block_product", product_id=blocked, created_by="test")
    store.dispose()
    return config

def test_csv_with_filters_columns_and_top_k_over_several_chunks(tmp_path: Path) -> None:
    folder, catalog = _folder(tmp_path)
    out = tmp_path / "out" / "winback.csv"
    request = ExportRequest(out=str(out), format="csv", stages=("declining", "at_risk"),
                            columns=("customer_id", "stage", "predicted_clv", "next_order_due",
                                     "recommendations"), top_k=2, chunk_rows=2)
    assert export_customers(folder, request, catalog=catalog) == 2
    table = pd.read_csv(out, keep_default_na=False)
    assert table.columns.tolist() == ["customer_id", "stage", "predicted_clv", "next_order_due",
                                      "rec_1_id", "rec_1_name", "rec_2_id", "rec_2_name"]
    assert table.to_dict("records") == [
        {"customer_id": "b", "stage": "at_risk", "predicted_clv": 35.5,
         "next_order_due": "2024-09-01", "rec_1_id": "p2", "rec_1_name": "Tea, green",
         "rec_2_id": "p9", "rec_2_name": ""},  # p9 is not in the catalog: no name
        {"customer_id": "d", "stage": "declining", "predicted_clv": 60.25,
         "next_order_due": "2024-10-20", "rec_1_id": "p3", "rec_1_name": "Pot",
         "rec_2_id": "p1", "rec_2_name": "Mug"}]
    assert not list(out.parent.glob(".*tmp"))


def test_parquet_by_segment_keeps_types_and_only_the_columns_asked(tmp_path: Path) -> None:
    folder, catalog = _folder(tmp_path)
    out = tmp_path / "at_risk.parquet"
    request = ExportRequest(out=str(out), format="parquet", segments=("at_risk", "lost"),
                            columns=("churn_risk", "customer_id", "p_alive", "orders"),
                            chunk_rows=3)
    assert export_customers(folder, request, catalog=catalog) == 3
    table = pq.read_table(out)
    assert table.column_names == ["churn_risk", "customer_id", "p_alive", "orders"]
    assert str(table.schema.field("churn_risk").type) == "bool"
    assert table.column("customer_id").to_pylist() == ["b", "c", "d"]
    assert table.column("orders").to_pylist() == [2, 1, 3]


def test_default_columns_on_every_customer(tmp_path: Path) -> None:
    folder, catalog = _folder(tmp_path)
    out = tmp_path / "all.csv"
    assert export_customers(folder, ExportRequest(out=str(out), format="csv", top_k=3),
                            catalog=catalog) == 5
    header = out.read_text().splitlines()[0]
    assert header == ('"customer_id","segment","stage","historical_clv","predicted_clv",'
                      '"p_alive","next_order_due","churn_risk","rec_1_id","rec_1_name",'
                      '"rec_2_id","rec_2_name","rec_3_id","rec_3_name"')


@pytest.mark.parametrize(("change", "message"), [
    ({"columns": ("customer_id", "email")}, "unknown column(s) email"),
    ({"segments": ("vip",)}, "unknown segment(s) vip"),
    ({"stages": ("sleeping",)}, "unknown stage(s) sleeping"),
    ({"top_k": 4}, "--top-k must be 1..3"),
    ({"columns": ()}, "no columns"),
    ({"format": "sql"}, "needs --out URL#table"),
])
def test_bad_requests_are_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    folder, catalog = _folder(tmp_path)
    request = ExportRequest(**{"out": str(tmp_path / "x.csv"), "format": "csv",
                               "top_k": 3, **change})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        export_customers(folder, request, catalog=catalog)
    assert not (tmp_path / "x.csv").exists()


def test_tables_of_different_runs_are_refused(tmp_path: Path) -> None:
    folder, catalog = _folder(tmp_path)
    pd.DataFrame({"customer_id": ["a", "c", "b", "d", "e"], "stage": ["new"] * 5}).to_parquet(
        folder / "lifecycle.parquet", index=False)
    with pytest.raises(InputError, match="same customers in the same order"):
        export_customers(folder, ExportRequest(out=str(tmp_path / "x.csv"), format="csv",
                                               top_k=3), catalog=catalog)
    assert not (tmp_path / "x.csv").exists()


def test_to_postgresql_create_fail_replace_append(tmp_path: Path, postgres_url: str,
                                                  pg_table: str) -> None:
    from sqlalchemy import create_engine

    folder, catalog = _folder(tmp_path)
    target = f"{postgres_url}#{pg_table}"
    request = ExportRequest(out=target, format="sql", top_k=2, chunk_rows=2,
                            columns=("customer_id", "stage", "predicted_clv", "last_order",
                                     "churn_risk", "recommendations"))
    assert export_customers(folder, request, catalog=catalog) == 5
    engine = create_engine(postgres_url)
    try:
        rows = pd.read_sql_table(pg_table, engine)
        assert rows["customer_id"].tolist() == ["a", "b", "c", "d", "e"]
        assert rows["predicted_clv"].tolist() == [400.0, 35.5, 0.0, 60.25, 250.0]
        assert rows["churn_risk"].tolist() == [False, True, True, True, False]
        assert rows["last_order"].iloc[0] == pd.Timestamp("2024-12-01")
        kinds = pd.read_sql_query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_name = '{pg_table}'", engine).set_index("column_name")["data_type"]
        assert kinds[["last_order", "churn_risk", "predicted_clv", "rec_1_id"]].tolist() == [
            "date", "boolean", "double precision", "text"]
        assert rows["rec_1_name"].iloc[1] == "Tea, green"
        assert rows["rec_2_name"].isna().iloc[1]  # p9: no name, NULL
        assert rows["rec_1_id"].isna().iloc[4]
        with pytest.raises(InputError, match="already exists"):
            export_customers(folder, request, catalog=catalog)
        replace = ExportRequest(**{**request.__dict__, "if_exists": "replace",
                                   "stages": ("churned",)})
        assert export_customers(folder, replace, catalog=catalog) == 1
        append = ExportRequest(**{**request.__dict__, "if_exists": "append",
                                  "stages": ("growing",)})
        assert export_customers(folder, append, catalog=catalog) == 1
        assert pd.read_sql_table(pg_table, engine)["customer_id"].tolist() == ["c", "e"]
    finally:
        engine.dispose()


def test_end_to_end_from_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_small_config(tmp_path)
    assert main(["-q", "run", "--config", str(config)]) == 0
    assert main(["-q", "run", "--config", str(config)]) == 0
    store = ArtifactStore(tmp_path / "artifacts")
    analytics = store.path() / "analytics"
    flows = pd.read_parquet(analytics / "lifecycle_flows.parquet")
    assert "none" not in set(flows["from_stage"]) and int(flows["customers"].sum()) == 3
    assert store.manifest().metrics["customer_value"]["actions"]["stage_flows_from_previous"]
    out = tmp_path / "export.csv"
    capsys.readouterr()
    assert main(["-q", "export-customers", "--config", str(config), "--format", "csv",
                 "--out", str(out), "--top-k", "2"]) == 0
    assert "exported 3 customers" in capsys.readouterr().out
    table = pd.read_csv(out).set_index("customer_id")
    assert set(table.index) == {"c1", "c2", "c3"}
    assert set(table.loc["c1", ["rec_1_id", "rec_2_id"]]) == {"spoon", "pot"}  # never bought
    names = {"spoon": "Tea Spoon", "pot": "Tea Pot", "mug": "Ceramic Mug", "tea": "Green Tea"}
    assert table.loc["c3", "rec_1_name"] == names[table.loc["c3", "rec_1_id"]]
    assert "kettle" not in set(table[["rec_1_id", "rec_2_id"]].stack())  # out of stock
    assert main(["-q", "export-customers", "--config", str(config), "--format", "csv",
                 "--out", str(out), "--stage", "nope"]) == 1
    assert "unknown stage(s) nope" in capsys.readouterr().err
    listed = tmp_path / "high_value.csv"
    assert main(["-q", "export-customers", "--config", str(config), "--list", "high_value",
                 "--format", "csv", "--out", str(listed)]) == 0
    assert "exported 1 rows of the high_value list" in capsys.readouterr().out
    assert pd.read_csv(listed)["rank"].tolist() == [1]  # the top 5% of 3 customers: one
    assert main(["-q", "export-customers", "--config", str(config), "--list", "winback",
                 "--format", "csv", "--out", str(listed), "--top-k", "2"]) == 1
    assert "--top-k is for --list customers only" in capsys.readouterr().err


def _lists(tmp: Path) -> tuple[Path, Path]:
    folder, catalog = _folder(tmp)
    pd.DataFrame({"customer_id": ["a", "b"], "product_id": ["p1", "p7"],
                  "last_purchase": pd.to_datetime(["2024-12-01", "2024-11-20"]),
                  "cycle_days": [30.0, 45.0],
                  "expected_date": pd.to_datetime(["2024-12-31", "2025-01-04"]),
                  "days_overdue": [0, -4], "status": ["due", "due"]}
                 ).to_parquet(folder / "replenishment.parquet", index=False)
    pd.DataFrame({"customer_id": ["d", "b"], "stage": ["declining", "at_risk"],
                  "predicted_clv": [60.25, 35.5], "offer_1": ["p3", "p2"],
                  "offer_2": ["p1", None], "offers_own": [1, 0]}
                 ).to_parquet(folder / "winback.parquet", index=False)
    pd.DataFrame({"customer_id": pd.Series([], dtype=object), "product_id": [],
                  "status": []}).to_parquet(folder / "empty.parquet", index=False)
    return folder, catalog


def test_action_lists_export_with_product_names_and_filters(tmp_path: Path) -> None:
    from recsys.analytics.export_lists import export_list

    folder, catalog = _lists(tmp_path)
    out = tmp_path / "refill.csv"
    assert export_list(folder, "replenishment", str(out), "csv", catalog=catalog,
                       columns=("customer_id", "product_id", "expected_date")) == 2
    assert pd.read_csv(out, keep_default_na=False).to_dict("records") == [
        {"customer_id": "a", "product_id": "p1", "product_id_name": "Mug",
         "expected_date": "2024-12-31"},
        {"customer_id": "b", "product_id": "p7", "product_id_name": "",  # not in the catalog
         "expected_date": "2025-01-04"}]
    out = tmp_path / "winback.parquet"
    assert export_list(folder, "winback", str(out), "parquet", catalog=catalog,
                       stages=("at_risk",)) == 1
    table = pq.read_table(out)
    assert table.column_names == ["customer_id", "stage", "predicted_clv", "offer_1",
                                  "offer_1_name", "offer_2", "offer_2_name", "offers_own"]
    assert table.to_pylist() == [{"customer_id": "b", "stage": "at_risk", "predicted_clv": 35.5,
                                  "offer_1": "p2", "offer_1_name": "Tea, green",
                                  "offer_2": None, "offer_2_name": None, "offers_own": 0}]


def test_exported_action_lists_leave_blocked_products_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.analytics.export_lists import export_list

    folder, catalog = _lists(tmp_path)
    out = tmp_path / "refill.csv"
    assert export_list(folder, "replenishment", str(out), "csv", blocked=frozenset({"p1"}),
                       columns=("customer_id", "expected_date")) == 1
    assert pd.read_csv(out)["customer_id"].tolist() == ["b"]
    assert export_list(folder, "winback", str(out), "csv", blocked=frozenset({"p1", "p2"})) == 2
    offers = pd.read_csv(out, keep_default_na=False)[["customer_id", "offer_1", "offer_2"]]
    assert offers.values.tolist() == [["d", "p3", ""], ["b", "", ""]]
    # the command reads the blocks from the server's database
    config = _server_config(tmp_path, blocked="p7")
    assert main(["-q", "export-customers", "--config", str(config), "--analytics", str(folder),
                 "--list", "replenishment", "--format", "csv", "--out", str(out)]) == 0
    assert "exported 1 rows" in capsys.readouterr().out
    assert pd.read_csv(out)["product_id"].tolist() == ["p1"]


def test_action_list_bad_requests(tmp_path: Path) -> None:
    from recsys.analytics.export_lists import export_list

    folder, catalog = _lists(tmp_path)
    out = str(tmp_path / "x.csv")
    with pytest.raises(InputError, match="no stage column"):
        export_list(folder, "replenishment", out, "csv", stages=("at_risk",))
    with pytest.raises(InputError, match=r"no column\(s\) email"):
        export_list(folder, "winback", out, "csv", columns=("customer_id", "email"))
    with pytest.raises(InputError, match="unknown list"):
        export_list(folder, "empty", out, "csv")
    with pytest.raises(InputError, match="not found"):
        export_list(folder, "high_value", out, "csv")
    assert not Path(out).exists()


def test_an_empty_list_exports_its_header(tmp_path: Path) -> None:
    from recsys.analytics import export_lists

    folder, _ = _lists(tmp_path)
    (folder / "empty.parquet").rename(folder / "high_value.parquet")
    out = tmp_path / "top.csv"
    assert export_lists.export_list(folder, "high_value", str(out), "csv") == 0
    assert out.read_text().splitlines() == ['"customer_id","product_id","status"']


def test_id_columns_of_different_string_types_still_line_up(tmp_path: Path) -> None:
    import pyarrow as pa

    folder, catalog = _folder(tmp_path)
    stages = pq.read_table(folder / "lifecycle.parquet")
    pq.write_table(stages.cast(pa.schema([("customer_id", pa.large_string()),
                                          ("stage", pa.large_string())])),
                   folder / "lifecycle.parquet")
    out = tmp_path / "x.csv"
    request = ExportRequest(out=str(out), format="csv", columns=("customer_id", "stage"))
    assert export_customers(folder, request, catalog=catalog) == 5


def test_to_sqlite_with_batched_inserts(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    folder, catalog = _folder(tmp_path)
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    request = ExportRequest(out=f"{url}#campaign", format="sql", segments=("at_risk",),
                            columns=("customer_id", "next_order_due", "recommendations"),
                            top_k=1, chunk_rows=1)
    assert export_customers(folder, request, catalog=catalog) == 2
    engine = create_engine(url)
    try:
        rows = pd.read_sql_query("SELECT * FROM campaign ORDER BY customer_id", engine)
    finally:
        engine.dispose()
    assert rows.to_dict("records") == [
        {"customer_id": "b", "next_order_due": "2024-09-01", "rec_1_id": "p2",
         "rec_1_name": "Tea, green"},
        {"customer_id": "d", "next_order_due": "2024-10-20", "rec_1_id": "p3",
         "rec_1_name": "Pot"}]


def test_export_of_a_clv_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.analytics.job import run_clv_job
    from recsys.analytics.settings import AnalyticsConfig

    orders = pd.DataFrame({"order_id": ["1", "2", "3", "4"], "product_id": ["x", "y", "x", "z"],
                           "customer_id": ["A", "A", "B", "C"],
                           "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01",
                                                         "2024-02-03", "2024-02-05"]),
                           "quantity": 1.0, "unit_price": 5.0})
    run_clv_job(orders, None, tmp_path / "clv", config=AnalyticsConfig())
    out = tmp_path / "all.csv"
    assert main(["-q", "export-customers", "--analytics", str(tmp_path / "clv"), "--format",
                 "csv", "--out", str(out), "--top-k", "2",
                 "--columns", "customer_id,orders,recommendations"]) == 0
    assert "exported 3 customers" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert table.columns.tolist() == ["customer_id", "orders", "rec_1_id", "rec_1_name",
                                      "rec_2_id", "rec_2_name"]
    # best sellers the customer never bought: x (2 orders), then y and z (1 each; by id)
    assert table[["customer_id", "orders", "rec_1_id", "rec_2_id"]].values.tolist() == [
        ["A", 2, "z", ""], ["B", 1, "y", "z"], ["C", 1, "x", "y"]]
    assert set(table["rec_1_name"]) == {""}  # no catalog: no names


def test_excluded_products_leave_the_recommendations_and_later_ones_move_up(
        tmp_path: Path) -> None:
    folder, catalog = _folder(tmp_path)
    out = tmp_path / "recs.csv"
    request = ExportRequest(out=str(out), format="csv", top_k=2, chunk_rows=2,
                            columns=("customer_id", "recommendations"), exclude=frozenset({"p1"}))
    assert export_customers(folder, request, catalog=catalog) == 5
    table = pd.read_csv(out, keep_default_na=False)
    assert table[["customer_id", "rec_1_id", "rec_2_id", "rec_2_name"]].values.tolist() == [
        ["a", "p2", "p3", "Pot"], ["b", "p2", "p9", ""], ["c", "p3", "", ""],
        ["d", "p3", "", ""], ["e", "", "", ""]]


def test_the_command_applies_the_watched_catalogue_and_the_blocks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the server would not recommend now: p2 out of stock in the watched catalogue file
    (the overlay every worker applies), p3 blocked in the server's database."""

    folder, catalog = _folder(tmp_path)
    watched = tmp_path / "stock.csv"
    pd.DataFrame({"product_id": ["p2", "p1"], "in_stock": ["false", "true"]}).to_csv(
        watched, index=False)
    config = _server_config(tmp_path, blocked="p3", more=f'catalog_watch = "{watched}"\n')
    out = tmp_path / "recs.csv"
    assert main(["-q", "export-customers", "--config", str(config), "--analytics", str(folder),
                 "--format", "csv", "--out", str(out), "--columns",
                 "customer_id,recommendations", "--top-k", "2"]) == 0
    assert "exported 5 customers" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert table[["rec_1_id", "rec_2_id"]].values.tolist() == [
        ["p1", ""], ["p9", "p1"], ["p1", ""], ["p1", ""], ["", ""]]
    # without the watched file, p2 is recommended again (p3 stays blocked)
    watched.unlink()
    assert main(["-q", "export-customers", "--config", str(config), "--analytics", str(folder),
                 "--format", "csv", "--out", str(out), "--columns",
                 "customer_id,recommendations", "--top-k", "2"]) == 0
    assert "cannot be read" in capsys.readouterr().err
    assert pd.read_csv(out, keep_default_na=False)["rec_1_id"].tolist() == [
        "p1", "p2", "p1", "p1", ""]
