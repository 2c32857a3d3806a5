"""Models: neighbour tables with a known answer, and the demo shop's planted structure
recovered by the training job (also-viewed substitutes, bought-together complements,
repurchase cycles, ALS factors)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.artifacts import load_npz, load_parquet
from recsys.matrices import InteractionWeights, item_vocabulary
from recsys.models.implicit_adapter import ALS, ItemKNN
from recsys.models.job import ModelsConfig, durable_products, run_models_job
from recsys.models.neighbours import Neighbours, cooccurrence_at, top_k_neighbours
from recsys.repurchase import repurchase_cycles
from recsys.vocab import Vocabulary
from tests.conftest import DemoShop


def test_top_k_neighbours_known_answer() -> None:
    sim = sp.csr_matrix(np.array([[9, 3, 5, 0], [3, 9, 3, 1], [5, 3, 9, 0], [0, 1, 0, 9]],
                                 dtype=np.float32))
    ids, scores = top_k_neighbours(sim, 2)
    assert ids.tolist() == [[2, 1], [0, 2], [0, 1], [1, -1]]  # self left out, ties by code
    assert scores.tolist() == [[5, 3], [3, 3], [5, 3], [1, 0]]
    big_k, _ = top_k_neighbours(sim, 10)  # k larger than the catalogue pads with -1
    assert big_k.shape == (4, 10) and (big_k[:, 3:] == -1).all()


def test_cooccurrence_support() -> None:
    rows = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=np.float32))
    ids = np.array([[1, 2], [0, 2], [1, -1]], dtype=np.int32)
    assert cooccurrence_at(rows, ids).tolist() == [[2, 1], [2, 2], [2, 0]]


def test_top_k_and_support_match_brute_force() -> None:
    rng = np.random.default_rng(4)
    rows = sp.random(300, 40, density=0.15, format="csr", random_state=5, dtype=np.float32)
    rows.data[:] = 1
    sim = sp.csr_matrix(np.round(rng.random((40, 40)) * 4) * (rng.random((40, 40)) < 0.5),
                        dtype=np.float32)  # rounded: many ties
    ids, scores = top_k_neighbours(sim, 7)
    support = cooccurrence_at(rows, ids)
    dense, co = sim.toarray(), (rows.T @ rows).toarray()
    for i in range(40):
        ranked = sorted((c for c in range(40) if c != i and dense[i, c] > 0),
                        key=lambda c: (-dense[i, c], c))[:7]
        assert ids[i, :len(ranked)].tolist() == ranked and (ids[i, len(ranked):] == -1).all()
        assert scores[i, :len(ranked)].tolist() == [dense[i, c] for c in ranked]
        assert support[i, :len(ranked)].tolist() == [co[i, c] for c in ranked]
        assert (support[i, len(ranked):] == 0).all()


def test_item_knn_finds_items_used_together() -> None:
    rows = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1],
                                   [1, 1, 0, 0]], dtype=np.float32))
    for kind in ("bm25", "cosine"):
        knn = ItemKNN(kind, k=3).fit(rows)
        ids, _ = top_k_neighbours(knn.similarity, 1)
        assert ids[:, 0].tolist() == [1, 0, 3, 2]


def test_als_fits_and_ranks_a_users_own_items_high() -> None:
    rng = np.random.default_rng(0)
    dense = np.zeros((60, 20), dtype=np.float32)
    dense[:30, :10] = rng.random((30, 10)) < 0.6  # two taste groups
    dense[30:, 10:] = rng.random((30, 10)) < 0.6
    als = ALS(factors=8, iterations=10, seed=1).fit(sp.csr_matrix(dense))
    assert als.user_factors is not None and als.item_factors is not None
    scores = als.user_factors @ als.item_factors.T
    first_group = scores[:30, :10].mean() > scores[:30, 10:].mean()
    second_group = scores[30:, 10:].mean() > scores[30:, :10].mean()
    assert first_group and second_group


@pytest.fixture(scope="module")
def trained(demo_shop: DemoShop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tables = demo_shop.tables()
    items = item_vocabulary(tables["catalog"], tables["orders"], tables["events"])
    out = tmp_path_factory.mktemp("models")
    metrics = run_models_job(tables["orders"], tables["events"], items,
                             ModelsConfig(top_k=10), InteractionWeights(), out, tables["catalog"])
    return {"out": out, "items": items, "metrics": metrics, "tables": tables,
            "planted": demo_shop.planted}


def _neighbour_sets(path: Path, items: Vocabulary, k: int) -> dict[str, set[str]]:
    table = Neighbours.load(path)
    return {pid: set(items.decode(row[row >= 0][:k])) for pid, row in
            zip(items.ids, table.ids, strict=True)}


def test_substitutes_are_also_viewed(trained: dict) -> None:
    near = _neighbour_sets(trained["out"] / "also_viewed", trained["items"], 5)
    pairs = trained["planted"]["substitutes"]
    hits = sum(b in near[a] and a in near[b] for a, b in pairs)
    assert hits >= 0.9 * len(pairs)
    assert trained["metrics"]["also_viewed_source"] == "view sessions"


def test_complements_are_bought_together(trained: dict) -> None:
    near = _neighbour_sets(trained["out"] / "bought_together", trained["items"], 5)
    pairs = trained["planted"]["complements"]
    assert sum(b in near[a] or a in near[b] for a, b in pairs) >= 0.9 * len(pairs)
    subs = trained["planted"]["substitutes"]  # never bought together
    assert sum(b in near[a] for a, b in subs) <= 0.1 * len(subs)


def test_repurchase_cycles_recovered(trained: dict) -> None:
    cycles = load_parquet(trained["out"] / "repurchase.parquet").set_index("product_id")
    planted = trained["planted"]["consumables"]
    close = [abs(cycles["cycle_days"].get(p, -1e9) - c) <= 0.3 * c for p, c in planted.items()]
    assert sum(close) >= 0.8 * len(planted)
    assert set(cycles.index) <= set(planted)  # durable products are not taken for consumables


def test_job_cycles_equal_the_standalone_computation(trained: dict) -> None:
    """The job codes the order lines once for history and cycles; same answer as
    ``repurchase_cycles`` on the raw orders."""
    config = ModelsConfig()
    saved = load_parquet(trained["out"] / "repurchase.parquet").sort_values("product_id")
    direct = repurchase_cycles(trained["tables"]["orders"],
                               min_intervals=config.repurchase_min_intervals,
                               min_repeat_share=config.repurchase_min_share)
    direct = direct.sort_values("product_id")
    assert len(saved) > 10
    pd.testing.assert_frame_equal(saved.reset_index(drop=True), direct.reset_index(drop=True),
                                  check_dtype=False)


def test_als_factors_and_purchases_saved(trained: dict) -> None:
    als = load_npz(trained["out"] / "als.npz")
    customers = Vocabulary.load(trained["out"] / "customers.parquet")
    assert als["user_factors"].shape == (len(customers), 64)
    assert als["item_factors"].shape == (len(trained["items"]), 64)
    purchases = load_npz(trained["out"] / "purchases.npz")
    matrix = sp.csr_matrix((purchases["last_day"], purchases["indices"], purchases["indptr"]),
                           shape=tuple(purchases["shape"]))
    orders = trained["tables"]["orders"]
    known = orders[orders["customer_id"].notna()]
    assert matrix.nnz == len(known[["customer_id", "product_id"]].drop_duplicates())
    row = known.iloc[0]
    r = customers.lookup([row["customer_id"]])[0]
    c = trained["items"].lookup([row["product_id"]])[0]
    last = known[(known["customer_id"] == row["customer_id"])
                 & (known["product_id"] == row["product_id"])]["ordered_at"].max()
    assert matrix[r, c] == (pd.Timestamp(last).normalize() - pd.Timestamp(0)).days + 1


def test_durable_products_known_answer() -> None:
    buyers = np.array([20, 20, 20, 5, 20, 20])
    repeaters = np.array([2, 6, 10, 0, 0, 19])
    known = np.array([-1, -1, -1, -1, 0, 1], dtype=np.int8)  # the catalog's flags win
    inferred = durable_products(buyers, repeaters, known, ModelsConfig(durable_min_buyers=10))
    assert inferred.tolist() == [True, False, False, False, False, True]
    off = durable_products(buyers, repeaters, known, ModelsConfig())  # default: catalog only
    assert off.tolist() == [False, False, False, False, False, True]


def _purchase_counts(trained: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buyers and repeat buyers per product from the saved purchases, and its durable flags."""
    purchases = load_npz(trained["out"] / "purchases.npz")
    n = len(trained["items"])
    buyers = np.bincount(purchases["indices"], minlength=n)
    repeaters = np.bincount(purchases["indices"], weights=purchases["orders"] >= 2, minlength=n)
    return buyers, repeaters, purchases["durable"]


