"""Interaction matrices against brute-force dictionaries (property tests); never dense."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import InputError
from recsys.matrices import (
    Interactions,
    InteractionWeights,
    customer_item_matrix,
    item_vocabulary,
    order_item_matrix,
    session_item_matrix,
    session_keys,
)

T0 = pd.Timestamp("2025-01-01")

order_lines = st.lists(
    st.tuples(st.integers(0, 15), st.integers(0, 9), st.integers(0, 5), st.integers(1, 4),
              st.integers(0, 400)),
    min_size=1, max_size=80,
)


def _orders(lines: list[tuple[int, int, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame({
        "order_id": pd.array([f"o{o}" for o, *_ in lines], dtype="string"),
        "product_id": pd.array([f"p{p}" for _, p, *_ in lines], dtype="string"),
        "customer_id": pd.array([f"c{c}" if c else None for _, _, c, _, _ in lines],
                                dtype="string"),
        "quantity": [float(q) for *_, q, _ in lines],
        "ordered_at": [T0 + pd.Timedelta(days=d) for *_, d in lines],
    })


def _dense_entry(result: Interactions, row: str, item: str) -> float:
    r = result.rows.lookup([row])[0]
    c = result.items.lookup([item])[0]
    return float(result.matrix[r, c])


@given(order_lines)
@settings(max_examples=80, deadline=None)
def test_order_matrix_is_exact_membership(lines: list[tuple[int, int, int, int, int]]) -> None:
    orders = _orders(lines)
    result = order_item_matrix(orders)
    assert sp.issparse(result.matrix) and result.matrix.format == "csr"
    assert result.matrix.dtype == np.int32
    truth = {(f"o{o}", f"p{p}") for o, p, *_ in lines}
    assert result.matrix.nnz == len(truth)
    assert set(result.matrix.data.tolist()) == {1}
    rows, cols = result.matrix.nonzero()
    got = set(zip(result.rows.decode(rows), result.items.decode(cols), strict=True))
    assert got == truth


@given(order_lines, st.sampled_from(["ignore", "linear", "log1p"]),
       st.one_of(st.none(), st.floats(5, 200)))
@settings(max_examples=80, deadline=None)
def test_customer_weights_match_brute_force(lines: list[tuple[int, int, int, int, int]],
                                            quantity: str, half_life: float | None) -> None:
    weights = InteractionWeights(quantity=quantity, half_life_days=half_life)
    orders = _orders(lines)
    if orders["customer_id"].isna().all():
        with pytest.raises(InputError, match="customer_id"):
            customer_item_matrix(orders, weights=weights)
        return
    result = customer_item_matrix(orders, weights=weights)
    newest = max(d for *_, d in lines)
    truth: dict[tuple[str, str], float] = defaultdict(float)
    for _, p, c, q, d in lines:
        if not c:
            continue
        qf = {"ignore": 1.0, "linear": q, "log1p": np.log2(1 + q)}[quantity]
        decay = 0.5 ** ((newest - d) / half_life) if half_life else 1.0
        truth[(f"c{c}", f"p{p}")] += 5.0 * qf * decay
    assert result.matrix.nnz == sum(1 for v in truth.values() if v != 0)
    for (cust, prod), value in truth.items():
        assert _dense_entry(result, cust, prod) == pytest.approx(value, rel=1e-5)


def test_customer_matrix_adds_events_but_not_purchase_events() -> None:
    orders = _orders([(1, 1, 1, 1, 0)])
    events = pd.DataFrame({
        "product_id": ["p1", "p2", "p2", "p3"],
        "event_type": ["purchase", "view", "add_to_cart", "view"],
        "occurred_at": [T0] * 4,
        "customer_id": pd.array(["c1", "c1", "c1", None], dtype="string"),
    })
    result = customer_item_matrix(orders, events, weights=InteractionWeights(quantity="ignore"))
    assert _dense_entry(result, "c1", "p1") == 5.0  # the order line only
    assert _dense_entry(result, "c1", "p2") == 4.0  # view 1 + add_to_cart 3
    assert "p3" not in result.items and result.matrix.nnz == 2  # anonymous view left out


def test_sessions_split_customer_events_at_30_minutes() -> None:
    times = [T0, T0 + pd.Timedelta(minutes=10), T0 + pd.Timedelta(minutes=50),
             T0 + pd.Timedelta(minutes=5)]
    events = pd.DataFrame({
        "product_id": ["a", "b", "c", "d"],
        "event_type": ["view"] * 4,
        "occurred_at": times,
        "session_id": pd.array([None, None, None, "s9"], dtype="string"),
        "customer_id": pd.array(["u1", "u1", "u1", "u1"], dtype="string"),
    })
    keys = session_keys(events)
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] == "s9"
    result = session_item_matrix(events)
    assert result.matrix.shape == (3, 4)
    assert result.matrix.sum() == 4.0


def test_sessions_are_rows_in_the_order_of_their_last_event() -> None:
    """The latest sessions are the last rows (V-SKNN's sample reads them): ordered by each
    session's last event whatever their keys, equal times (to the microsecond) by key; a
    session of unknown products only has no row, and its events do not move another's."""
    at = [T0 + pd.Timedelta(minutes=m) for m in (50, 1, 20, 5, 20, 60, 99)]
    at[4] += pd.Timedelta(nanoseconds=400)  # the same microsecond as at[2]
    events = pd.DataFrame({
        "product_id": ["a", "b", "a", "c", "b", "x", "x"],
        "event_type": ["view"] * 7,
        "occurred_at": at,
        "session_id": pd.array(["s1", "s1", "s9", "s2", "s0", "s9", "s5"], dtype="string"),
    })
    items = item_vocabulary(pd.DataFrame({"product_id": ["a", "b", "c"]}))
    result = session_item_matrix(events, items=items)
    # last events: s2 at 5, s0 and s9 at 20 (x at 60 is unknown), s1 at 50; s5 only x
    assert list(result.rows.ids) == ["s2", "s0", "s9", "s1"]
    assert result.matrix.toarray().tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0]]
    # derived sessions too: u2's sessions (b at 1; a at 50 with x; x at 99, unknown) around
    # u1's one (5 to 20), whatever their keys' order
    events["session_id"] = pd.array([None] * 7, dtype="string")
    events["customer_id"] = pd.array(["u2", "u2", "u1", "u1", "u1", "u2", "u2"], dtype="string")
    derived = session_item_matrix(events, items=items).rows.ids
    keys = session_keys(events)
    assert list(derived) == [keys[1], keys[3], keys[0]] == ["c:u2:2", "c:u1:1", "c:u2:3"]


