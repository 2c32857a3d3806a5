"""The cold_start job: chooses, on the shop's own data, the settings of the also-viewed
list served for a product without co-view data (``cold_start_neighbours``,
``cold_start_prior`` and whose best sellers that prior counts, ``cold_start_prior_scope``;
the score is ``recsys.models.borrowed``'s) and writes them, with who chose them, to
``cold_start.json``. A value set in ``[models]`` is pinned: the grid runs over the others
only, and not at all when that leaves one setting (all set; or the neighbours and the prior,
where the scope makes no difference: a prior of 0, a catalogue without categories).

Simulation. Up to ``cold_start_tune_products`` products that do have co-views and content
neighbours are held out, drawn in a seeded order (``seed``) into up to ``MAX_FOLDS`` folds,
and scored as a new product is served: the first ``n`` of their content neighbours
(``content_similar/``, from the catalogue alone) lend their also-viewed lists, weighted by
cosine, plus the prior x the best sellers of the product's category, or of the shop (in
grocery baskets the shop's staples go with every new product; in view sessions that stay in
a category its own best sellers do). A case is a held-out
product P, a row (view session; an order when there are no view events) holding P and
another product q of that row that is not held out; a hit is q in the top 10 of P's score.
The list served is completed from content neighbours and best sellers when that score has
fewer than 10 positive products; the simulation leaves that completion out.

Leakage. Every row that holds a held-out product is left out of what scores it: the
also-viewed table is fitted again without its fold's rows (as the models job fits it: one
more item-kNN fit per fold), the best sellers are counted again without the orders that
hold a held-out product, and held-out products lend nothing (they are nobody's content
neighbour). So neither P's own co-views nor the co-views of the other products of P's
sessions are seen, as for a product whose sessions are all still to come. A fold takes
products only while the rows it leaves out stay within ``MAX_LEFT_OUT`` of all rows (a
product that would pass it waits for the next fold), so the table scored with stays close
to the one served; the sample leans to products with few rows, as new products are.

Choice: the best HR@10 over ``GRID_NEIGHBOURS`` (at most ``content_top_k``) x
``GRID_PRIOR`` x ``PRIOR_SCOPES`` (the shop's scope only where the catalogue has categories
and the prior is not 0: else it is the same list), ties to the first (fewer neighbours,
then smaller prior, then the category); with fewer than ``cold_start_tune_min_cases`` cases,
or nothing to hold out, the defaults are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import layout
from recsys.matrices import InteractionWeights, order_item_matrix, view_sessions
from recsys.models.borrowed import borrowed_parts, cold_start_scores, ranked
from recsys.models.job import knn_table
from recsys.models.neighbours import Neighbours
from recsys.models.settings import (
    DEFAULT_COLD_START_NEIGHBOURS,
    DEFAULT_COLD_START_PRIOR,
    DEFAULT_COLD_START_PRIOR_SCOPE,
    ModelsConfig,
    PriorScope,
)
from recsys.popularity import GLOBAL_SCOPE, best_sellers
from recsys.vocab import Vocabulary

__all__ = ["GRID_NEIGHBOURS", "GRID_PRIOR", "PRIOR_SCOPES", "MAX_FOLDS", "MAX_LEFT_OUT",
           "OrderLines", "LocalOrderLines", "Setting", "run_cold_start_job"]

GRID_NEIGHBOURS = (5, 10, 20, 50)
GRID_PRIOR = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
PRIOR_SCOPES: tuple[PriorScope, ...] = ("category", "shop")
Setting = tuple[int, float, PriorScope]
"""(cold_start_neighbours, cold_start_prior, cold_start_prior_scope)."""
MAX_LEFT_OUT = 0.1  # share of the rows (sessions or orders) one fold's products may hold
MAX_FOLDS = 5  # held-out sets, each scored with its own refitted table
K = 10  # the list length scored


class OrderLines(Protocol):
    """What the job needs of the order lines (the Spark engine answers on Spark)."""

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        """The binary order x product matrix (int32) over ``items``, one row per order (in
        any order)."""

    def best_sellers_without(self, products: list[str], catalog: pd.DataFrame | None, *,
                             window_days: int, top_k: int) -> pd.DataFrame:
        """``recsys.popularity.best_sellers`` of the orders that hold none of ``products``."""


class LocalOrderLines:
    """The job's inputs from canonical order lines in memory."""

    def __init__(self, orders: pd.DataFrame) -> None:
        self.orders = orders

    def baskets(self, items: Vocabulary) -> sp.csr_matrix:
        return order_item_matrix(self.orders, items=items).matrix

    def best_sellers_without(self, products: list[str], catalog: pd.DataFrame | None, *,
                             window_days: int, top_k: int) -> pd.DataFrame:
        orders = self.orders
        with_held = orders["order_id"][orders["product_id"].astype(str).isin(set(products))]
        return best_sellers(orders[~orders["order_id"].isin(with_held)], catalog,
                            window_days=window_days, top_k=top_k)