def test_durable_products_come_from_the_catalog(trained: dict) -> None:
    _, _, durable = _purchase_counts(trained)
    consumables = set(trained["planted"]["consumables"])
    lasting = {p for p in trained["items"].ids if p not in consumables}
    assert set(trained["items"].decode(np.flatnonzero(durable))) == lasting
    assert trained["metrics"]["durable_products"] == len(lasting)


def test_durable_products_inferred_from_orders(trained: dict) -> None:
    """Without a catalog flag, the repeat share finds exactly the planted durables with 10 or
    more buyers (consumables are bought again by 30% or more of their buyers)."""
    buyers, repeaters, _ = _purchase_counts(trained)
    unknown = np.full(len(buyers), -1, dtype=np.int8)
    inferred = durable_products(buyers, repeaters, unknown, ModelsConfig(durable_min_buyers=10))
    items = trained["items"]
    enough = set(items.decode(np.flatnonzero(buyers >= 10)))
    truth = enough - set(trained["planted"]["consumables"])
    assert len(truth) > 200
    assert set(items.decode(np.flatnonzero(inferred))) == truth


def test_ease_memory_budget_caps_the_products_and_warns(tmp_path: Path) -> None:
    """ease_memory_mb = 1 holds a 512 x 512 float32 matrix: of 600 ordered products EASE covers
    the 512 best sellers, and the job's metrics say so."""
    rng = np.random.default_rng(8)
    lines = pd.DataFrame({"order_id": rng.integers(0, 3000, 20_000).astype(str),
                          "product_id": [f"P{i:03d}" for i in rng.integers(0, 600, 20_000)]})
    items = item_vocabulary(None, lines, None)
    assert len(items) == 600
    metrics = run_models_job(lines, None, items, ModelsConfig(top_k=5, ease_memory_mb=1),
                             InteractionWeights(), tmp_path)
    assert metrics["ease_products"] <= 512
    assert metrics["warnings"] == [
        "EASE covers the 512 best-selling of 600 ordered products, not 600: its dense 512 x 512 "
        "matrix must fit ease_memory_mb = 1 MiB (4 m^2 bytes); the others get co-purchase "
        "neighbours only"]
    covered = (Neighbours.load(tmp_path / "bought_together").ids >= 0).any(axis=1)
    assert covered.sum() == metrics["ease_products"]


