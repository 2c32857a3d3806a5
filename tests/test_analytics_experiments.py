"""A/B assignment (stable, balanced, salt-dependent) and the bootstrap."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from recsys.analytics.experiments import (
    assign_arm,
    assign_arms,
    bootstrap_ratio,
    relative_uplift,
    unit_ids,
)
from recsys.errors import ConfigError

SPLIT = {"control": 0.5, "recommendations": 0.3, "bundles": 0.2}


def test_assignment_is_stable_and_pinned() -> None:
    # Pinned: a change of hashing would silently re-draw every running experiment.
    got = [assign_arm(f"c{i}", salt="exp-1", split=SPLIT) for i in range(8)]
    assert got == ["bundles", "control", "bundles", "recommendations", "control", "control",
                   "control", "recommendations"]
    assert got == [assign_arm(f"c{i}", salt="exp-1", split=SPLIT) for i in range(8)]
    # Independently: arms sorted by name take [0, .2), [.2, .7), [.7, 1) of sha256 as a fraction.
    for i, arm in enumerate(got):
        u = int.from_bytes(hashlib.sha256(f"exp-1:c{i}".encode()).digest()[:8], "big") / 2**64
        assert arm == ("bundles" if u < 0.2 else "control" if u < 0.7 else "recommendations")


def test_order_of_the_split_does_not_matter_and_vectorised_agrees() -> None:
    ids = [f"u{i}" for i in range(500)]
    reordered = dict(reversed(list(SPLIT.items())))
    one = [assign_arm(u, salt="s", split=SPLIT) for u in ids]
    assert one == [assign_arm(u, salt="s", split=reordered) for u in ids]
    assert assign_arms(np.array(ids, dtype=object), salt="s", split=SPLIT).tolist() == one
    assert assign_arms(pd.Series(ids + ids[:3]), salt="s", split=SPLIT).tolist() == one + one[:3]


def test_assignment_is_balanced() -> None:
    n = 30_000
    arms = assign_arms([f"customer-{i}" for i in range(n)], salt="balance", split=SPLIT)
    names = sorted(SPLIT)
    observed = np.array([(arms == a).sum() for a in names])
    expected = np.array([SPLIT[a] for a in names]) * n
    assert chisquare(observed, expected).pvalue > 1e-3
    # and a biased assignment would be caught by the same test
    assert chisquare(observed + np.array([0, 0, 600]) - np.array([600, 0, 0]),
                     expected).pvalue < 1e-3


def test_a_new_salt_redraws_about_half() -> None:
    ids = [f"s{i}" for i in range(4000)]
    split = {"a": 0.5, "b": 0.5}
    first = assign_arms(ids, salt="one", split=split)
    second = assign_arms(ids, salt="two", split=split)
    changed = float((first != second).mean())
    assert 0.45 < changed < 0.55


def test_zero_share_arm_gets_nobody_and_bad_splits_fail() -> None:
    arms = assign_arms([f"x{i}" for i in range(2000)], salt="z", split={"a": 1.0, "off": 0.0})
    assert set(arms.tolist()) == {"a"}
    with pytest.raises(ConfigError):
        assign_arm("x", salt="z", split={"a": 0.0})
    with pytest.raises(ConfigError):
        assign_arm("x", salt="z", split={})


def test_units_prefer_customer_or_session() -> None:
    customer = pd.Series(["c1", None, "c3"], dtype="string")
    session = pd.Series(["s1", "s2", None], dtype="string")
    assert unit_ids(customer, session, "customer").tolist() == ["c:c1", "s:s2", "c:c3"]
    assert unit_ids(customer, session, "session").tolist() == ["s:s1", "s:s2", "c:c3"]


def test_bootstrap_is_seeded_and_covers_the_truth() -> None:
    rng = np.random.default_rng(1)
    clicks = (rng.random(4000) < 0.3).astype(float)
    one = bootstrap_ratio(clicks, np.ones(4000), samples=1000, seed=7)
    again = bootstrap_ratio(clicks, np.ones(4000), samples=1000, seed=7)
    assert (one.low, one.high) == (again.low, again.high)
    assert one.estimate == pytest.approx(clicks.mean())
    assert one.low < 0.3 < one.high
    width = 2 * 1.96 * np.sqrt(0.3 * 0.7 / 4000)  # normal approximation
    assert one.high - one.low == pytest.approx(width, rel=0.15)
    # chunking the resamples does not change them
    chunked = bootstrap_ratio(clicks, np.ones(4000), samples=1000, seed=7, max_cells=4000 * 64)
    np.testing.assert_array_equal(chunked.draws, one.draws)


def test_bootstrap_of_a_ratio_of_sums_and_empty_input() -> None:
    num = np.array([10.0, 0.0, 30.0])
    den = np.array([1.0, 0.0, 2.0])
    interval = bootstrap_ratio(num, den, samples=200, seed=0)
    assert interval.estimate == pytest.approx(40 / 3)
    assert np.isnan(bootstrap_ratio(np.zeros(0), np.zeros(0), samples=100).estimate)


def test_relative_uplift_interval() -> None:
    rng = np.random.default_rng(2)
    a = (rng.random(5000) < 0.10).astype(float)
    b = (rng.random(5000) < 0.15).astype(float)
    ia = bootstrap_ratio(a, np.ones(5000), samples=1000, seed=[0, 1])
    ib = bootstrap_ratio(b, np.ones(5000), samples=1000, seed=[0, 2])
    est, low, high = relative_uplift(ib, ia)
    assert est == pytest.approx(b.mean() / a.mean() - 1)
    assert 0 < low < est < high  # a true uplift of 50%: clearly above 0


def test_large_samples_use_the_normal_approximation() -> None:
    rng = np.random.default_rng(4)
    den = rng.integers(1, 5, size=3000).astype(float)
    num = rng.binomial(den.astype(int), 0.2).astype(float)
    exact = bootstrap_ratio(num, den, samples=2000, seed=1)
    normal = bootstrap_ratio(num, den, samples=2000, seed=1, max_units=1000)
    assert (exact.method, normal.method) == ("bootstrap", "normal")
    assert normal.estimate == exact.estimate
    assert normal.low == pytest.approx(exact.low, abs=0.003)
    assert normal.high == pytest.approx(exact.high, abs=0.003)
    assert np.std(normal.draws) == pytest.approx(np.std(exact.draws), rel=0.1)