def run_cold_start_job(orders: OrderLines, events: pd.DataFrame | None,
                       catalog: pd.DataFrame | None, items: Vocabulary, config: ModelsConfig,
                       weights: InteractionWeights, *, window_days: int, top_k: int,
                       out: Path, sessions: Callable[[], sp.csr_matrix | None] | None = None
                       ) -> dict[str, Any]:
    """Choose the pair on held-out products (see the module docstring) and write
    ``cold_start.json`` into the version folder ``out``, which holds the content job's
    ``content_similar/``; ``window_days``, ``top_k``: the best sellers' settings;
    ``sessions``: where the view sessions come from (``view_sessions`` of ``events`` by
    default)."""
    pinned_n, pinned_prior = config.cold_start_neighbours, config.cold_start_prior
    pinned_scope = config.cold_start_prior_scope
    kept: Setting = (DEFAULT_COLD_START_NEIGHBOURS if pinned_n is None else pinned_n,
                     DEFAULT_COLD_START_PRIOR if pinned_prior is None else pinned_prior,
                     DEFAULT_COLD_START_PRIOR_SCOPE if pinned_scope is None else pinned_scope)
    has_categories = catalog is not None and "category" in catalog \
        and bool(catalog["category"].notna().any())
    prior_scopes = ([pinned_scope] if pinned_scope is not None
                    else PRIOR_SCOPES if has_categories else PRIOR_SCOPES[:1])
    grid: list[Setting] = [
        (n, prior, scope)
        for n in ([pinned_n] if pinned_n is not None else
                  sorted({min(n, config.content_top_k) for n in GRID_NEIGHBOURS}))
        for prior in ([pinned_prior] if pinned_prior is not None else GRID_PRIOR)
        for scope in (prior_scopes if prior > 0 else [kept[2]])]
    if pinned_n is not None and pinned_prior is not None and len(grid) == 1:
        return _write(out, *grid[0], "config", {})
    if pinned_n == 0:
        return _write(out, *kept, "default", {"reason": "cold_start_neighbours = 0 borrows "
                                                        "nothing: no prior to choose"})
    if config.cold_start_tune_products == 0:
        return _write(out, *kept, "default", {"reason": "cold_start_tune_products = 0"})
    if not layout.CONTENT_SIMILAR.at(out).exists():
        return _write(out, *kept, "default", {"reason": "no catalog: no content neighbours"})
    content = Neighbours.load(layout.CONTENT_SIMILAR.at(out), mmap=False)
    views = sessions() if sessions is not None else view_sessions(events, items, weights)
    rows = views if views is not None else orders.baskets(items)
    binary = sp.csr_matrix((np.ones(rows.nnz, np.int32), rows.indices, rows.indptr),
                           shape=rows.shape)
    folds = _folds(binary, content.ids[:, 0] >= 0, config)
    report: dict[str, Any] = {"rows": int(binary.shape[0]), "folds": len(folds),
                              "rows_left_out": [int(f.left_out.sum()) for f in folds],
                              "held_out_products": sum(len(f.held) for f in folds)}
    report["cases"] = cases = sum(int(f.targets.sum()) for f in folds)
    if cases < config.cold_start_tune_min_cases:
        return _write(out, *kept, "default", {**report, "reason": f"{cases} cases, fewer than "
                      f"cold_start_tune_min_cases = {config.cold_start_tune_min_cases}"})
    hits = np.zeros(len(grid), dtype=np.int64)
    for fold in folds:  # one more item-kNN fit each
        hits += _grid_hits(fold, content, knn_table(rows[~fold.left_out], config),
                           _priors(orders, catalog, items, fold.held, window_days, top_k),
                           _scopes(catalog, items.ids[fold.held]), grid,
                           config.also_viewed_support_weight)
    best = int(np.argmax(hits))  # the first of the best
    report["hr@10"] = {_label(setting): round(h / cases, 4)
                       for setting, h in zip(grid, hits.tolist(), strict=True)}
    return _write(out, *grid[best], "validation",
                  {**report, "chosen_hr@10": round(float(hits[best]) / cases, 4)})


def _label(setting: Setting) -> str:
    """A grid point as the report names it: "neighbours x prior", and "shop" for the shop's
    best sellers."""
    n, prior, scope = setting
    return f"{n} x {prior}" + (" shop" if scope == "shop" and prior > 0 else "")


@dataclass(frozen=True)
class _Fold:
    """Products held out together, the rows they hold, and their cases: per held-out
    product (row), per product not held out (column), the rows holding both."""

    held: np.ndarray
    left_out: np.ndarray  # bool per row
    is_held: np.ndarray  # bool per product
    targets: sp.csr_matrix


