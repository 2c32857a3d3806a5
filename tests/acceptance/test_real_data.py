"""Real-data acceptance: each shared dataset with orders through `recsys run` with the default
settings, then what a merchandiser and a shop would see checked against invariants that hold
whatever the data: numbers finite and in range, bundles that are real associations, only the
source's products, names where the source has them, no empty list, pages that render offline.

Expected values are recomputed here from the raw files or the accepted order lines, never read
back from the code under test.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import sparse

from recsys.analytics.report import build_report
from recsys.mapping import load_mapping
from tests.acceptance.conftest import MAPPINGS, PASSWORD, Served
from tests.conftest import DATASETS as DATASETS_DIR

pytestmark = [pytest.mark.acceptance, pytest.mark.datasets, pytest.mark.slow]

DAYS_PER_YEAR = 365.25
FIRST_RULES_PAGE_S = 5.0  # issue 16 asks for 1 s; 5 leaves room for a busy CI machine
REPORT_PAGE_S = 60


# -- helpers -------------------------------------------------------------------------------------


def _finite(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array)
    assert not bad.any(), f"{what}: {int(bad.sum()):,} of {array.size:,} values not finite"
    return array


def _numbers(tree: Any, path: str = "") -> list[tuple[str, float]]:
    """Every float in a JSON-like tree with its path."""
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in _numbers(v, f"{path}.{k}")]
    if isinstance(tree, list):
        return [n for i, v in enumerate(tree) for n in _numbers(v, f"{path}[{i}]")]
    if isinstance(tree, float):
        return [(path, tree)]
    return []


def _source_products(served: Served) -> set[str]:
    """Every product id in the raw source files (orders and catalog), read here with pandas."""
    mapping = load_mapping(MAPPINGS / f"{served.dataset.name}.toml")
    ids: set[str] = set()
    for table, part in (("orders", served.dataset.orders), ("catalog", served.dataset.catalog)):
        if part is None:
            continue
        column = mapping.for_table(table).columns.get("product_id", "product_id")
        path = DATASETS_DIR / part
        raw = (pd.read_parquet(path, columns=[column]) if path.suffix == ".parquet"
               else pd.read_csv(path, usecols=[column], dtype=str))
        ids |= set(raw[column].dropna().astype(str).str.strip())
    return ids


def _baskets(served: Served) -> tuple[sparse.csr_matrix, pd.Index]:
    """Orders x products (0/1, CSR) of the accepted lines, bulk orders left out as mining does."""
    lines = served.orders[["order_id", "product_id"]].drop_duplicates()
    orders = pd.Index(lines["order_id"].unique())
    products = pd.Index(lines["product_id"].unique())
    matrix = sparse.csr_matrix(
        (np.ones(len(lines), dtype=np.int64),
         (orders.get_indexer(lines["order_id"]), products.get_indexer(lines["product_id"]))),
        shape=(len(orders), len(products)))
    max_items = served.config.rules.max_basket_items
    return matrix[np.asarray(matrix.sum(axis=1)).ravel() <= max_items], products


def _top_sellers(served: Served, n: int = 3) -> list[str]:
    counts = served.orders.drop_duplicates(["order_id", "product_id"])["product_id"]
    return counts.value_counts().index[:n].astype(str).tolist()


def _sample(served: Served) -> list[str]:
    return list(dict.fromkeys([*served.dataset.known, *_top_sellers(served)]))


def _check_items(items: list[dict[str, Any]], served: Served, where: str) -> None:
    assert items, f"{where}: empty list"
    for item in items:
        assert isinstance(item["score"], float | int) and math.isfinite(item["score"]), where
        if item.get("price") is not None:
            assert math.isfinite(item["price"]) and item["price"] >= 0, where
        if served.dataset.names:
            assert item.get("name"), f"{where}: {item['product_id']} shown without a name"


# -- the pipeline ran on the source's data, and only on it ----------------------------------------


def test_the_run_used_only_the_configured_sources(served: Served) -> None:
    """No demo file was ingested: the manifest names only the dataset's files, and every product
    in the artifact is one of the source's (read here from the raw files)."""
    sources = served.manifest.inputs["sources"]
    assert set(sources) == {"orders"} | ({"catalog"} if served.dataset.catalog else set())
    assert all(Path(p).resolve().is_relative_to(DATASETS_DIR.resolve())
               for p in sources.values())
    assert not (Path(served.config.data_dir) / "events.parquet").exists()
    source = _source_products(served)
    items = set(pd.read_parquet(served.version_dir / "items.parquet")["id"].astype(str))
    assert items <= source, f"not from the source: {sorted(items - source)[:10]}"
    assert set(served.orders["product_id"]) <= items
    version = served.version_dir
    popular = set(pd.read_parquet(version / "popular.parquet")["product_id"].astype(str))
    assert popular <= items
    rules = pq.read_table(version / "rules.parquet", columns=["antecedents", "consequents"])
    for column in ("antecedents", "consequents"):
        named = pc.unique(pc.list_flatten(rules.column(column))).to_pylist()
        assert set(map(str, named)) <= items
    bundles = pd.read_parquet(version / "bundles.parquet")
    if len(bundles):
        assert set(np.concatenate(bundles["products"].to_numpy()).astype(str)) <= items


