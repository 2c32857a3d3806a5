"""BG/NBD and Gamma-Gamma against the published CDNOW fits, and the model formulas against
their direct (textbook) forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

from recsys.analytics import btyd
from recsys.errors import InputError

CDNOW = Path(__file__).parent / "fixtures" / "cdnow_customers_summary_with_transactions.csv"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    frame = pd.read_csv(CDNOW)
    assert len(frame) == 2357
    return frame


@pytest.fixture(scope="module")
def bgnbd(cdnow: pd.DataFrame) -> btyd.BGNBD:
    return btyd.fit_bgnbd(cdnow["x"], cdnow["t_x"], cdnow["T"])


def test_bgnbd_reproduces_the_published_cdnow_fit(bgnbd: btyd.BGNBD) -> None:
    # Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert getattr(bgnbd, name) == pytest.approx(value, rel=1e-2), name
    assert bgnbd.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert bgnbd.converged
    assert bgnbd.customers == 2357


def test_conditional_expectation_matches_hardie(bgnbd: btyd.BGNBD) -> None:
    # Hardie's spreadsheet: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in 39 weeks
    expected = btyd.expected_purchases(bgnbd, 39.0, [2], [30.43], [38.86])
    assert expected[0] == pytest.approx(1.226, abs=2e-3)


def _paper_expectation(m: btyd.BGNBD, t: float, x: np.ndarray, tx: np.ndarray,
                       T: np.ndarray) -> np.ndarray:
    """Eq. 10 of the paper, literally (no Pfaff transformation)."""
    r, al, a, b = m.r, m.alpha, m.a, m.b
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (al + T + t))
    head = (a + b + x - 1) / (a - 1) * (1 - ((al + T) / (al + T + t)) ** (r + x) * hyp)
    return head / (1 + (x > 0) * a / (b + x - 1) * ((al + T) / (al + tx)) ** (r + x))


def test_expectation_equals_the_papers_formula(bgnbd: btyd.BGNBD, cdnow: pd.DataFrame) -> None:
    x, tx, T = (cdnow[c].to_numpy(np.float64) for c in ("x", "t_x", "T"))
    for t in (1.0, 39.0, 52.0):
        ours = btyd.expected_purchases(bgnbd, t, x, tx, T)
        np.testing.assert_allclose(ours, _paper_expectation(bgnbd, t, x, tx, T), rtol=1e-9)


def test_heavy_buyers_do_not_overflow() -> None:
    model = btyd.BGNBD(r=0.8, alpha=10.0, a=0.3, b=190.0)
    x = np.array([0.0, 5.0, 150.0, 400.0])
    tx = np.array([0.0, 20.0, 50.0, 52.0])
    T = np.full(4, 52.0)
    values = btyd.expected_purchases(model, 52.0, x, tx, T)
    assert np.isfinite(values).all() and (values >= 0).all()
    assert values[3] > values[2] > values[1]  # more past purchases, more expected
    alive = btyd.p_alive(model, x, tx, T)
    assert alive[0] == 1.0 and np.all((alive > 0) & (alive <= 1))


def test_a_equal_to_one_uses_the_limit(bgnbd: btyd.BGNBD) -> None:
    x, tx, T = np.array([0.0, 3.0]), np.array([0.0, 20.0]), np.array([30.0, 30.0])
    at_one = btyd.BGNBD(r=bgnbd.r, alpha=bgnbd.alpha, a=1.0, b=bgnbd.b)
    near = btyd.BGNBD(r=bgnbd.r, alpha=bgnbd.alpha, a=1.0 + 1e-5, b=bgnbd.b)
    np.testing.assert_allclose(btyd.expected_purchases(at_one, 20.0, x, tx, T),
                               btyd.expected_purchases(near, 20.0, x, tx, T), rtol=1e-3)


def test_likelihood_is_a_distribution_over_outcomes() -> None:
    """Times the ordering volume t_x^(x-1) / (x-1)! of the x - 1 earlier repeat purchases, the
    BG/NBD likelihood is the density of (x, t_x) for a given T; summed over x and integrated
    over t_x (x = 0 is a point mass) it is 1."""
    r, alpha, a, b, T = 0.5, 3.0, 0.8, 2.5, 6.0
    total = float(np.exp(btyd.bgnbd_log_likelihood(r, alpha, a, b, [0], [0], [T]))[0])
    for x in range(1, 80):
        def density(tx: float, x: int = x) -> float:
            ll = btyd.bgnbd_log_likelihood(r, alpha, a, b, [x], [tx], [T])[0]
            return float(np.exp(ll + (x - 1) * np.log(tx) - special.gammaln(x)))
        total += integrate.quad(density, 0, T, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)


def test_gamma_gamma_reproduces_the_published_cdnow_fit(cdnow: pd.DataFrame) -> None:
    # Fader, Hardie & Lee (2005), "RFM and CLV": p = 6.25, q = 3.74, gamma = 15.44 (946 customers)
    model = btyd.fit_gamma_gamma(cdnow["x"], cdnow["zbar"])
    assert model.customers == 946
    assert model.p == pytest.approx(6.25, rel=1e-2)
    assert model.q == pytest.approx(3.74, rel=1e-2)
    assert model.gamma == pytest.approx(15.44, rel=1e-2)
    value = btyd.expected_order_value(model, [0, 2], [0.0, 22.35])
    assert value[0] == pytest.approx(model.p * model.gamma / (model.q - 1))
    # Shrinks a customer's own mean towards the population mean.
    assert value[0] < value[1] < 22.35 or 22.35 < value[1] < value[0]


def test_discounted_clv_sums_discounted_monthly_purchases(bgnbd: btyd.BGNBD) -> None:
    x, tx, T = np.array([2.0, 0.0]), np.array([30.43, 0.0]), np.array([38.86, 38.86])
    value = np.array([20.0, 20.0])
    plain = btyd.discounted_clv(bgnbd, value, x, tx, T, periods=12, period_length=4.35,
                                discount_rate=0.0)
    np.testing.assert_allclose(plain, btyd.expected_purchases(bgnbd, 12 * 4.35, x, tx, T)
                               * value, rtol=1e-12)
    discounted = btyd.discounted_clv(bgnbd, value, x, tx, T, periods=12, period_length=4.35,
                                     discount_rate=0.01)
    assert np.all(discounted < plain) and np.all(discounted > plain / 1.01**12)


def test_summary_counts_purchase_days() -> None:
    orders = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b"],
        "ordered_at": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 17:00", "2024-01-15 10:00",
                                      "2024-01-08 12:00"]),
        "revenue": [10.0, 5.0, 30.0, 8.0],
    })
    summary = btyd.btyd_summary(orders, pd.Timestamp("2024-01-29 23:00")).set_index("customer_id")
    assert summary.loc["a", "frequency"] == 1  # two orders on day one are one purchase
    assert summary.loc["a", "recency"] == pytest.approx(2.0)
    assert summary.loc["a", "T"] == pytest.approx(4.0)
    assert summary.loc["a", "monetary_value"] == pytest.approx(30.0)  # repeat days only
    assert summary.loc["b", "frequency"] == 0 and summary.loc["b", "monetary_value"] == 0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="recency <= T"):
        btyd.fit_bgnbd([1], [5.0], [3.0])
    with pytest.raises(InputError, match="repeat customers"):
        btyd.fit_gamma_gamma([0, 0, 1], [0.0, 0.0, 3.0])