def test_purchase_history_known_answer(tmp_path: Path) -> None:
    """Per bought (customer, product): the last day and the distinct orders, an order that
    spans two days counted once; guests and undated lines as the job treats them."""
    orders = pd.DataFrame({
        "order_id": ["o1", "o1", "o2", "o3", "o3", "o4", "o5", "o6"],
        "customer_id": ["c1", "c1", "c1", "c1", "c1", "c2", None, "c2"],
        "product_id": ["a", "a", "b", "a", "b", "a", "a", "b"],
        "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02", "2024-01-02",
                                      "2024-01-05", None, "2024-02-01", "2024-01-04"]),
    }).astype({"order_id": "string", "customer_id": "string", "product_id": "string"})
    items = Vocabulary(pd.Index(["a", "b", "c"], dtype="string"))
    run_models_job(orders, None, items, ModelsConfig(als_factors=2, als_iterations=1),
                   InteractionWeights(), tmp_path)
    bought = load_npz(tmp_path / "purchases.npz")
    shape = tuple(bought["shape"])
    days = sp.csr_matrix((bought["last_day"], bought["indices"], bought["indptr"]), shape=shape)
    counts = sp.csr_matrix((bought["orders"], bought["indices"], bought["indptr"]), shape=shape)
    epoch = pd.Timestamp("1970-01-01")
    day = {d: (pd.Timestamp(d) - epoch).days + 1 for d in ("2024-01-03", "2024-01-05",
                                                          "2024-01-04")}
    # c1: a in o1 (two days) and o3; b in o2 and o3. c2: a undated (day 1), b in o6
    assert days.toarray().tolist() == [[day["2024-01-03"], day["2024-01-05"], 0],
                                       [1, day["2024-01-04"], 0]]
    assert counts.toarray().tolist() == [[2, 2, 0], [1, 1, 0]]


def test_the_job_logs_each_step_with_its_time(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A long run shows where it is: each step's start, then its end with the seconds."""
    orders = pd.DataFrame({"order_id": ["o1", "o1", "o2"], "customer_id": ["c1", "c1", "c2"],
                           "product_id": ["a", "b", "a"]}).astype("string")
    orders["ordered_at"] = pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"])
    items = Vocabulary(pd.Index(["a", "b"], dtype="string"))
    with caplog.at_level(logging.INFO, logger="recsys.models.job"):
        run_models_job(orders, None, items, ModelsConfig(als_factors=2, als_iterations=1),
                       InteractionWeights(), tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "recsys.models.job"]
    steps = ["view sessions and also-viewed", "viewed-then-bought", "bought-together (EASE)",
             "co-purchase item-kNN", "ALS confidence matrix", "ALS fit (2 customers)",
             "purchase history", "repurchase cycles"]
    expected = [f"models: {step}{end}" for step in steps for end in (" ...", ": done in")]
    assert [line.split(" in ")[0] + " in" if ": done in" in line else line
            for line in lines] == expected
    assert all(float(line.rsplit(" ", 2)[1]) >= 0 for line in lines if "done in" in line)