def test_names_where_the_source_has_them(served: Served) -> None:
    catalog = served.catalog
    if not served.dataset.names:
        pytest.skip(f"{served.dataset.name} has no product names")
    assert catalog is not None and "name" in catalog
    named = catalog.set_index("product_id")["name"]
    ordered = pd.Index(served.orders["product_id"].unique())
    share = named.reindex(ordered).notna().mean()
    assert share > 0.99, f"only {share:.1%} of ordered products have a name"
    if served.dataset.name == "online_retail_ii":
        assert named["85123A"] == "WHITE HANGING HEART T-LIGHT HOLDER"
        assert named["22423"] == "REGENCY CAKESTAND 3 TIER"
    search = served.dataset.search
    assert search is not None
    assert named.str.contains(search, case=False, na=False).any()


# -- every number finite and in range -------------------------------------------------------------


def test_manifest_figures_are_finite(served: Served) -> None:
    bad = [(p, v) for p, v in _numbers(served.manifest.metrics) if not math.isfinite(v)]
    assert bad == []


def test_rule_measures_are_finite_and_consistent(served: Served) -> None:
    """Every rule's measures recomputed from its integer counts: support = count / N,
    confidence = count / antecedent count, lift = confidence / consequent support; ranges of
    the others as recsys/rules/mining.py documents them."""
    rules = pd.read_parquet(served.version_dir / "rules.parquet", columns=[
        "count", "antecedent_count", "consequent_count", "support", "confidence", "lift",
        "leverage", "conviction", "zhangs_metric", "jaccard", "kulczynski", "fisher_p"])
    report = json.loads((served.version_dir / "rules_report.json").read_text())
    n = served.manifest.metrics["rules"]["n_orders"]
    assert report.get("n_orders", n) == n
    if rules.empty:
        return
    count = rules["count"].to_numpy(np.int64)
    ante = rules["antecedent_count"].to_numpy(np.int64)
    cons = rules["consequent_count"].to_numpy(np.int64)
    assert (count >= 1).all() and (count <= ante).all() and (count <= cons).all()
    assert (ante <= n).all() and (cons <= n).all()
    for column in ("support", "confidence", "lift", "leverage", "zhangs_metric", "jaccard",
                   "kulczynski", "fisher_p"):
        _finite(rules[column], f"rules.{column}")
    np.testing.assert_allclose(rules["support"], count / n, rtol=1e-12)
    np.testing.assert_allclose(rules["confidence"], count / ante, rtol=1e-12)
    np.testing.assert_allclose(rules["lift"], (count / ante) / (cons / n), rtol=1e-9)
    assert ((rules["fisher_p"] >= 0) & (rules["fisher_p"] <= 1)).all()
    assert (rules["leverage"].abs() <= 0.25).all()
    assert ((rules["jaccard"] >= 0) & (rules["jaccard"] <= 1)).all()
    assert ((rules["kulczynski"] >= 0) & (rules["kulczynski"] <= 1)).all()
    assert (rules["zhangs_metric"].abs() <= 1 + 1e-12).all()
    conviction = rules["conviction"].to_numpy(np.float64)
    certain = count == ante  # confidence 1: conviction is infinite by definition
    _finite(conviction[~certain], "rules.conviction")
    assert (conviction[~certain] >= 0).all() and np.isposinf(conviction[certain]).all()


