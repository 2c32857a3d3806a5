"""The cold_start job (``recsys.models.cold_start_job``) on a hand-made shop whose answer is
known: the prior 2.0 is clearly the best cold-start weight there.

The shop (orders only, no categories: the prior is the global best sellers):
- 40 gadgets f00..f39, the only catalogue rows ("gadget fNN": all alike, equal cosines);
- each gadget's own accessory pNN, bought with it in 5 orders (nowhere else);
- 10 staples s0..s9, bought once with every gadget and alone in 60 - k more orders: the 10
  best sellers (100 - k orders).
With one neighbour per also-viewed row (``top_k = 1``: the gadget's accessory), a gadget
scored as new borrows its content neighbours' accessories, never its own (5 cases) nor the
staples (10 cases) unless the prior brings them: prior 2.0 (or 4.0) puts the 10 staples first
(10 of its 15 cases), a prior of 0.25-1 with 5 neighbours leaves room for 5 of them after the
5 accessories, and 10 or more neighbours none. With the gadgets in a category of their own
(``_shop(categories=True)``) only the shop's best sellers are the staples.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import layout
from recsys.config import Config
from recsys.matrices import InteractionWeights, item_vocabulary, order_item_matrix
from recsys.models.cold_start_job import (
    GRID_NEIGHBOURS,
    GRID_PRIOR,
    LocalOrderLines,
    _folds,
    run_cold_start_job,
)
from recsys.models.content import run_content_job
from recsys.models.settings import ModelsConfig
from recsys.pipeline import run_pipeline
from recsys.serving.catalog_overlay import CatalogOverlay, CatalogRow
from recsys.serving.index import load_index
from recsys.serving.recommend import Decisions, Options, also_viewed

GADGETS = [f"f{i:02d}" for i in range(40)]
STAPLES = [f"s{k}" for k in range(10)]
SHOP = {"similarity": "cosine", "top_k": 1}


def _shop(categories: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(orders, catalog) of the shop in the module docstring."""
    lines: list[tuple[str, str]] = []
    for i, gadget in enumerate(GADGETS):
        for n in range(5):
            lines += [(f"a{i}-{n}", gadget), (f"a{i}-{n}", f"p{i:02d}")]
        lines += [x for k, staple in enumerate(STAPLES)
                  for x in ((f"b{i}-{k}", gadget), (f"b{i}-{k}", staple))]
    lines += [(f"c{k}-{n}", staple) for k, staple in enumerate(STAPLES) for n in range(60 - k)]
    orders = pd.DataFrame(lines, columns=["order_id", "product_id"]).assign(quantity=1.0)
    catalog = pd.DataFrame({"product_id": GADGETS, "name": [f"gadget {g}" for g in GADGETS]})
    if categories:
        catalog["category"] = "Gadgets"
    return orders, catalog


def _run(tmp_path: Path, categories: bool = False, **models: object) -> dict[str, Any]:
    orders, catalog = _shop(categories)
    items = item_vocabulary(catalog, orders)
    run_content_job(catalog, items, 50, tmp_path)
    return run_cold_start_job(LocalOrderLines(orders), None, catalog, items, ModelsConfig(**{**SHOP, **models}),
                              InteractionWeights(), window_days=0, top_k=100, out=tmp_path)


def _expected_hr(n: int, prior: float) -> float:
    """HR@10 by hand: 15 cases per held-out gadget (see the module docstring)."""
    if prior >= 2.0:
        return round(10 / 15, 4)
    return round(5 / 15, 4) if n == 5 and prior > 0 else 0.0


def test_the_clearly_best_pair_is_chosen(tmp_path: Path) -> None:
    report = _run(tmp_path)
    # 1,155 orders: a fold may leave out 115, 7 gadgets of 15 orders; 5 folds
    assert report["rows"] == 1155 and report["folds"] == 5
    assert report["held_out_products"] == 35 and report["cases"] == 35 * 15
    assert report["hr@10"] == {f"{n} x {prior}": _expected_hr(n, prior)
                               for n in GRID_NEIGHBOURS for prior in GRID_PRIOR}
    # prior 2.0 ties across neighbours and with 4.0: the first (fewest, smallest) is kept;
    # without categories the shop's best sellers are the category's: not tried again
    chosen = {"cold_start_neighbours": 5, "cold_start_prior": 2.0,
              "cold_start_prior_scope": "category", "chosen_by": "validation"}
    assert {k: report[k] for k in chosen} == chosen
    assert report["chosen_hr@10"] == round(10 / 15, 4)
    assert json.loads(layout.COLD_START.at(tmp_path).read_text()) == chosen


def test_a_pinned_value_is_kept_and_the_other_chosen(tmp_path: Path) -> None:
    report = _run(tmp_path, cold_start_neighbours=20)
    assert (report["cold_start_neighbours"], report["cold_start_prior"]) == (20, 2.0)
    assert set(report["hr@10"]) == {f"20 x {prior}" for prior in GRID_PRIOR}
    pinned = _run(tmp_path, cold_start_neighbours=20, cold_start_prior=0.25)
    assert pinned == {"cold_start_neighbours": 20, "cold_start_prior": 0.25,
                      "cold_start_prior_scope": "category", "chosen_by": "config"}
    assert json.loads(layout.COLD_START.at(tmp_path).read_text()) == pinned


