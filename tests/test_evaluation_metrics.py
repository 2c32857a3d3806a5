"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.evaluation.metrics import (
    coverage,
    hit_rate,
    hit_rate_curve,
    mrr,
    multi_target_metrics,
    ndcg_single,
    revenue_hit_rate,
    single_target_metrics,
    target_ranks,
)

RANKED = np.array([[3, 1, 2], [0, 4, -1], [5, 6, 7]])
TARGETS = np.array([1, 4, 9])


def test_target_ranks_are_one_based_and_zero_when_missing() -> None:
    assert target_ranks(RANKED, TARGETS).tolist() == [2, 2, 0]
    assert target_ranks(np.array([[-2, 5]]), np.array([5])).tolist() == [2]  # unknown id: a slot


def test_single_target_metrics_by_hand() -> None:
    ranks = target_ranks(RANKED, TARGETS)
    assert hit_rate(ranks, 1) == 0.0
    assert hit_rate(ranks, 2) == pytest.approx(2 / 3)
    assert mrr(ranks, 1) == 0.0
    assert mrr(ranks, 3) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert ndcg_single(ranks, 3) == pytest.approx(2 / math.log2(3) / 3)
    assert revenue_hit_rate(ranks, np.array([10.0, 30.0, 60.0]), 2) == pytest.approx(0.4)
    # a case without a known price is left out of both sums
    assert revenue_hit_rate(ranks, np.array([10.0, np.nan, 60.0]), 2) == pytest.approx(10 / 70)
    assert math.isnan(revenue_hit_rate(ranks, np.full(3, np.nan), 2))
    assert coverage(RANKED, 2, 10) == pytest.approx(6 / 10)  # {3, 1, 0, 4, 5, 6}
    assert hit_rate_curve(ranks, 3) == pytest.approx([0.0, 2 / 3, 2 / 3])


def test_single_target_metrics_names() -> None:
    values, curve = single_target_metrics(RANKED, TARGETS, (1, 3), 10,
                                          revenue=np.array([1.0, 1.0, 1.0]))
    assert set(values) == {f"{m}@{k}" for m in ("hr", "mrr", "ndcg", "revenue_hr", "coverage")
                           for k in (1, 3)}
    assert values["hr@3"] == pytest.approx(2 / 3) and len(curve) == 3


def test_multi_target_metrics_by_hand() -> None:
    relevant = sp.csr_matrix(np.array([[0, 1, 1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0, 0]]))
    ranked = np.array([[1, 5, 2], [0, 3, 4]])  # hits: [T, F, T], [F, F, T]
    values, curve = multi_target_metrics(ranked, relevant, (1, 3), 8)
    assert values["recall@1"] == pytest.approx((1 / 3 + 0) / 2)
    assert values["recall@3"] == pytest.approx((2 / 3 + 1) / 2)
    dcg0, idcg0 = 1 + 1 / math.log2(4), 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg@3"] == pytest.approx((dcg0 / idcg0 + 0.5) / 2)
    assert values["ndcg@1"] == pytest.approx((1 + 0) / 2)
    assert values["hr@1"] == pytest.approx(0.5) and values["hr@3"] == 1.0
    assert curve == pytest.approx([0.5, 0.5, 1.0])
    # |T| given explicitly: an item unknown to the models still counts in the denominator
    values, _ = multi_target_metrics(ranked, relevant, (3,), 8, n_relevant=np.array([3, 2]))
    assert values["recall@3"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_empty_inputs_give_zero() -> None:
    empty = np.zeros((0, 3), dtype=np.int64)
    values, curve = single_target_metrics(empty, np.zeros(0, dtype=np.int64), (2,), 5)
    assert values["hr@2"] == 0.0 and curve == [0.0, 0.0]
