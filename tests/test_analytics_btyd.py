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
    total = float(np.exp(btyd.bgnbd_log_likelihood(r, alpha, a, b, np.array([0]), np.array([0]),
                                                   np.array([T])))[0])
    for x in range(1, 80):
        def density(tx: float, x: int = x) -> float:
            ll = btyd.bgnbd_log_likelihood(r, alpha, a, b, np.array([x]), np.array([tx]),
                                           np.array([T]))[0]
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


# -- numerical accuracy against a high-precision reference ----------------------------------------

# Fitted on the three real datasets (weeks): Online Retail II 2009-2010, the dunnhumby sample,
# CDNOW (published); then a = 1 exactly, a > 1, and a heavy tail of b.
GRID_MODELS = [
    btyd.BGNBD(r=0.8741, alpha=10.20, a=0.2686, b=193.7),
    btyd.BGNBD(r=1.432, alpha=3.747, a=0.06917, b=35.91),
    btyd.BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426),
    btyd.BGNBD(r=0.5, alpha=2.0, a=1.0, b=3.0),
    btyd.BGNBD(r=2.0, alpha=0.5, a=3.0, b=0.7),
    btyd.BGNBD(r=0.9, alpha=8.0, a=0.4, b=600.0),
]
# scipy's hyp2f1 gave NaN for the first model at (0, 0, 0) and -1.0e6 for the second at
# (20, 8, 10): the values `recsys run` reported before.
GRID_CUSTOMERS = [(0, 0.0, 0.0), (0, 0.0, 50.0), (1, 2.0, 3.0), (5, 9.0, 10.0), (20, 8.0, 10.0),
                  (30, 40.0, 52.0), (127, 53.0, 53.3), (400, 50.0, 52.0)]


def _reference(m: btyd.BGNBD, t: float, x: int, tx: float, T: float) -> float:
    """Eq. 10 in mpmath at 40 digits, through Pfaff's form 2F1(r+x, a-1; a+b+x-1; -z) (for
    a = 1 the limit: the derivative of that 2F1 in its second parameter, numerically)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        r, al, a, b, t_, tx_, T_ = (mpmath.mpf(v) for v in (m.r, m.alpha, m.a, m.b, t, tx, T))
        z = t_ / (al + T_)
        if a == 1:
            head = -(b + x) * mpmath.diff(
                lambda e: mpmath.hyp2f1(r + x, e, b + x + e, -z), 0)
        else:
            head = (a + b + x - 1) / (a - 1) * (1 - mpmath.hyp2f1(r + x, a - 1, a + b + x - 1, -z))
        odds = a / (b + x - 1) * ((al + T_) / (al + tx_)) ** (r + x) if x > 0 else 0
        return float(head / (1 + odds))


@pytest.mark.parametrize("model", GRID_MODELS, ids=lambda m: f"a={m.a},b={m.b}")
def test_expectation_matches_mpmath(model: btyd.BGNBD) -> None:
    x, tx, T = (np.array(c, dtype=np.float64) for c in zip(*GRID_CUSTOMERS, strict=True))
    for t in (1.0, 26.0, 52.0, 260.0):
        ours = btyd.expected_purchases(model, t, x, tx, T)
        reference = [_reference(model, t, *c) for c in GRID_CUSTOMERS]
        np.testing.assert_allclose(ours, reference, rtol=1e-11, err_msg=f"t = {t}")


def test_extreme_parameters_stay_in_bounds() -> None:
    """Far outside the fitted range (tiny alpha, huge b, T = 0, five years) the answer may lose
    digits but never leaves [0, (r+x)/(alpha+T) t]."""
    model = btyd.BGNBD(r=3.0, alpha=0.01, a=0.05, b=1e6)
    x = np.array([0.0, 0.0, 3.0, 900.0])
    T = np.array([0.0, 5.0, 2.0, 104.0])
    for t in (0.5, 52.0, 260.0):
        values = btyd.purchases_between(model, np.array([0.0, t]), x, T)[0]
        assert np.isfinite(values).all() and (values > 0).all()
        assert (values <= (model.r + x) / (model.alpha + T) * t * (1 + 1e-12)).all()


def test_periods_add_up_to_the_whole_horizon(bgnbd: btyd.BGNBD, cdnow: pd.DataFrame) -> None:
    x, T = cdnow["x"].to_numpy(np.float64), cdnow["T"].to_numpy(np.float64)
    whole = btyd.purchases_between(bgnbd, np.array([0.0, 52.0]), x, T)[0]
    parts = btyd.purchases_between(bgnbd, np.array([0.0, 0.5, 20.0, 20.0, 52.0]), x, T)
    assert parts.shape == (4, len(x)) and (parts[2] == 0).all()
    np.testing.assert_allclose(parts.sum(axis=0), whole, rtol=1e-12)
    per_customer = np.stack([np.zeros_like(x), np.where(x > 0, 52.0, 26.0)])
    np.testing.assert_allclose(btyd.purchases_between(bgnbd, per_customer, x, T)[0][x > 0],
                               whole[x > 0], rtol=1e-15)
    with pytest.raises(InputError, match="ends"):
        btyd.purchases_between(bgnbd, np.array([1.0, 0.0]), np.ones(1), np.ones(1))


# -- invariants ------------------------------------------------------------------------------------


def _predicted(model: btyd.BGNBD, gg: btyd.GammaGamma, summary: pd.DataFrame,
               horizon: float) -> pd.DataFrame:
    x, tx, T, m = (summary[c].to_numpy(np.float64) for c in ("x", "t_x", "T", "m"))
    value = btyd.expected_order_value(gg, x, m)
    return pd.DataFrame({
        "customer_id": summary["id"].to_numpy(), "frequency": x, "T_weeks": T,
        "monetary_value": m, "p_alive": btyd.p_alive(model, x, tx, T),
        "expected_purchases": btyd.expected_purchases(model, horizon, x, tx, T),
        "expected_order_value": value,
        "predicted_clv": btyd.discounted_clv(model, value, x, tx, T, periods=12,
                                             period_length=horizon / 12, discount_rate=0.008)})


def test_invariants_hold_on_cdnow(bgnbd: btyd.BGNBD, cdnow: pd.DataFrame) -> None:
    gg = btyd.fit_gamma_gamma(cdnow["x"], cdnow["zbar"])
    summary = cdnow.rename(columns={"ID": "id", "zbar": "m"})
    assert btyd.prediction_problems(bgnbd, gg, 52.0, _predicted(bgnbd, gg, summary, 52.0)) == []


def test_each_broken_invariant_is_named(bgnbd: btyd.BGNBD, cdnow: pd.DataFrame) -> None:
    gg = btyd.fit_gamma_gamma(cdnow["x"], cdnow["zbar"])
    good = _predicted(bgnbd, gg, cdnow.rename(columns={"ID": "id", "zbar": "m"}), 52.0)
    breaks = {
        "p_alive is not finite": ("p_alive", np.nan),
        "p_alive outside [0, 1]": ("p_alive", 1.5),
        "expected_purchases outside": ("expected_purchases", 1e6),
        "expected_order_value not between": ("expected_order_value", -3.0),
        "predicted_clv outside": ("predicted_clv", -1.0),
    }
    for message, (column, value) in breaks.items():
        bad = good.copy()
        bad.loc[7, column] = value
        problems = btyd.prediction_problems(bgnbd, gg, 52.0, bad)
        assert any(p.startswith(message) and "1 customers (e.g. 8)" in p for p in problems), \
            (message, problems)
