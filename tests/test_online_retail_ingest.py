"""Ingest of the real UCI Online Retail II (2009-2010) export with the shipped mapping.

The expected counts are computed here, independently, with plain pandas on the raw file: the
mapping's rules re-implemented in validate.py's precedence order (cancellation,
non_product_code, non_positive_quantity, non_positive_price).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.cli import main

pytestmark = pytest.mark.datasets

MAPPING = Path(__file__).resolve().parents[1] / "configs" / "mappings" / "online_retail_ii.toml"


@pytest.fixture(scope="module")
def expected(online_retail_path: Path) -> dict[str, object]:
    """Per-row reasons (or None) computed from the raw file and the mapping's rule values."""
    rules = tomllib.loads(MAPPING.read_text(encoding="utf-8"))["orders"]
    cols = rules["columns"]
    raw = pd.read_parquet(online_retail_path)
    # The earlier checks (missing ids, missing or unparseable dates) cannot fire on this file.
    for name in ("order_id", "product_id", "ordered_at"):
        assert raw[cols[name]].notna().all()
    assert pd.to_datetime(raw[cols["ordered_at"]], format="%Y-%m-%d %H:%M:%S").notna().all()

    invoice = raw[cols["order_id"]].astype(str).str.strip()
    code = raw[cols["product_id"]].astype(str).str.strip()
    codes = {c.strip().upper() for c in rules["non_product_codes"]}
    pattern = re.compile(rules["non_product_pattern"])
    is_code = {c: c.upper() in codes or pattern.fullmatch(c) is not None for c in code.unique()}

    cancellation = invoice.str.startswith(rules["cancellation_prefix"]).to_numpy()
    non_product = code.map(is_code).to_numpy(dtype=bool)
    non_pos_qty = (raw[cols["quantity"]] <= 0).to_numpy()
    non_pos_price = (raw[cols["unit_price"]] <= 0).to_numpy()
    reason = np.select(
        [cancellation, non_product, non_pos_qty, non_pos_price],
        ["cancellation", "non_product_code", "non_positive_quantity", "non_positive_price"],
        default="")
    good = reason == ""
    return {"raw": raw, "reason": reason, "good": good, "columns": cols}


@pytest.fixture(scope="module")
def ingested(online_retail_path: Path, tmp_path_factory: pytest.TempPathFactory,
             ) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("online_retail") / "data"
    # Through the CLI, once per module (capsys is function-scoped, so redirect by hand).
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["-q", "ingest", "--orders", str(online_retail_path), "--mapping",
                     str(MAPPING), "--out", str(out)])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue()


def test_known_figures_of_the_raw_file(expected: dict[str, object]) -> None:
    """The reference figures the shared datasets README gives for this file."""
    reason = expected["reason"]
    assert isinstance(reason, np.ndarray)
    assert len(reason) == 525_461
    assert int((reason == "cancellation").sum()) == 10_206


def test_counts_match_an_independent_computation(expected: dict[str, object],
                                                 ingested: tuple[Path, str]) -> None:
    out, console = ingested
    reason = expected["reason"]
    assert isinstance(reason, np.ndarray)
    want = {str(r): int(n) for r, n in zip(*np.unique(reason[reason != ""], return_counts=True),
                                           strict=True)}
    assert set(want) == {"cancellation", "non_product_code", "non_positive_quantity",
                         "non_positive_price"}
    n_rejected = sum(want.values())

    data = json.loads((out / "report.json").read_text())
    rep = data["tables"]["orders"]
    assert rep["rows_read"] == data["rows_read"] == 525_461
    assert rep["rejected_by_reason"] == data["rejected_by_reason"] == want
    assert rep["rejected_by_reason"]["cancellation"] == 10_206
    assert rep["rows_rejected"] == n_rejected
    assert rep["rows_accepted"] == 525_461 - n_rejected
    assert rep["rows_read"] == rep["rows_accepted"] + rep["rows_rejected"]

    # The console shows the same figures.
    assert (f"orders: 525,461 read, {525_461 - n_rejected:,} accepted, {n_rejected:,} rejected"
            in console)
    for r, n in want.items():
        assert f"    {r}: {n:,}" in console