def test_customer_value_is_finite_and_in_range(served: Served) -> None:
    """The BTYD invariants of issue 16: every prediction finite, 0 <= E[purchases in t] <=
    (r + x) / (alpha + T) * t, P(alive) in [0, 1], predicted CLV >= 0 where spend is positive.
    Every broken invariant is listed, with how many customers break it."""
    if not served.dataset.customers:
        assert "skipped" in served.manifest.metrics["customer_value"]
        return
    folder = served.version_dir / "analytics"
    customers = pd.read_parquet(folder / "customers.parquet")
    report = json.loads((folder / "clv_report.json").read_text())
    assert len(customers) > 0
    bgnbd = report.get("bgnbd")
    assert bgnbd is not None, "no BG/NBD fit"
    t = report["horizon_months"] * DAYS_PER_YEAR / 12 / 7  # the horizon in weeks
    bound = ((bgnbd["r"] + customers["frequency"].to_numpy(np.float64))
             / (bgnbd["alpha"] + customers["T_weeks"].to_numpy(np.float64)) * t)
    values = {c: customers[c].to_numpy(np.float64) for c in (
        "revenue", "historical_clv", "p_alive", "expected_purchases", "expected_order_value",
        "predicted_clv")}
    spent = values["revenue"] > 0
    broken = {f"{c} not finite": ~np.isfinite(v) for c, v in values.items()}
    broken |= {
        "p_alive outside [0, 1]": ~((values["p_alive"] >= 0) & (values["p_alive"] <= 1)),
        "historical_clv < 0": values["historical_clv"] < 0,
        "expected_purchases < 0": values["expected_purchases"] < 0,
        "expected_purchases > (r + x) / (alpha + T) t":
            values["expected_purchases"] > bound * (1 + 1e-9),
        "predicted_clv < 0 with positive spend": spent & (values["predicted_clv"] < 0),
    }
    found = {what: int(mask.sum()) for what, mask in broken.items() if mask.any()}
    total = report["predicted_clv_total"]
    if not (isinstance(total, float | int) and math.isfinite(total) and total >= 0):
        found["predicted_clv_total"] = total
    assert found == {}, f"of {len(customers):,} customers: {found}"


def test_neighbour_scores_are_finite(served: Served) -> None:
    for folder in ("also_viewed", "bought_together", "bought_together_knn"):
        scores = served.version_dir / folder / "scores.npy"
        if scores.exists():
            _finite(np.load(scores, mmap_mode="r"), f"{folder}/scores.npy")
    popular = pd.read_parquet(served.version_dir / "popular.parquet")
    assert (popular["orders"] >= 1).all()
    assert (_finite(popular["revenue"], "popular.revenue") >= 0).all()


def test_every_bundle_pair_is_bought_together_more_than_chance(served: Served) -> None:
    """Lift of every pair of products in every bundle, counted here on the accepted orders."""
    bundles = pd.read_parquet(served.version_dir / "bundles.parquet")
    if bundles.empty:
        return
    _finite(bundles["expected_gain"], "bundles.expected_gain")
    matrix, products = _baskets(served)
    n = matrix.shape[0]
    columns = matrix.tocsc()
    weak = []
    for members in bundles["products"]:  # a loop over at most a few thousand bundles
        idx = products.get_indexer(np.asarray(members, dtype=object))
        assert (idx >= 0).all()
        sub = columns[:, idx]
        together = (sub.T @ sub).toarray()
        single = np.diag(together).astype(np.float64)
        lift = together * n / np.outer(single, single)
        i, j = np.triu_indices(len(idx), k=1)
        if (lift[i, j] <= 1).any():
            weak.append((list(members), float(lift[i, j].min())))
    assert weak == [], f"{len(weak)} of {len(bundles)} bundles hold a pair with lift <= 1: " \
                       f"{weak[:3]}"


# -- the API: a non-empty list everywhere, with names ------------------------------------------


def test_every_list_endpoint_answers_for_known_products(served: Served) -> None:
    body = served.get("/v1/popular", k=10)
    _check_items(body["items"], served, "popular")
    for product in _sample(served):
        for endpoint in ("also-viewed", "bought-together"):
            body = served.get(f"/v1/items/{product}/{endpoint}", k=10)
            _check_items(body["items"], served, f"{endpoint} of {product}")
            assert product not in {i["product_id"] for i in body["items"]}
    cart = [{"product_id": p, "quantity": 1} for p in _sample(served)[:2]]
    response = served.client.post("/v1/cart/add-ons", json={"items": cart}, params={"k": 10})
    assert response.status_code == 200, response.text
    _check_items(response.json()["items"], served, "cart add-ons")