def test_unknown_items_are_left_out_with_a_given_vocabulary() -> None:
    orders = _orders([(1, 1, 1, 1, 0), (1, 2, 1, 1, 0)])
    vocab = item_vocabulary(pd.DataFrame({"product_id": ["p1", "p7"]}))
    result = order_item_matrix(orders, items=vocab)
    assert result.shape == (1, 2)
    assert result.matrix.nnz == 1


def test_customer_matrix_of_undated_orders() -> None:
    """Orders need no date (only order_id and product_id are required): without decay the
    undated lines weigh as dated ones; with decay the date is asked for."""
    dated = _orders([(1, 1, 1, 2, 0), (2, 2, 1, 1, 3), (3, 1, 2, 1, 5)])
    undated = dated.drop(columns=["ordered_at"])
    got = customer_item_matrix(undated)
    expected = customer_item_matrix(dated)
    assert list(got.rows.ids) == list(expected.rows.ids)
    assert (got.matrix != expected.matrix).nnz == 0 and got.matrix.nnz == 3
    with pytest.raises(InputError, match="ordered_at"):
        customer_item_matrix(undated, weights=InteractionWeights(half_life_days=30.0))


def test_customer_matrix_needs_customer_column() -> None:
    orders = _orders([(1, 1, 0, 1, 0)]).drop(columns=["customer_id"])
    with pytest.raises(InputError, match="customer_id"):
        customer_item_matrix(orders)


def test_large_matrix_stays_sparse() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    orders = pd.DataFrame({
        "order_id": pd.array(rng.integers(0, 50_000, n).astype(str), dtype="string"),
        "product_id": pd.array(rng.integers(0, 40_000, n).astype(str), dtype="string"),
    })
    result = order_item_matrix(orders)
    assert result.shape[0] * result.shape[1] > 1e9  # a dense copy would need gigabytes
    assert result.matrix.nnz <= n
