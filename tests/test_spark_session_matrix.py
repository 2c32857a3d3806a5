"""The session x product matrix made on Spark (``local[2]``) against the local
``session_item_matrix``: the same rows in the same order (time order), the same
non-zeros; on generated events with and without session ids (sessions then derived from the
customer and the 30-minute gap), several event types and products the vocabulary lacks, and
on the demo shop's view events as ingested."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.ingest import table_file
from recsys.matrices import InteractionWeights, session_item_matrix, session_keys, view_sessions
from recsys.models.upsell import viewed_bought_counts
from recsys.spark.ingest import to_spark_pandas
from recsys.spark.session_matrix import (
    event_products_on_spark,
    session_item_matrix_on_spark,
    view_sessions_on_spark,
    viewed_bought_counts_on_spark,
)
from recsys.vocab import Vocabulary
from tests.conftest import DemoShop

SCHEMA = ("session_id string, customer_id string, product_id string, event_type string, "
          "occurred_at timestamp")
TYPES = ["view", "click", "add_to_cart", "wishlist", "purchase", "share"]  # share: no weight


def generated_events(n: int, *, with_sessions: bool, seed: int = 3) -> pd.DataFrame:
    """Events of 40 customers (ids of 1 to 3 characters, so that their string order differs
    from their number order) and anonymous ones, gaps around 30 minutes, a share of them with
    a session id (some looking like derived keys), product ids p0..p59 (p50.. unknown)."""
    rng = np.random.default_rng(seed)
    customers = np.array([str(c) for c in (1, 2, 9, 10, 11, 99, 100, 101)]
                         + [f"u{c}" for c in range(32)], dtype=object)
    customer = customers[rng.integers(0, len(customers), n)].astype(object)
    customer[rng.random(n) < 0.1] = None
    # steps of 0 (ties) to 15 minutes: a customer's next event comes some minutes to hours
    # later; customer 1's last three events are exactly 30 minutes apart, then 30 min + 1 s
    steps = rng.choice(np.array([0, 10, 30, 45, 60, 900]), n)
    when = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.cumsum(steps), unit="s")
    when = when.append(when[-1] + pd.to_timedelta([3600, 5400, 7201], unit="s"))[3:]
    customer[-3:] = "1"
    order = rng.permutation(n)  # events not in time order
    session = np.full(n, None, dtype=object)
    if with_sessions:
        given = rng.random(n) < 0.5
        session[given] = [f"s{k}" for k in rng.integers(0, 300, int(given.sum()))]
        session[rng.random(n) < 0.02] = "c:1:1"  # the same key as a derived session
    return pd.DataFrame({
        "session_id": session[order], "customer_id": customer[order],
        "product_id": np.array([f"p{k}" for k in rng.integers(0, 60, n)], dtype=object)[order],
        "event_type": np.array(TYPES, dtype=object)[rng.integers(0, len(TYPES), n)][order],
        "occurred_at": when.to_numpy("datetime64[us]")[order]})


def assert_same(got: sp.csr_matrix, expected: sp.csr_matrix, rtol: float = 0.0) -> None:
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    assert got.dtype == expected.dtype == np.float32
    if rtol:
        np.testing.assert_allclose(got.data, expected.data, rtol=rtol)
    else:
        np.testing.assert_array_equal(got.data, expected.data)


WEIGHTS = [InteractionWeights(),
           InteractionWeights(half_life_days=30.0, event_weights={
               "view": 0.5, "click": 1.0, "add_to_cart": 3.0, "purchase": 0.0})]


@pytest.mark.parametrize("with_sessions", [True, False], ids=["sessions", "derived"])
@pytest.mark.parametrize("weights", WEIGHTS, ids=["default", "decay"])
def test_session_matrix_equals_the_local_one(spark_local: Any, with_sessions: bool,
                                             weights: InteractionWeights) -> None:
    events = generated_events(3000, with_sessions=with_sessions)
    items = Vocabulary.from_ids(pd.Series([f"p{k}" for k in range(50)]), sort=True)
    expected = session_item_matrix(events, weights=weights, items=items)
    frame = spark_local.createDataFrame(to_spark_pandas(events), SCHEMA)
    got = session_item_matrix_on_spark(spark_local, frame, items, weights)
    assert_same(got, expected.matrix, rtol=0.0 if weights.half_life_days is None else 2e-6)
    # the rows are the local ones, in time order (each session's last event, then its key;
    # the events have ties); zero weights (share, purchase) leave rows without entries
    assert len(expected.rows) > 100 and expected.matrix.nnz > 500
    known = events["product_id"].isin(set(items.ids)).to_numpy()
    last = events[known].groupby(session_keys(events)[known].to_numpy())["occurred_at"].max()
    order = sorted(last.index, key=lambda k: (last[k], k))
    assert list(expected.rows.ids) == order != sorted(order)
    assert last.duplicated().any()
    if weights.event_weights.get("purchase") == 0.0:
        assert (np.diff(expected.matrix.indptr) == 0).any()


def test_events_without_session_or_customer_columns(spark_local: Any) -> None:
    events = generated_events(500, with_sessions=True)
    items = Vocabulary.from_ids(events["product_id"].astype("string"), sort=True)
    for dropped in ("session_id", "customer_id"):
        part = events.drop(columns=[dropped])
        schema = ", ".join(c for c in SCHEMA.split(", ") if not c.startswith(dropped))
        got = session_item_matrix_on_spark(
            spark_local, spark_local.createDataFrame(to_spark_pandas(part), schema), items)
        assert_same(got, session_item_matrix(part, items=items).matrix)


def test_view_sessions_of_the_demo_shop(spark_local: Any, demo_shop: DemoShop) -> None:
    events = demo_shop.tables()["events"]
    items = Vocabulary.from_ids(events["product_id"].astype("string"), sort=True)
    read = spark_local.read.parquet(str(table_file(demo_shop.data, "events")))
    weights = InteractionWeights()
    expected = view_sessions(events, items, weights)
    assert expected is not None and expected.shape[0] > 1000
    got = view_sessions_on_spark(spark_local, read, items, weights)
    assert got is not None
    assert_same(got, expected)
    assert view_sessions_on_spark(spark_local, read.filter("event_type = 'purchase'"), items,
                                  weights) is None
    products = event_products_on_spark(read)
    assert products is not None
    assert sorted(products["product_id"]) == sorted(events["product_id"].astype(str).unique())


@pytest.mark.parametrize("with_sessions", [True, False], ids=["sessions", "derived"])
def test_viewed_bought_counts_equal_the_local_ones(spark_local: Any,
                                                   with_sessions: bool) -> None:
    events = generated_events(6000, with_sessions=with_sessions)
    items = Vocabulary.from_ids(pd.Series([f"p{k}" for k in range(50)]), sort=True)
    frame = spark_local.createDataFrame(to_spark_pandas(events), SCHEMA)

    def pairs(counts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[tuple[int, ...]]:
        return sorted(zip(*(c.tolist() for c in counts), strict=True))

    expected = pairs(viewed_bought_counts(events, items))
    assert len(expected) > 50 and max(n for _, _, n in expected) > 1
    assert pairs(viewed_bought_counts_on_spark(spark_local, frame, items)) == expected
    assert pairs(viewed_bought_counts_on_spark(spark_local, None, items)) == []