def test_bundles_endpoint_serves_the_mined_bundles(served: Served) -> None:
    bundles = pd.read_parquet(served.version_dir / "bundles.parquet")
    if bundles.empty:
        pytest.skip(f"{served.dataset.name}: no bundles mined (no prices or too few orders)")
    items = pd.read_parquet(served.version_dir / "items.parquet")["id"].astype(str)
    members = pd.Series(np.concatenate(bundles["products"].to_numpy()).astype(str))
    holding = members.value_counts().index[:3].tolist()
    assert set(holding) <= set(items)
    for product in holding:
        body = served.get(f"/v1/items/{product}/bundles", k=5)
        assert body["bundles"], f"no bundle served for {product}"
        for bundle in body["bundles"]:
            ids = [p["product_id"] for p in bundle["products"]]
            assert product in ids and len(ids) == len(set(ids)) >= 2
            assert math.isfinite(bundle["expected_gain"]) and bundle["expected_gain"] >= 0


def test_customer_lists_are_never_empty(served: Served) -> None:
    customers = ["nobody-known-here"]
    if served.dataset.customers:
        buyers = served.orders.dropna(subset=["customer_id"])
        customers += buyers["customer_id"].value_counts().index[:2].tolist()
    for customer in customers:
        body = served.get(f"/v1/customers/{customer}/recommendations", k=10)
        _check_items(body["items"], served, f"recommendations for {customer}")


# -- pages in Chromium: render, no script error, no request outside the server -----------------


def _watch(page: Any, allowed: tuple[str, ...]) -> list[str]:
    """Script errors, console errors (CSP violations), requests to anywhere but ``allowed``
    and failed responses, collected as the page runs. The browser's own favicon request is no
    page's doing (issue 16 item 13 is about it): a failed load of it is not counted."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(allowed)
            else problems.append(f"request outside the server: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    return problems


def test_console_pages_render_in_chromium(served: Served, page: Any) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from tests.browser import live_server

    with live_server(served.new_app(), timeout=120) as base:  # loads the whole artifact
        problems = _watch(page, (base, "data:", "about:", "blob:"))
        page.goto(f"{base}/console/rules")
        page.get_by_label("User name").fill("ann")
        page.get_by_label("Password").fill(PASSWORD)
        started = time.monotonic()
        page.get_by_role("button", name="Sign in").click(timeout=120_000)
        page.wait_for_url(f"{base}/console/rules", timeout=120_000)
        took = time.monotonic() - started
        if took >= FIRST_RULES_PAGE_S:  # listed with the other problems; the pages go on
            problems.append(f"signing in to the first /console/rules page took {took:.1f} s "
                            "(issue 16 item 4)")
        rules = served.manifest.metrics["rules"]["rules"]
        if rules:
            assert page.locator("tr.rule").count() > 0
        search = served.dataset.search
        if search is not None and rules:
            page.goto(f"{base}/console/rules?q={search}")
            shown = page.locator("tr.rule").all_inner_texts()
            assert any(search.lower() in row.lower() for row in shown), \
                f"searching {search!r} found no rule naming it"
        product = served.dataset.known[0]
        page.goto(f"{base}/console/product?id={product}")
        assert product in page.locator("h1").inner_text()
        page.goto(f"{base}/console/flagged")
        assert page.locator("h1").count() >= 1
        try:  # the HTML rules report of the default view, drawn on request
            page.goto(f"{base}/console/rules/report.html", timeout=REPORT_PAGE_S * 1000)
            assert page.locator("h1").count() >= 1
        except PlaywrightTimeout:
            problems.append(f"the console's HTML rules report did not load in {REPORT_PAGE_S} s")
        page.wait_for_load_state("networkidle")
    assert problems == []


def test_customer_value_report_renders_offline(served: Served, page: Any,
                                               tmp_path: Path) -> None:
    if not served.dataset.customers:
        pytest.skip(f"{served.dataset.name}: no customers on the order lines")
    out = build_report(served.config.data_dir, tmp_path / "report.html",
                       config=served.config.analytics)
    url = out.resolve().as_uri()
    problems = _watch(page, (url, "data:", "about:"))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert page.locator("svg").count() >= 3
    assert "NaN" not in page.locator("body").inner_text()
    assert problems == []
