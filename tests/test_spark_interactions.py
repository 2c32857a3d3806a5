"""ALS's customer x product confidence matrix made and kept on Spark (``local[2]``) against the
local ``customer_item_matrix`` on the demo shop's orders and events: the same customers, the
same non-zeros, values equal to float32 rounding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.ingest import table_file
from recsys.matrices import InteractionWeights, customer_item_matrix, item_vocabulary
from recsys.spark.interactions import confidence_on_spark
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
    got = confidence_on_spark(spark_local, read["orders"], read["events"], items, weights)
    ratings = pd.DataFrame(got.ratings.toPandas())
    assert got.nnz == len(ratings)
    matrix = sp.csr_matrix((ratings["rating"].to_numpy(np.float32),
                            (ratings["user"].to_numpy(), ratings["item"].to_numpy())),
                           shape=(len(got.rows), len(got.items)))
    matrix.sort_indices()
    assert list(got.rows.ids) == list(expected.rows.ids)
    assert got.items is items
    assert matrix.shape == expected.matrix.shape
    np.testing.assert_array_equal(matrix.indptr, expected.matrix.indptr)
    np.testing.assert_array_equal(matrix.indices, expected.matrix.indices)
    assert matrix.dtype == expected.matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.data, expected.matrix.data, rtol=2e-6)
    assert expected.matrix.nnz > 1000
    got.release()
