"""ALS's customer x product confidence matrix made on Spark (``local[2]``) against the local
``customer_item_matrix`` on the demo shop's orders and events: the same customers, the same
non-zeros, values equal to float32 rounding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recsys.ingest import table_file
from recsys.matrices import InteractionWeights, customer_item_matrix, item_vocabulary
from recsys.spark.interactions import customer_item_matrix_on_spark
from tests.conftest import DemoShop


@pytest.mark.parametrize("weights", [
    InteractionWeights(),
    InteractionWeights(quantity="linear", half_life_days=30.0,
                       event_weights={"view": 0.5, "add_to_cart": 3.0, "purchase": 4.0}),
])
def test_confidence_matrix_equals_the_local_one(spark_local: Any, demo_shop: DemoShop,
                                                weights: InteractionWeights) -> None:
    tables = demo_shop.tables()
    items = item_vocabulary(tables["catalog"], tables["orders"], tables["events"])
    expected = customer_item_matrix(tables["orders"], tables["events"], weights=weights,
                                    items=items)
    read = {t: spark_local.read.parquet(str(table_file(demo_shop.data, t)))
            for t in ("orders", "events")}
    got = customer_item_matrix_on_spark(spark_local, read["orders"], read["events"], items,
                                        weights)
    assert list(got.rows.ids) == list(expected.rows.ids)
    assert got.matrix.shape == expected.matrix.shape
    np.testing.assert_array_equal(got.matrix.indptr, expected.matrix.indptr)
    np.testing.assert_array_equal(got.matrix.indices, expected.matrix.indices)
    assert got.matrix.dtype == expected.matrix.dtype == np.float32
    np.testing.assert_allclose(got.matrix.data, expected.matrix.data, rtol=2e-6)
    assert expected.matrix.nnz > 1000
