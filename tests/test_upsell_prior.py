"""The upsell prior (issue 15 item 1): the conditional-logit fit against a known answer, the
job's fit on a hand-made shop, and the upsell ranking on hand-made evidence."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from recsys.artifacts import Manifest
from recsys.models.upsell_prior import UpsellPrior, features, fit_upsell_prior, fit_weights
from recsys.serving.finish import Decisions, Options
from recsys.serving.index import ServingIndex
from recsys.serving.upsell import upsell
from recsys.vocab import Vocabulary


def test_the_fit_recovers_known_weights() -> None:
    """Counts exactly proportional to a known logit's probabilities: the maximum-likelihood
    weights are the known ones (the ridge is negligible against 300 million sessions)."""
    rng = np.random.default_rng(3)
    true = np.array([0.8, 2.0, -4.0, 1.5])
    parts, counts, groups = [], [], []
    for g in range(300):
        m = int(rng.integers(3, 12))
        x = features(rng.integers(0, 200, m).astype(float), rng.random(m) < 0.3,
                     rng.uniform(1.1, 2.0, m))
        s = x @ true
        p = np.exp(s - s.max())
        parts.append(x)
        counts.append(1_000_000 * p / p.sum())
        groups.append(np.full(m, g))
    got = fit_weights(np.vstack(parts), np.concatenate(counts), np.concatenate(groups))
    assert got == pytest.approx(true, abs=2e-3)


def test_the_job_learns_same_brand_and_nearer_price_from_the_evidence() -> None:
    catalog = pd.DataFrame({
        "product_id": ["A", "A2", "S", "S2", "O", "O2", "F"],
        "category": ["Bikes"] * 7,
        "price": [100.0, 102.0, 150.0, 152.0, 130.0, 131.0, 195.0],
        "brand": ["X", "X", "X", "X", "Y", "Y", "Y"]})
    popular = pd.DataFrame({"scope": ["Bikes"] * 7, "product_id": catalog["product_id"],
                            "orders": [5, 5, 5, 5, 5, 5, 5]})
    evidence = pd.DataFrame({"product_a": ["A", "A", "A2", "A2", "A2"],
                             "product_b": ["S", "O", "S2", "O2", "F"],
                             "sessions": [9, 2, 8, 3, 1]})
    prior = fit_upsell_prior(evidence, catalog, popular, (1.1, 2.0))
    assert prior.products == 2 and prior.sessions == 23
    weights = dict(zip(prior.features, prior.weights, strict=True))
    assert weights["same_brand"] > 0.5
    assert fit_upsell_prior(evidence.iloc[:0], catalog, popular, (1.1, 2.0)) == UpsellPrior()
    assert fit_upsell_prior(evidence, None, popular, (1.1, 2.0)).products == 0


def _index(prior: UpsellPrior) -> ServingIndex:
    """A viewed product A (100, brand X) and its candidates: B1 and B6 (120, X, 10 orders, no
    evidence; B6 has the higher margin), B2 (150, Y, 50 orders, 1 session), B3 (190, Y, 5
    orders, 3 sessions), B4 (130, out of stock), B5 (250, outside the band)."""
    ids = ["A", "B1", "B2", "B3", "B4", "B5", "B6"]
    prices = dict(zip(ids, [100.0, 120.0, 150.0, 190.0, 130.0, 250.0, 120.0], strict=True))
    brands = dict(zip(ids, ["X", "X", "Y", "Y", "Y", "X", "X"], strict=True))
    orders = {"B1": 10, "B2": 50, "B3": 5, "B4": 0, "B5": 99, "B6": 10}
    manifest = Manifest(version="v1", created_at=datetime.now(UTC).isoformat(), git_commit=None,
                        config={}, config_hash="", inputs={}, libraries={})
    return ServingIndex(
        manifest=manifest, items=Vocabulary(ids), code_of={p: i for i, p in enumerate(ids)},
        ids=ids, names={}, prices=prices, margins={"B1": 0.1, "B6": 0.5},
        categories=dict.fromkeys(ids, "Bikes"), available=frozenset(ids) - {"B4"},
        popular={"Bikes": sorted(orders.items(), key=lambda o: -o[1])},
        loaded_at=datetime.now(UTC),
        bought_instead={0: (np.array([3, 2]), np.array([3, 1]))}, brands=brands,
        upsell_prior=prior)


def test_the_ranking_by_hand() -> None:
    prior = UpsellPrior(weights=(1.0, 2.0, -3.0, 0.0), prior_sessions=8.0)
    index = _index(prior)
    result = upsell(index, "A", Options(k=10), Decisions(), band=(1.1, 2.0))
    # w . features over the pool (B4 included: out of stock is filtered after ranking)
    pool = {"B1": (120, 1, 10), "B6": (120, 1, 10), "B2": (150, 0, 50), "B3": (190, 0, 5),
            "B4": (130, 0, 0)}
    raw = {p: math.exp(math.log1p(o) + 2 * b - 3 * math.log(c / 100))
           for p, (c, b, o) in pool.items()}
    p = {k: v / sum(raw.values()) for k, v in raw.items()}
    sessions = {"B3": 3, "B2": 1}
    expected = {k: sessions.get(k, 0) + 8 * p[k] for k in pool if k != "B4"}
    assert expected["B1"] > expected["B3"] > expected["B2"]  # the prior outranks 3 sessions
    listed = [i["product_id"] for i in result.items]
    assert listed == ["B6", "B1", "B3", "B2"]  # B6 before B1: equal but for the margin
    for item in result.items:
        evidence = item["reason"]["evidence"]
        assert item["score"] == pytest.approx(expected[item["product_id"]], abs=1e-5)
        assert evidence["prior"] == round(p[item["product_id"]], 4)
        assert evidence["price_difference"] == round(index.prices[item["product_id"]] - 100, 2)
        assert evidence.get("viewed_then_bought", 0) == sessions.get(item["product_id"], 0)
    control = upsell(index, "A", Options(k=10), Decisions(), band=(1.1, 2.0), popular_only=True)
    assert [i["product_id"] for i in control.items] == ["B2", "B6", "B1", "B3"]
    # without the prior (weight 0) the evidence alone ranks, then every candidate alike
    bare = _index(UpsellPrior(weights=(1.0, 2.0, -3.0, 0.0), prior_sessions=0.0))
    listed = [i["product_id"] for i in upsell(bare, "A", Options(k=10), Decisions(),
                                              band=(1.1, 2.0)).items]
    assert listed[:2] == ["B3", "B2"]


def test_a_posted_brand_reaches_the_ranking() -> None:
    from recsys.serving.catalog_overlay import CatalogOverlay, CatalogRow

    prior = UpsellPrior(weights=(1.0, 2.0, -3.0, 0.0), prior_sessions=8.0)
    overlay = CatalogOverlay()
    overlay.update([CatalogRow(product_id="B2", brand=" X ")])
    index = overlay.apply(_index(prior), 0)
    assert index.brands["B2"] == "X" and len(overlay) == 1
    item = next(i for i in upsell(index, "A", Options(k=10), Decisions(), band=(1.1, 2.0)).items
                if i["product_id"] == "B2")
    assert item["reason"]["evidence"]["prior"] > 0.3  # B2 now shares A's brand