def test_quarantine_holds_exactly_the_rejected_rows(expected: dict[str, object],
                                                    ingested: tuple[Path, str]) -> None:
    out = ingested[0]
    reason = expected["reason"]
    raw = expected["raw"]
    cols = expected["columns"]
    assert isinstance(reason, np.ndarray) and isinstance(raw, pd.DataFrame)
    assert isinstance(cols, dict)
    quarantine = pd.read_csv(out / "quarantine" / "orders.csv", dtype=str,
                             keep_default_na=False)
    rows = quarantine["row"].astype(int).to_numpy()
    assert len(np.unique(rows)) == len(rows)
    want_rows = np.flatnonzero(reason != "") + 1  # 1-based row numbers in the file
    assert np.array_equal(np.sort(rows), want_rows)
    got = pd.Series(quarantine["reason"].to_numpy(), index=rows).sort_index()
    assert np.array_equal(got.to_numpy(), reason[want_rows - 1])
    # and its raw values are those of the file's rows
    order = np.argsort(rows)
    assert np.array_equal(quarantine[cols["order_id"]].to_numpy()[order],
                          raw[cols["order_id"]].to_numpy()[want_rows - 1].astype(str))
    assert np.array_equal(quarantine[cols["product_id"]].to_numpy()[order],
                          raw[cols["product_id"]].to_numpy()[want_rows - 1].astype(str))


def test_accepted_orders_are_the_good_rows(expected: dict[str, object],
                                           ingested: tuple[Path, str]) -> None:
    out = ingested[0]
    raw, good, cols = expected["raw"], expected["good"], expected["columns"]
    assert isinstance(raw, pd.DataFrame) and isinstance(good, np.ndarray)
    assert isinstance(cols, dict)
    orders = pd.read_parquet(out / "orders.parquet")
    kept = raw.loc[good]
    assert len(orders) == len(kept)
    assert (orders["quantity"] > 0).all() and (orders["unit_price"] > 0).all()
    assert np.array_equal(orders["quantity"].to_numpy(), kept[cols["quantity"]].to_numpy(float))
    assert np.array_equal(orders["product_id"].to_numpy(str),
                          kept[cols["product_id"]].str.strip().to_numpy(str))
    # Customer ids: float 13085.0 in the file, "13085" after ingest; missing stays missing.
    customers = kept[cols["customer_id"]]
    assert orders["customer_id"].isna().sum() == customers.isna().sum()
    want_ids = customers.dropna().astype("int64").astype(str).to_numpy()
    assert np.array_equal(orders["customer_id"].dropna().to_numpy(str), want_ids)
    assert orders["ordered_at"].min() == pd.Timestamp("2009-12-01 07:45:00")
    assert orders["ordered_at"].max() <= pd.Timestamp("2010-12-10")


def test_catalog_derived_from_the_order_lines(expected: dict[str, object],
                                              ingested: tuple[Path, str]) -> None:
    """Every accepted stock code gets its most frequent Description and median Price (computed
    here independently), so names can be shown and searched (CAKESTAND finds 22423)."""
    out, console = ingested
    raw, good, cols = expected["raw"], expected["good"], expected["columns"]
    assert isinstance(raw, pd.DataFrame) and isinstance(good, np.ndarray)
    assert isinstance(cols, dict)
    kept = raw.loc[good].assign(code=lambda f: f[cols["product_id"]].str.strip(),
                                name=lambda f: f["Description"].str.strip())
    named = kept[kept["name"].notna() & (kept["name"] != "")]
    counts = named.groupby(["code", "name"]).size().rename("n").reset_index()
    counts = counts.sort_values(["code", "n", "name"], ascending=[True, False, True])
    want_names = counts.drop_duplicates("code").set_index("code")["name"]
    want_prices = kept.groupby("code")[cols["unit_price"]].median()

    catalog = pd.read_parquet(out / "catalog.parquet").set_index("product_id")
    assert catalog.index.is_unique
    assert set(catalog.index) == set(kept["code"])
    assert catalog["name"].dropna().to_dict() == want_names.to_dict()
    assert np.array_equal(catalog["price"].reindex(want_prices.index).to_numpy(),
                          want_prices.to_numpy())
    assert catalog["name"].notna().mean() > 0.99
    assert catalog.loc["85123A", "name"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert catalog.loc["85123A", "price"] == 2.95
    cakestands = catalog.index[catalog["name"].str.contains("CAKESTAND", na=False)]
    assert "22423" in cakestands  # REGENCY CAKESTAND 3 TIER

    note = json.loads((out / "report.json").read_text())["derived_catalog"]
    assert note["products"] == len(catalog) and note["from_catalog_file"] == 0
    assert note["name"]["from"] == "Description" and note["price"]["from"] == "Price"
    assert f"catalog: {len(catalog):,} products derived from the order lines" in console