def test_the_shops_best_sellers_where_they_go_with_every_new_product(tmp_path: Path) -> None:
    """The gadgets' category's best sellers are gadgets, never bought together: a category
    prior hits nothing, the shop's (the staples) 10 of 15 cases; both are tried where the
    catalogue has categories, and a pinned scope is kept."""
    report = _run(tmp_path, categories=True)
    expected = {f"{n} x {prior}": 0.0 if prior else _expected_hr(n, prior)
                for n in GRID_NEIGHBOURS for prior in GRID_PRIOR}
    expected.update({f"{n} x {prior} shop": _expected_hr(n, prior)
                     for n in GRID_NEIGHBOURS for prior in GRID_PRIOR if prior})
    assert report["hr@10"] == expected
    chosen = {"cold_start_neighbours": 5, "cold_start_prior": 2.0,
              "cold_start_prior_scope": "shop", "chosen_by": "validation"}
    assert {k: report[k] for k in chosen} == chosen
    assert json.loads(layout.COLD_START.at(tmp_path).read_text()) == chosen
    pinned = _run(tmp_path, categories=True, cold_start_prior_scope="category")
    assert (pinned["cold_start_prior_scope"], pinned["chosen_hr@10"]) == ("category", 0.0)
    assert all(not key.endswith("shop") for key in pinned["hr@10"])


def test_too_few_cases_keep_the_defaults(tmp_path: Path) -> None:
    report = _run(tmp_path, cold_start_tune_min_cases=526)
    assert (report["cold_start_neighbours"], report["cold_start_prior"],
            report["chosen_by"]) == (10, 0.5, "default")
    assert report["cases"] == 525 and "526" in str(report["reason"])
    off = _run(tmp_path, cold_start_tune_products=0, cold_start_prior=1.0)
    assert (off["cold_start_neighbours"], off["cold_start_prior"]) == (10, 1.0)


def test_no_catalog_keeps_the_defaults(tmp_path: Path) -> None:
    orders, _ = _shop()
    report = run_cold_start_job(LocalOrderLines(orders), None, None, item_vocabulary(orders), ModelsConfig(),
                                InteractionWeights(), window_days=0, top_k=100, out=tmp_path)
    assert report["chosen_by"] == "default" and "no catalog" in str(report["reason"])


def test_held_out_rows_never_reach_the_table_they_are_scored_with() -> None:
    orders, catalog = _shop()
    items = item_vocabulary(catalog, orders)
    rows = order_item_matrix(orders, items=items).matrix
    has_content = np.isin(items.ids, GADGETS)
    folds = _folds(sp.csr_matrix(rows), has_content, ModelsConfig(cold_start_tune_products=30))
    assert sum(len(f.held) for f in folds) == 30
    seen: set[int] = set()
    for fold in folds:
        holding = np.flatnonzero(rows[:, fold.held].getnnz(axis=1) > 0)
        assert fold.left_out[holding].all() and fold.left_out.sum() == len(holding) <= 115
        assert seen.isdisjoint(fold.held.tolist()) and has_content[fold.held].all()
        seen.update(fold.held.tolist())
        # cases: only products not held out; per gadget its accessory (5) and 10 staples
        assert not fold.is_held[fold.targets.indices].any()
        assert np.asarray(fold.targets.sum(axis=1)).ravel().tolist() == [15] * len(fold.held)


def test_the_pipeline_records_the_choice_and_serving_applies_it(tmp_path: Path) -> None:
    orders, catalog = _shop()
    orders.to_csv(tmp_path / "orders.csv", index=False)
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    config = Config.model_validate({
        "data_dir": str(tmp_path / "data"), "artifacts": {"root": str(tmp_path / "artifacts")},
        "popularity": {"window_days": 0}, "models": SHOP,
        "ingest": {"orders": str(tmp_path / "orders.csv"),
                   "catalog": str(tmp_path / "catalog.csv"), "server_events": False}})
    _, manifest = run_pipeline(config, show_progress=False)
    assert manifest.metrics["cold_start"]["chosen_by"] == "validation"
    index = load_index(tmp_path / "artifacts")
    ranking = index.ranking
    assert (ranking.cold_start_neighbours, ranking.cold_start_prior,
            ranking.cold_start_chosen_by) == (5, 2.0, "validation")
    # a new gadget, added since the artifact: the staples first, as prior 2.0 ranks them
    new = CatalogOverlay()
    new.update([CatalogRow(product_id="f99", name="gadget f99")])
    with_new = new.apply(index, min_support=3)
    served = also_viewed(with_new, "f99", Options(k=10, in_stock_only=False), Decisions())
    assert [i["product_id"] for i in served.items] == STAPLES
    assert {i["reason"]["source"] for i in served.items} == {"content_co_viewed"}
    # the defaults would have served ten accessories
    defaults = replace(with_new, ranking=replace(ranking, cold_start_neighbours=10,
                                                 cold_start_prior=0.5))
    served = also_viewed(defaults, "f99", Options(k=10, in_stock_only=False), Decisions())
    assert all(i["product_id"].startswith("p") for i in served.items)


@pytest.mark.parametrize("pinned", [{"cold_start_neighbours": 0}, {"cold_start_prior": 0.0}])
def test_config_accepts_pins_and_leaves_unset_for_the_job(pinned: dict[str, float]) -> None:
    assert Config().models.cold_start_neighbours is None
    assert Config().models.cold_start_prior is None
    models = Config.model_validate({"models": pinned}).models
    assert {k: getattr(models, k) for k in pinned} == pinned
