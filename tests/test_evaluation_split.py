"""The evaluation split has no leakage: nothing at or after a stage's cutoff fits its models,
items first seen after the cutoff are unknown, and validation ends where the test starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.errors import InputError
from recsys.evaluation.split import (
    basket_cases,
    next_basket_cases,
    next_basket_split,
    session_pairs,
    split_events,
    split_orders,
    time_windows,
)
from recsys.evaluation.tasks import evaluate_basket_completion
from recsys.vocab import Vocabulary

DAY0 = pd.Timestamp("2024-01-01")


def _orders(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    """(order, product, customer, day) rows -> canonical order lines."""
    frame = pd.DataFrame(rows, columns=["order_id", "product_id", "customer_id", "day"])
    return pd.DataFrame({
        "order_id": frame["order_id"].astype("string"),
        "product_id": frame["product_id"].astype("string"),
        "customer_id": frame["customer_id"].astype("string"),
        "ordered_at": DAY0 + pd.to_timedelta(frame["day"], unit="D"),
        "quantity": 1.0, "unit_price": 2.0,
    })


def _shop() -> pd.DataFrame:
    """Days 0-10: train < day 6 <= validation < day 8 <= test. Before the test window a goes
    with b and c with d; inside it a goes with c (20 times) and with 'late', new there."""
    rows: list[tuple[str, str, str, float]] = []
    for i in range(10):
        day = i * 0.5  # days 0 .. 4.5
        rows += [(f"t{i}", "a", "u1", day), (f"t{i}", "b", "u1", day),
                 (f"s{i}", "c", "u2", day), (f"s{i}", "d", "u2", day)]
    for i in range(4):  # validation window: the same pairs, and 'v' (new there)
        rows += [(f"v{i}", "a", "u1", 6.2 + i * 0.3), (f"v{i}", "b", "u1", 6.2 + i * 0.3),
                 (f"w{i}", "c", "u2", 6.3 + i * 0.3), (f"w{i}", "v", "u2", 6.3 + i * 0.3)]
    for i in range(20):  # test window
        rows += [(f"x{i}", "a", "u3", 8.0 + i * 0.1), (f"x{i}", "c", "u3", 8.0 + i * 0.1)]
    rows += [("y", "a", "u1", 9.5), ("y", "late", "u1", 9.5), ("z", "b", "u2", 10.0)]
    return _orders(rows)


def test_windows_are_ordered_and_validation_ends_where_test_starts() -> None:
    orders = _shop()
    w = time_windows(orders["ordered_at"])
    assert w.start == DAY0 and w.end == DAY0 + pd.Timedelta(days=10)
    assert w.valid_start == DAY0 + pd.Timedelta(days=6)
    assert w.test_start == DAY0 + pd.Timedelta(days=8)
    assert w.window("validation") == (w.valid_start, w.test_start)
    for stage in ("validation", "test"):
        train, window = split_orders(orders, w, stage)
        assert train["ordered_at"].max() < w.cutoff(stage) <= window["ordered_at"].min()
    _, valid = split_orders(orders, w, "validation")
    assert valid["ordered_at"].max() < w.test_start
    assert not set(valid["order_id"]) & set(split_orders(orders, w, "test")[1]["order_id"])


def test_bad_fractions_and_no_dates_are_refused() -> None:
    with pytest.raises(InputError, match="leave room"):
        time_windows(_shop()["ordered_at"], test_fraction=0.5, valid_fraction=0.5)
    with pytest.raises(InputError, match="needs timestamps"):
        time_windows(pd.Series([pd.NaT, pd.NaT]))


def test_items_first_seen_after_the_cutoff_are_never_known() -> None:
    orders = _shop()
    w = time_windows(orders["ordered_at"])
    train, window = split_orders(orders, w, "test")
    items = Vocabulary.from_ids(train["product_id"], sort=True)
    assert "late" not in items and "v" in items  # 'v' was seen in validation, before the test
    cases = basket_cases(window, items, seed=0)
    assert len(cases) == 20  # order y has one known item only; z has one item
    assert set(cases.order_ids) == {f"x{i}" for i in range(20)}
    assert set(items.ids[cases.targets]) <= {"a", "c"}
    assert (cases.queries.sum(axis=1) == 1).all()
    assert np.allclose(cases.revenue, 2.0)
    again = basket_cases(window, items, seed=0)  # seeded
    assert again.targets.tolist() == cases.targets.tolist()
    val_train, val_window = split_orders(orders, w, "validation")
    val_items = Vocabulary.from_ids(val_train["product_id"], sort=True)
    assert "v" not in val_items and set(val_window["order_id"]).isdisjoint(cases.order_ids)


def test_a_model_never_sees_test_baskets() -> None:
    """In the test window a goes with c; before it never. Trained without the test window,
    co-occurrence must answer b for a and d for c (HR@1 = 0); a leak would make it 1."""
    orders = _shop()
    w = time_windows(orders["ordered_at"])
    for tune in (False, True):
        result = evaluate_basket_completion(orders, w, ks=(1, 2), tune=tune, seed=0,
                                            models=["cooccurrence"], show_progress=False)
        assert result.cases == 20
        assert result.metrics["cooccurrence"]["hr@1"] == 0.0
        assert result.split["validation"]["cases"] == 4  # not the w-orders: 'v' is unknown


def test_session_split_cuts_at_the_cutoff() -> None:
    stamps = DAY0 + pd.to_timedelta([0, 1, 7.9, 8.1, 8.2, 6.5, 6.6, 8.5, 9.0, 9.2, 10], unit="D")
    events = pd.DataFrame({
        "product_id": pd.array(["a", "b", "a", "b", "c", "a", "b", "b", "a", "b", "c"],
                               dtype="string"),
        "event_type": pd.array(["view"] * 11, dtype="string"),
        "occurred_at": stamps,
        "session_id": pd.array(["s1", "s1", "s2", "s2", "s2", "s3", "s3", "s3", "s4", "s4",
                                "s4"], dtype="string"),
    })
    w = time_windows(events["occurred_at"])
    train, test = split_events(events, w, "test")
    assert train["occurred_at"].max() < w.test_start
    assert set(test["session"]) == {"s4"}  # s2 started before the test window
    _, valid = split_events(events, w, "validation")
    # s2 starts inside the validation window: kept, cut where the test window starts
    assert set(valid["session"]) == {"s2", "s3"} and valid["occurred_at"].max() < w.test_start
    assert valid["product_id"][valid["session"] == "s2"].tolist() == ["a"]
    items = Vocabulary.from_ids(train["product_id"], sort=True)
    pairs = session_pairs(test, items)
    assert "c" not in items  # first viewed after the cutoff: b -> c is not a case
    assert items.ids[pairs.queries].tolist() == ["a"]
    assert items.ids[pairs.targets].tolist() == ["b"]


def test_next_basket_holdouts() -> None:
    orders = _orders([("o1", "a", "u1", 0), ("o2", "b", "u1", 1), ("o2", "c", "u1", 1),
                      ("o3", "a", "u1", 2), ("o3", "n", "u1", 2), ("o4", "a", "u2", 0),
                      ("o5", "b", "u2", 3)])
    train, later = next_basket_split(orders, "test", holdout="last_order")
    assert set(train["order_id"]) == {"o1", "o2", "o4"} and set(later["order_id"]) == {"o3", "o5"}
    train_v, later_v = next_basket_split(orders, "validation", holdout="last_order")
    assert set(train_v["order_id"]) == {"o1"} and set(later_v["order_id"]) == {"o2", "o4"}
    items = Vocabulary.from_ids(train["product_id"], sort=True)
    cases = next_basket_cases(train, later, items)
    assert cases.customers.tolist() == ["u1", "u2"]
    assert cases.history.toarray().tolist() == [[1, 1, 1], [1, 0, 0]]  # a, b, c
    assert cases.targets.toarray().tolist() == [[1, 0, 0], [0, 1, 0]]
    assert cases.basket_sizes.tolist() == [2, 1]  # 'n' is new: unknown, still counted
    w = time_windows(orders["ordered_at"], test_fraction=0.4, valid_fraction=0.2)
    train_t, later_t = next_basket_split(orders, "test", windows=w)
    assert train_t["ordered_at"].max() < w.test_start <= later_t["ordered_at"].min()
    with pytest.raises(InputError):
        next_basket_split(orders, "test", holdout="time")
