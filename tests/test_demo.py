"""Tests for the demo shop generator: files, determinism, and that planted patterns are recoverable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.contract import TABLES
from recsys.demo import DemoSpec, DemoSummary, PlantedTruth, generate_demo
from recsys.errors import ConfigError

SPEC = DemoSpec(orders=10_000, products=300, seed=7)


@dataclass(frozen=True)
class Demo:
    """One generated shop, its raw tables (all strings) and the clean order lines."""

    summary: DemoSummary
    orders: pd.DataFrame  # raw, every row as written
    events: pd.DataFrame
    catalog: pd.DataFrame
    planted: PlantedTruth
    clean: pd.DataFrame  # order lines without the dirty rows; ordered_at parsed
    dirty_orders: dict[str, np.ndarray]  # kind -> row mask over ``orders``


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _dirty_order_rows(orders: pd.DataFrame) -> dict[str, np.ndarray]:
    """Detect bad order rows independently of the generator's bookkeeping."""
    when = pd.to_datetime(orders["ordered_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    return {
        "empty_product_id": (orders["product_id"] == "").to_numpy(),
        "unparseable_date": when.isna().to_numpy(),
        "zero_quantity": (pd.to_numeric(orders["quantity"]) == 0).to_numpy(),
        "negative_unit_price": (pd.to_numeric(orders["unit_price"]) < 0).to_numpy(),
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo(out, SPEC, progress=False)
    orders = _read(out / "orders.csv")
    dirty = _dirty_order_rows(orders)
    any_dirty = np.logical_or.reduce(list(dirty.values()))
    clean = orders[~any_dirty].copy()
    clean["ordered_at"] = pd.to_datetime(clean["ordered_at"], format="%Y-%m-%dT%H:%M:%S")
    return Demo(summary=summary, orders=orders, events=_read(out / "events.csv"),
                catalog=_read(out / "catalog.csv"), planted=PlantedTruth.load(out / "planted.json"),
                clean=clean, dirty_orders=dirty)


def _pair_counts(groups: pd.Series, items: pd.Series) -> tuple[pd.Series, pd.Series, int]:
    """Distinct (a < b) pairs per group: pair counts, per-item group counts, number of groups."""
    frame = pd.DataFrame({"g": groups.to_numpy(), "i": items.to_numpy()}).drop_duplicates()
    pairs = frame.merge(frame, on="g")
    pairs = pairs[pairs["i_x"] < pairs["i_y"]]
    counts = pairs.groupby(["i_x", "i_y"]).size()
    return counts, frame["i"].value_counts(), frame["g"].nunique()


def _lift(counts: pd.Series, item_counts: pd.Series, n: int) -> pd.Series:
    a = item_counts.reindex(counts.index.get_level_values(0)).to_numpy()
    b = item_counts.reindex(counts.index.get_level_values(1)).to_numpy()
    return pd.Series(counts.to_numpy() * n / (a * b), index=counts.index)


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


# --------------------------------------------------------------------------- files


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    spec = DemoSpec(orders=1500, products=120, seed=3)
    first = generate_demo(tmp_path / "a", spec, progress=False)
    again = generate_demo(tmp_path / "b", spec, progress=False)
    other = generate_demo(tmp_path / "c", DemoSpec(orders=1500, products=120, seed=4),
                          progress=False)
    for name, path in first.paths.items():
        assert path.read_bytes() == again.paths[name].read_bytes(), name
        assert path.read_bytes() != other.paths[name].read_bytes(), name


def test_columns_are_canonical(demo: Demo) -> None:
    assert list(demo.orders.columns) == [c for c in TABLES["orders"].columns
                                         if c not in ("list_price", "discount")]
    assert list(demo.catalog.columns) == list(TABLES["catalog"].columns)
    assert list(demo.events.columns) == [c for c in TABLES["events"].columns if c != "request_id"]


def test_summary_counts_match_files(demo: Demo) -> None:
    s = demo.summary
    assert s.rows == {"orders": len(demo.orders), "events": len(demo.events),
                      "catalog": len(demo.catalog)}
    assert s.orders == demo.orders["order_id"].nunique() == SPEC.orders
    assert s.sessions == demo.events.loc[demo.events["session_id"] != "", "session_id"].nunique()
    assert s.sessions == SPEC.n_sessions
    assert s.planted == demo.planted
    assert json.loads(s.paths["planted"].read_text()) == demo.planted.to_dict()


def test_ids_and_formats(demo: Demo) -> None:
    cat = demo.catalog
    assert cat["product_id"].is_unique and cat["product_id"].str.fullmatch(r"P\d{5}").all()
    assert cat["price"].str.fullmatch(r"\d+\.\d\d").all()
    assert cat["in_stock"].isin(["true", "false"]).all()
    assert cat["category"].str.fullmatch(r"[^>]+ > [^>]+ > [^>]+").all()
    assert cat["category"].str.split(" > ").str[0].nunique() == 5
    assert 20 <= cat["category"].nunique() <= 45
    assert pd.to_numeric(cat["margin"]).between(0.1, 0.6).all()
    o = demo.clean
    assert o["order_id"].str.fullmatch(r"O\d{7}").all()
    assert o["customer_id"].str.fullmatch(r"(C\d{6})?").all()
    assert (pd.to_numeric(o["quantity"]) >= 1).all()
    assert (pd.to_numeric(o["quantity"]) == 1).mean() > 0.8
    start = pd.Timestamp(SPEC.start)
    assert o["ordered_at"].min() >= start
    assert o["ordered_at"].max() < start + pd.Timedelta(days=SPEC.days)
    guests = o.drop_duplicates("order_id")["customer_id"].eq("").mean()
    assert 0.07 < guests < 0.13
    basket = o.groupby("order_id").size()
    assert 2.0 < basket.mean() < 3.5 and basket.max() > 8
    assert set(demo.events["event_type"]) == {"view", "add_to_cart", "purchase"}


def test_order_products_exist_in_catalog(demo: Demo) -> None:
    known = set(demo.catalog["product_id"])
    assert demo.clean["product_id"].isin(known).all()
    unknown = ~demo.orders["product_id"].isin(known)
    assert (unknown == demo.dirty_orders["empty_product_id"]).all()


def test_dirty_rows_are_counted(demo: Demo) -> None:
    found = {kind: int(mask.sum()) for kind, mask in demo.dirty_orders.items()}
    assert demo.planted.dirty_rows["orders"] == found
    assert all(n >= 1 for n in found.values())
    assert sum(found.values()) < 0.003 * len(demo.orders)
    ev = demo.events
    when = pd.to_datetime(ev["occurred_at"], format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    found_ev = {
        "empty_product_id": int((ev["product_id"] == "").sum()),
        "unparseable_date": int(when.isna().sum()),
        "no_session_or_customer": int(((ev["session_id"] == "") & (ev["customer_id"] == "")).sum()),
    }
    assert demo.planted.dirty_rows["events"] == found_ev


def test_clean_generation_has_no_dirty_rows(tmp_path: Path) -> None:
    spec = DemoSpec(orders=1000, products=120, dirty_rows=False)
    summary = generate_demo(tmp_path, spec, progress=False)
    orders = _read(summary.paths["orders"])
    assert not np.logical_or.reduce(list(_dirty_order_rows(orders).values())).any()
    assert summary.planted.dirty_rows == {"orders": {}, "events": {}}


def test_bad_spec_is_rejected() -> None:
    with pytest.raises(ConfigError, match="products"):
        DemoSpec(products=10)
    with pytest.raises(ConfigError, match="start"):
        DemoSpec(start="01/01/2025")


# --------------------------------------------------------------------------- planted truth


def test_complements_have_high_lift_and_rank_top(demo: Demo) -> None:
    counts, per_item, n = _pair_counts(demo.clean["order_id"], demo.clean["product_id"])
    lift = _lift(counts, per_item, n)
    comps = [_key(a, b) for a, b in demo.planted.complements]
    assert len(comps) == 20
    for k in comps:
        assert counts[k] >= 10 and lift[k] > 5, (k, counts[k], lift[k])
    # among pairs bought together >= 10 times, the planted ones hold the top lifts
    frequent = lift[counts >= 10].sort_values(ascending=False)
    top = set(frequent.index[: len(comps)])
    assert len(top & set(comps)) >= 0.9 * len(comps)
    others = frequent[[k not in set(comps) for k in frequent.index]]
    assert np.median([lift[k] for k in comps]) > 2 * others.iloc[0]


def test_default_demo_complements_are_popular(tmp_path: Path) -> None:
    summary = generate_demo(tmp_path, DemoSpec(), progress=False)
    lines = _read(summary.paths["orders"]).drop_duplicates(["order_id", "product_id"])
    per_item = lines["product_id"].value_counts()
    for a, b in summary.planted.complements:
        assert per_item[a] >= 100 and per_item[b] >= 100, (a, b, per_item[a], per_item[b])


def test_substitutes_coviewed_not_cobought(demo: Demo) -> None:
    ev = demo.events[(demo.events["event_type"] == "view") & (demo.events["session_id"] != "")]
    views, per_item, n = _pair_counts(ev["session_id"], ev["product_id"])
    lift = _lift(views, per_item, n)
    bought, per_order, _ = _pair_counts(demo.clean["order_id"], demo.clean["product_id"])
    subs = [_key(a, b) for a, b in demo.planted.substitutes]
    assert len(subs) == 15
    q = views.quantile(0.99)  # co-viewed far more often than 99% of co-viewed pairs
    for a, b in subs:
        assert views[(a, b)] > q and lift[(a, b)] > 5, (a, b, views[(a, b)], q, lift[(a, b)])
        either = per_order[a] + per_order[b] - bought.get((a, b), 0)
        assert bought.get((a, b), 0) <= 0.01 * either


def test_consumables_repurchase_on_cycle(demo: Demo) -> None:
    o = demo.clean[demo.clean["customer_id"] != ""]
    o = o[o["product_id"].isin(demo.planted.consumables)]
    o = o.sort_values(["customer_id", "product_id", "ordered_at"])
    same = (o["customer_id"].eq(o["customer_id"].shift()) & o["product_id"].eq(o["product_id"].shift()))
    gaps = (o["ordered_at"] - o["ordered_at"].shift()).dt.total_seconds() / 86_400
    median = gaps[same].groupby(o.loc[same, "product_id"]).agg(["median", "size"])
    median = median[median["size"] >= 5]
    cycle = pd.Series(demo.planted.consumables).reindex(median.index)
    ok = (median["median"] - cycle).abs() <= 0.3 * cycle
    assert len(median) >= 0.6 * len(demo.planted.consumables)
    assert ok.mean() >= 0.9


def test_stock_and_activity(demo: Demo) -> None:
    cat = demo.catalog.set_index("product_id")
    oos = cat.index[cat["in_stock"] == "false"]
    assert sorted(oos) == list(demo.planted.out_of_stock)
    assert 0.03 <= len(oos) / len(cat) <= 0.07
    inactive = cat.index[cat["is_active"] == "false"]
    assert sorted(inactive) == list(demo.planted.inactive) and len(inactive) >= 2
    planted = {p for pair in demo.planted.complements + demo.planted.substitutes for p in pair}
    assert not planted & (set(oos) | set(inactive))
    assert len(demo.planted.consumables) / len(cat) == pytest.approx(0.1, abs=0.04)


def test_purchase_sessions_match_orders(demo: Demo) -> None:
    ev = demo.events
    buys = ev[ev["event_type"] == "purchase"]
    assert buys["session_id"].nunique() > 0.3 * SPEC.orders
    assert (buys["customer_id"] != "").all()
    session = buys.groupby("session_id").agg(
        customer_id=("customer_id", "first"), at=("occurred_at", "first"),
        n_at=("occurred_at", "nunique"), products=("product_id", frozenset))
    assert (session["n_at"] == 1).all()
    o = demo.orders[~np.logical_or.reduce(list(demo.dirty_orders.values()))]
    order = o.groupby("order_id").agg(customer_id=("customer_id", "first"),
                                       at=("ordered_at", "first"),
                                       products=("product_id", frozenset))
    matched = session.merge(order, on=["customer_id", "at", "products"], how="left",
                            indicator=True)
    assert (matched["_merge"] == "both").all()
    # each purchase session viewed and carted what it bought, before buying it
    inside = ev[ev["session_id"].isin(session.index)]
    firsts = inside.pivot_table(index=["session_id", "product_id"], columns="event_type",
                                values="occurred_at", aggfunc="min")
    bought = firsts.dropna(subset=["purchase"])
    assert (bought["view"] < bought["purchase"]).all()
    assert (bought["add_to_cart"] < bought["purchase"]).all()


def test_upgrades_are_pricier_products_of_the_leaf(demo: Demo) -> None:
    """Brute force from the catalog: each product's upgrades are the first of its leaf's
    in-stock, active products priced 1.1x..2x its price, same brand first, then by price."""
    cat = demo.catalog.set_index("product_id")
    cents = (pd.to_numeric(cat["price"]) * 100).round().astype(int)
    sellable = (cat["in_stock"] == "true") & (cat["is_active"] == "true")
    upgrades = demo.planted.upgrades
    assert len(upgrades) >= 0.5 * len(cat)
    for a, planted in upgrades.items():
        same = cat.index[(cat["category"] == cat.loc[a, "category"]) & sellable]
        ratio = cents[same] / cents[a]
        fits = ratio[(ratio >= 1.1) & (ratio <= 2.0)]
        key = (cat.loc[fits.index, "brand"] != cat.loc[a, "brand"]) * 2.0 + fits
        assert set(planted) <= set(fits.index), a
        assert len(planted) == min(3, len(fits)), a
        worst = key[list(planted)].max()
        assert set(key.index[key < worst]) <= set(planted), a  # none better left out
        probs = list(planted.values())
        assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-3)
    without = [a for a in cat.index if a not in upgrades]
    for a in without:  # nothing in the band
        same = cat.index[(cat["category"] == cat.loc[a, "category"]) & sellable]
        ratio = cents[same] / cents[a]
        assert not ((ratio >= 1.1) & (ratio <= 2.0)).any(), a


def test_viewed_then_bought_pricier_points_at_the_upgrades(demo: Demo) -> None:
    """In purchase sessions, 'viewed A (not bought), bought a pricier B of A's leaf' is mostly
    one of A's planted upgrades, in the order of their probabilities."""
    ev = demo.events[demo.events["session_id"] != ""]
    views = ev.loc[ev["event_type"] == "view", ["session_id", "product_id"]].drop_duplicates()
    buys = ev.loc[ev["event_type"] == "purchase", ["session_id", "product_id"]].drop_duplicates()
    pairs = views.merge(buys, on="session_id", suffixes=("_a", "_b"))
    bought = set(zip(buys["session_id"], buys["product_id"], strict=True))
    pairs = pairs[[(s, a) not in bought for s, a in zip(pairs["session_id"],
                                                       pairs["product_id_a"], strict=True)]]
    cat = demo.catalog.set_index("product_id")
    price = pd.to_numeric(cat["price"])
    a, b = pairs["product_id_a"], pairs["product_id_b"]
    cases = pairs[(cat["category"].reindex(a).to_numpy() == cat["category"].reindex(b).to_numpy())
                  & (price.reindex(b).to_numpy() > price.reindex(a).to_numpy())]
    upgrades = demo.planted.upgrades
    hit = [b in upgrades.get(a, {}) for a, b in zip(cases["product_id_a"], cases["product_id_b"],
                                                     strict=True)]
    assert len(cases) > 1000 and np.mean(hit) > 0.6, (len(cases), np.mean(hit))
    # the likeliest upgrade is chosen more often than the least likely one
    first = last = 0
    counts = cases.groupby(["product_id_a", "product_id_b"]).size()
    for a, planted in upgrades.items():
        if len(planted) >= 2:
            ranked = list(planted)
            first += counts.get((a, ranked[0]), 0)
            last += counts.get((a, ranked[-1]), 0)
    assert first > 1.5 * last, (first, last)