def _folds(binary: sp.csr_matrix, has_content: np.ndarray, config: ModelsConfig
           ) -> list[_Fold]:
    """Up to ``MAX_FOLDS`` folds of products with content neighbours and a row shared with
    another product, drawn in a seeded order, each while the rows it leaves out stay within
    ``MAX_LEFT_OUT`` of all rows (a product that would pass it waits for the next fold);
    ``cold_start_tune_products`` in all at most."""
    cap = int(MAX_LEFT_OUT * binary.shape[0])
    by_product = binary.tocsc()
    shared = binary[np.diff(binary.indptr) >= 2]
    fits = (shared.getnnz(axis=0) > 0) & (by_product.getnnz(axis=0) <= cap) & has_content
    waiting = np.random.default_rng(config.seed).permutation(np.flatnonzero(fits)).tolist()
    want = config.cold_start_tune_products
    folds: list[_Fold] = []
    while waiting and want > 0 and len(folds) < MAX_FOLDS:
        left_out = np.zeros(binary.shape[0], dtype=bool)
        n_left_out = 0
        held: list[int] = []
        later: list[int] = []
        for p in waiting:
            its = by_product.indices[by_product.indptr[p]:by_product.indptr[p + 1]]
            new = its[~left_out[its]]
            if len(held) < want and n_left_out + len(new) <= cap:
                left_out[new] = True
                n_left_out += len(new)
                held.append(p)
            else:
                later.append(p)
        if not held:
            break
        waiting, want = later, want - len(held)
        codes = np.array(held, dtype=np.int64)
        is_held = np.zeros(binary.shape[1], dtype=bool)
        is_held[codes] = True
        targets = sp.csr_matrix(binary[:, codes].T @ binary)
        targets.data[is_held[targets.indices]] = 0
        targets.eliminate_zeros()
        folds.append(_Fold(codes, left_out, is_held, targets))
    return folds


def _priors(orders: OrderLines, catalog: pd.DataFrame | None, items: Vocabulary,
            held: np.ndarray, window_days: int, top_k: int
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per scope: the best sellers' codes and orders / the best's, counted without the
    orders that hold a held-out product."""
    table = orders.best_sellers_without(items.ids[held].tolist(), catalog,
                                        window_days=window_days, top_k=top_k)
    out = {}
    for scope, group in table.groupby("scope", sort=False):
        counts = group["orders"].to_numpy(np.float64)
        codes = items.lookup(group["product_id"].astype(str), on_unknown="mask")
        shares = counts / max(counts[0], 1.0)
        out[str(scope)] = (codes[codes >= 0], shares[codes >= 0])
    return out


def _scopes(catalog: pd.DataFrame | None, ids: np.ndarray) -> list[str]:
    """Each product's best-seller scope as serving looks it up: its category, else global."""
    if catalog is None or "category" not in catalog:
        return [GLOBAL_SCOPE] * len(ids)
    listed = catalog[catalog["category"].notna()]
    category = dict(zip(listed["product_id"].astype(str), listed["category"].astype(str),
                        strict=True))
    return [category.get(p) or GLOBAL_SCOPE for p in ids.tolist()]


def _grid_hits(fold: _Fold, content: Neighbours, table: Neighbours,
               priors: dict[str, tuple[np.ndarray, np.ndarray]], scopes: list[str],
               grid: list[Setting], support_weight: float) -> np.ndarray:
    """Per grid setting: the fold's cases whose product is in the top ``K`` of its held-out
    product's score (a loop over the held-out products and the settings: a few hundred x
    up to 44)."""
    held, targets, is_held = fold.held, fold.targets, fold.is_held
    n_items = len(is_held)
    most = max(n for n, _, _ in grid)
    none = (np.zeros(0, np.int64), np.zeros(0, np.float64))
    hits = np.zeros(len(grid), dtype=np.int64)
    for i, p in enumerate(held.tolist()):
        near = np.asarray(content.ids[p])
        lend = (near >= 0) & ~is_held[np.maximum(near, 0)]
        rows = near[lend][:most].astype(np.int64)
        parts = borrowed_parts(table, rows, np.asarray(content.scores[p], np.float64)[lend][:most],
                               support_weight)
        target = np.zeros(n_items, dtype=np.int64)
        target[targets.indices[targets.indptr[i]:targets.indptr[i + 1]]] = (
            targets.data[targets.indptr[i]:targets.indptr[i + 1]])
        prior_of = {"category": priors.get(scopes[i], none),
                    "shop": priors.get(GLOBAL_SCOPE, none)}
        for g, (n, prior, scope) in enumerate(grid):
            codes, shares = prior_of[scope]
            score = cold_start_scores(parts, n_items, own=p, prior_codes=codes,
                                      prior_shares=shares, prior_weight=prior, neighbours=n)
            hits[g] += int(target[ranked(score, K)].sum())
    return hits


def _write(out: Path, neighbours: int, prior: float, scope: PriorScope, chosen_by: str,
           report: dict[str, Any]) -> dict[str, Any]:
    """Write ``cold_start.json``; returns the job's report (the manifest's metrics)."""
    chosen = {"cold_start_neighbours": int(neighbours), "cold_start_prior": float(prior),
              "cold_start_prior_scope": scope, "chosen_by": chosen_by}
    layout.COLD_START.at(out).write_text(json.dumps(chosen, indent=2))
    return {**chosen, **report}
