"""Price and discount sensitivity (issue 15 item 5): per segment and category, per customer,
written by the customer_value job and used by upsell."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys import layout
from recsys.analytics.pricing import on_discount, price_sensitivity
from recsys.analytics.settings import PricingConfig
from recsys.artifacts import ArtifactStore, load_parquet
from recsys.config import load_config
from recsys.errors import ConfigError
from recsys.serving.finish import Decisions, Options
from recsys.serving.index import load_index
from recsys.serving.upsell import upsell

CATALOG = pd.DataFrame({"product_id": ["A", "B", "C"], "category": ["x", "x", "y"],
                        "price": [10.0, 20.0, 5.0]})
SEGMENTS = pd.DataFrame({"customer_id": ["c1", "c2", "c3"],
                         "segment": ["champions", "lost", "lost"]})


def _orders(**extra: Sequence[object]) -> pd.DataFrame:
    base = {"order_id": ["o1", "o1", "o2", "o3", "o4", "o5", "o6"],
            "product_id": ["A", "B", "A", "B", "C", "C", "A"],
            "customer_id": ["c1", "c1", "c1", "c2", "c2", "c3", "c3"],
            "unit_price": [8.0, 20.0, 8.0, 25.0, 5.0, 4.0, None],
            "quantity": [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]}
    return pd.DataFrame({**base, **extra})


DISCOUNTS = {"list_price": [10.0, 20.0, 10.0, 25.0, None, 5.0, None],
             "discount": [None, None, 0.2, None, 0.5, None, 0.1]}


def test_a_line_is_on_discount_by_discount_or_by_list_price() -> None:
    flags = on_discount(_orders(**DISCOUNTS))
    assert flags is not None
    assert flags.tolist() == [True, False, True, False, True, True, True]
    assert on_discount(_orders()) is None


def test_per_segment_category_and_customer() -> None:
    by_segment, by_customer = price_sensitivity(_orders(**DISCOUNTS), CATALOG, SEGMENTS)
    row = by_segment.set_index(["segment", "category"])
    champions = row.loc[("champions", "x")]
    assert champions["lines"] == 3 and champions["revenue"] == 56.0  # 8 + 2 x 20 + 8
    assert champions["discount_revenue_share"] == pytest.approx(16 / 56)
    # category x line prices 8, 20, 8, 25, 10 (A from the catalog): terciles 8.67 and 16.67
    assert champions["low_band_share"] == pytest.approx(16 / 56)
    assert champions["mid_band_share"] == 0.0
    assert champions["high_band_share"] == pytest.approx(40 / 56)
    assert row.loc[("lost", "x")]["mid_band_share"] == pytest.approx(10 / 35)
    lost = row.loc[("lost", "*")]
    assert lost["lines"] == 4 and lost["revenue"] == 44.0
    assert lost["discount_revenue_share"] == pytest.approx((5 + 4 + 10) / 44)
    customers = by_customer.set_index("customer_id")
    assert customers["orders"].to_dict() == {"c1": 2, "c2": 2, "c3": 2}
    # c3: two orders, every line on discount; c2: one line at list price
    assert customers["discount_only"].to_dict() == {"c1": False, "c2": False, "c3": True}


def test_without_discount_data_nobody_is_flagged() -> None:
    by_segment, by_customer = price_sensitivity(_orders(), CATALOG, SEGMENTS)
    assert by_segment["discount_revenue_share"].isna().all()
    assert not by_customer["discount_only"].any()
    assert np.allclose(by_segment[["low_band_share", "mid_band_share", "high_band_share"]]
                       .sum(axis=1), 1.0)


def test_the_job_writes_declared_tables(demo_artifact: Path) -> None:
    store = ArtifactStore(demo_artifact)
    folder = store.path(store.current_version())
    for entry in (layout.PRICE_SENSITIVITY, layout.DISCOUNT_CUSTOMERS):
        assert layout.check_file(folder, entry) == [], entry.path
    assert len(load_parquet(layout.PRICE_SENSITIVITY.at(folder)))


def test_upsell_offers_nothing_pricier_to_discount_only_buyers(demo_artifact: Path) -> None:
    index = load_index(demo_artifact)
    seed = next(pid for pid in index.ids if pid in index.prices and upsell(
        index, pid, Options(k=5), Decisions(), band=(1.1, 2.0)).items)
    flagged = dataclasses.replace(index, discount_only=frozenset({"C-DEAL"}))
    shown = upsell(flagged, seed, Options(k=5), Decisions(), band=(1.1, 2.0),
                   customer_id="C-DEAL")
    assert shown.items == [] and shown.fallback == "discount_only_customer"
    other = upsell(flagged, seed, Options(k=5), Decisions(), band=(1.1, 2.0),
                   customer_id="C-OTHER")
    assert other.items


def test_the_report_shows_discounts_per_segment(tmp_path: Path) -> None:
    from recsys.analytics.report import build_report

    orders = _orders(**DISCOUNTS).assign(
        ordered_at=pd.to_datetime(["2024-01-01", "2024-01-01", "2024-02-01", "2024-01-05",
                                   "2024-03-05", "2024-01-09", "2024-04-09"]))
    data = tmp_path / "data"
    data.mkdir()
    orders.to_parquet(data / "orders.parquet", index=False)
    CATALOG.to_parquet(data / "catalog.parquet", index=False)
    text = build_report(data, tmp_path / "report.html").read_text()
    assert "<h2>Price and discount sensitivity</h2>" in text
    assert "1 customers bought only on discount" in text
    orders.drop(columns=["list_price", "discount"]).to_parquet(data / "orders.parquet",
                                                               index=False)
    plain = build_report(data, tmp_path / "plain.html").read_text()
    assert "carry no list_price or discount" in plain


def test_discount_only_thresholds_are_configured() -> None:
    """c1: 2 orders, 2 of 3 lines discounted; c2: 2 orders, 1 of 2; c3: 2 orders, 2 of 2."""
    orders = _orders(**DISCOUNTS)

    def flagged(**keys: float) -> set[str]:
        _, by_customer = price_sensitivity(orders, CATALOG, SEGMENTS, PricingConfig(**keys))
        return set(by_customer.loc[by_customer["discount_only"], "customer_id"])

    assert flagged() == {"c3"}  # the defaults: two orders, every line
    assert flagged(discount_only_share=0.6) == {"c1", "c3"}  # 2/3 >= 0.6 > 1/2
    assert flagged(discount_only_share=0.5) == {"c1", "c2", "c3"}  # exactly half counts
    assert flagged(discount_only_share=2 / 3) == {"c1", "c3"}  # 2 of 3 lines, not 1.99
    assert flagged(discount_only_min_orders=3, discount_only_share=0.5) == set()


@pytest.mark.parametrize("keys", [{"discount_only_share": 0.0}, {"discount_only_share": 1.5},
                                  {"discount_only_min_orders": 0}, {"discount_only_mode": 1}])
def test_bad_discount_only_thresholds_are_refused(tmp_path: Path, keys: dict[str, float]) -> None:
    config = tmp_path / "recsys.toml"
    config.write_text("[analytics.pricing]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    with pytest.raises(ConfigError, match=r"analytics\.pricing|discount_only"):
        load_config(config)
