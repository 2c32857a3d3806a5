"""Buy-till-you-die models: BG/NBD (how many purchases) and Gamma-Gamma (how much per purchase),
fitted by maximum likelihood with scipy, and the discounted predicted CLV built from them.

Implemented here rather than through ``lifetimes``/``btyd`` (unmaintained, and they do not run
on pandas 3); the test suite reproduces the published fits on the CDNOW sample.

Inputs per customer (one calendar day = at most one purchase, as in the papers):
``frequency`` x = repeat purchase days (purchase days - 1), ``recency`` t_x = time from the
first to the last purchase day, ``T`` = time from the first purchase day to the observation
end, and for Gamma-Gamma ``monetary_value`` = mean value of the repeat purchase days. Time is
in any unit (weeks here); predictions use the same unit.

References
    Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the
    Pareto/NBD model", Marketing Science 24(2) (BG/NBD; CDNOW: r=0.243, alpha=4.414, a=0.793,
    b=2.426). Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
    base analysis", JMR 42(4) (Gamma-Gamma; CDNOW: p=6.25, q=3.74, gamma=15.44). Fader & Hardie
    (2013), "The Gamma-Gamma model of monetary value" (note).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special

from recsys.errors import InputError

__all__ = [
    "BGNBD",
    "GammaGamma",
    "btyd_summary",
    "bgnbd_log_likelihood",
    "fit_bgnbd",
    "expected_purchases",
    "p_alive",
    "purchases_between",
    "gamma_gamma_log_likelihood",
    "fit_gamma_gamma",
    "expected_order_value",
    "discounted_clv",
    "prediction_problems",
]

_LOG_BOUNDS = (np.log(1e-6), np.log(1e6))


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD: purchase rate ~ Gamma(r, alpha), dropout probability ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    customers: int = 0
    converged: bool = True

    def figures(self) -> dict[str, object]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b,
                "log_likelihood": self.log_likelihood, "customers": self.customers,
                "converged": self.converged}


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    customers: int = 0
    converged: bool = True

    def figures(self) -> dict[str, object]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma,
                "log_likelihood": self.log_likelihood, "customers": self.customers,
                "converged": self.converged}


def btyd_summary(orders: pd.DataFrame, end: pd.Timestamp, *,
                 time_unit_days: float = 7.0) -> pd.DataFrame:
    """Per customer from an order table (customer_id, ordered_at, revenue): frequency, recency,
    T (in units of ``time_unit_days``) and monetary_value (mean revenue of the repeat purchase
    days; 0 without repeats). Orders on one calendar day count as one purchase."""
    day = orders["ordered_at"].dt.floor("D")
    days = (pd.DataFrame({"customer_id": orders["customer_id"].to_numpy(), "day": day.to_numpy(),
                          "revenue": orders["revenue"].to_numpy(np.float64)})
            .groupby(["customer_id", "day"], sort=True, as_index=False)["revenue"].sum())
    first_of = ~days["customer_id"].duplicated().to_numpy()
    per = days.groupby("customer_id", sort=True).agg(purchases=("day", "size"),
                                                     first=("day", "min"), last=("day", "max"))
    repeat_revenue = (days.loc[~first_of].groupby("customer_id")["revenue"].sum()
                      .reindex(per.index, fill_value=0.0))
    frequency = per["purchases"].to_numpy(np.float64) - 1
    unit = np.timedelta64(1, "D") * time_unit_days
    end_day = np.datetime64(pd.Timestamp(end).floor("D"))
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_revenue.to_numpy() / frequency, 0.0)
    return pd.DataFrame({
        "customer_id": per.index.to_numpy(),
        "frequency": frequency,
        "recency": (per["last"].to_numpy() - per["first"].to_numpy()) / unit,
        "T": (end_day - per["first"].to_numpy()) / unit,
        "monetary_value": monetary,
    })


def _arrays(*columns: np.ndarray | pd.Series | list[float]) -> list[np.ndarray]:
    out = [np.asarray(c, dtype=np.float64) for c in columns]
    if len({a.shape for a in out}) != 1:
        raise InputError("frequency, recency and T must have the same length")
    return out


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float,
                         frequency: np.ndarray, recency: np.ndarray,
                         T: np.ndarray) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), in log-sum-exp
    form so that no term overflows:

    LL = ln Gamma(r+x) - ln Gamma(r) + r ln alpha + ln B(a, b+x) - ln B(a, b)
         + ln[ (alpha+T)^-(r+x) + 1{x>0} a/(b+x-1) (alpha+t_x)^-(r+x) ].
    """
    x, tx, t = _arrays(frequency, recency, T)
    common = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
              + special.betaln(a, b + x) - special.betaln(a, b))
    a3 = -(r + x) * np.log(alpha + t)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                  - (r + x[repeat]) * np.log(alpha + tx[repeat]))
    return common + np.logaddexp(a3, a4)


def _fit(neg_ll: Callable[[np.ndarray], float], start: np.ndarray) -> optimize.OptimizeResult:
    bounds = [_LOG_BOUNDS] * len(start)
    result = optimize.minimize(neg_ll, start, method="L-BFGS-B", bounds=bounds,
                               options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8})
    if not result.success:  # e.g. a line search that failed on a flat ridge
        retry = optimize.minimize(neg_ll, result.x, method="Nelder-Mead", bounds=bounds,
                                  options={"maxfev": 4000, "xatol": 1e-8, "fatol": 1e-12})
        if retry.fun <= result.fun:
            return retry
    return result


def _at_bound(theta: np.ndarray) -> bool:
    return bool(np.any(np.abs(theta) > _LOG_BOUNDS[1] - 1e-3))


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows and their counts: customers with identical summaries share one term."""
    stacked = np.column_stack(columns)
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, j] for j in range(rows.shape[1])], counts.astype(np.float64)


def fit_bgnbd(frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series,
              T: np.ndarray | pd.Series, *, penalizer: float = 0.0) -> BGNBD:
    """Maximum-likelihood BG/NBD over log-parameters (L-BFGS-B, then Nelder-Mead).

    ``penalizer`` adds ``penalizer x sum(params^2)`` to the mean negative log-likelihood."""
    x, tx, t = _arrays(frequency, recency, T)
    if len(x) == 0:
        raise InputError("BG/NBD needs at least one customer")
    if (x < 0).any() or (tx < 0).any() or (tx > t + 1e-9).any():
        raise InputError("BG/NBD needs frequency >= 0 and 0 <= recency <= T for every customer")
    (ux, utx, ut), weights = _unique_rows(x, tx, t)
    total = weights.sum()

    def neg_ll(theta: np.ndarray) -> float:
        r, alpha, a, b = np.exp(theta)
        ll = bgnbd_log_likelihood(r, alpha, a, b, ux, utx, ut)
        penalty = penalizer * float(np.sum(np.exp(theta) ** 2))
        return float(-(weights @ ll) / total + penalty)

    start = np.log([1.0, max(float(t.mean()), 1e-3), 1.0, 1.0])
    result = _fit(neg_ll, start)
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    ll = float(weights @ bgnbd_log_likelihood(r, alpha, a, b, ux, utx, ut))
    return BGNBD(r, alpha, a, b, ll, len(x), bool(result.success) and not _at_bound(result.x))


def p_alive(model: BGNBD, frequency: np.ndarray | pd.Series, recency: np.ndarray | pd.Series,
            T: np.ndarray | pd.Series) -> np.ndarray:
    """P(still active | x, t_x, T) = 1 / (1 + 1{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    x, tx, t = _arrays(frequency, recency, T)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = (np.log(a) - np.log(b + x - 1)
                    + (r + x) * (np.log(alpha + t) - np.log(alpha + tx)))
    log_odds = np.where(x > 0, log_odds, -np.inf)
    return np.exp(-np.logaddexp(0.0, log_odds))


def expected_purchases(model: BGNBD, t: float | np.ndarray, frequency: np.ndarray | pd.Series,
                       recency: np.ndarray | pd.Series, T: np.ndarray | pd.Series) -> np.ndarray:
    """E[purchases in (T, T+t] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10), evaluated as
    P(alive) x E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p] (see :func:`purchases_between`)."""
    x, tx, tt = _arrays(frequency, recency, T)
    horizon = np.broadcast_to(np.asarray(t, dtype=np.float64), x.shape)
    ends = np.stack([np.zeros_like(x), horizon])
    return purchases_between(model, ends, x, tt)[0] * p_alive(model, x, tx, tt)


def purchases_between(model: BGNBD, ends: np.ndarray, frequency: np.ndarray,
                      T: np.ndarray) -> np.ndarray:
    """E[purchases in (T + ends[i], T + ends[i+1]] | alive at T, x, T] for each customer:
    ``ends`` of shape (k+1,) (the same for everyone) or (k+1, customers), non-decreasing along
    its first axis; the result has shape (k, customers).

    Given alive at T, the rate is lambda ~ Gamma(r+x, alpha+T) and the dropout probability
    p ~ Beta(a, b+x); with lambda integrated out, E[Y(t)] = E_p[(1 - (1 + p z)^-(r+x)) / p],
    z = t/(alpha+T). Scipy's hyp2f1 for the paper's closed form loses every digit for fitted
    parameters of real shops (large b+x, z near 1), so the p integral is taken by Gauss-Jacobi
    quadrature for the Beta(a, b+x) weight instead: a positive, bounded integrand (no
    cancellation, no special case at a = 1) and positive weights, so each result lies in
    [0, (r+x)(ends[i+1]-ends[i])/(alpha+T)]. Agrees with mpmath to 1e-11 (tests).
    """
    x, tt = _arrays(frequency, T)
    h = np.broadcast_to(np.asarray(ends, dtype=np.float64).reshape(len(ends), -1),
                        (len(ends), len(x)))
    if len(h) < 2 or (h[0] < 0).any() or (np.diff(h, axis=0) < 0).any():
        raise InputError("purchases_between needs at least two ends, 0 <= ends[0] <= ends[1] ...")
    out = np.empty((len(h) - 1, len(x)))
    z = h / (model.alpha + tt)
    values, group = np.unique(x, return_inverse=True)
    for i, value in enumerate(values):  # a loop over distinct frequencies, not customers
        members = np.flatnonzero(group == i)
        nodes, weights = _beta_rule(model.a, model.b + value,
                                    _nodes_for(float(z[-1, members].max())))
        s, weights = model.r + value, weights / nodes
        block = max(1, _CELLS // (len(h) * len(nodes)))
        for lo in range(0, len(members), block):
            part = members[lo:lo + block]
            # log(1 + p z) at every end; consecutive differences are >= 0 and exact enough
            logs = np.log1p(z[:, part, None] * nodes)
            gain = np.exp(-s * logs[:-1]) * -np.expm1(-s * np.diff(logs, axis=0))
            out[:, part] = gain @ weights
    return out


_CELLS = 1 << 20  # (ends x customers x nodes) per quadrature block: a few MB at a time


def _nodes_for(z: float) -> int:
    """Quadrature nodes for z = t/(alpha+T) up to ``z``: the integrand's pole at p = -1/z
    nears the interval as z grows, and Gauss rules converge like (1 + 2/sqrt(z))^-2n."""
    return int(min(24 + 10 * np.ceil(np.sqrt(z)), 500))


def _beta_rule(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the Beta(a, b) density on [0, 1]: nodes and weights summing to 1.

    Golub-Welsch on the Jacobi matrix of the weight (1-u)^(b-1) (1+u)^(a-1) on [-1, 1],
    mapped to p = (1+u)/2; weights from the eigenvectors' first components, so no Beta
    function (which over- or underflows for large b) is ever formed."""
    alpha, beta = b - 1.0, a - 1.0
    k = np.arange(n, dtype=np.float64)
    s = 2.0 * k + alpha + beta
    with np.errstate(divide="ignore", invalid="ignore"):
        diag = (beta - alpha) * (beta + alpha) / (s * (s + 2.0))
        k1, s1 = k[1:], s[1:]
        off = np.sqrt(4.0 * k1 * (k1 + alpha) * (k1 + beta) * (k1 + alpha + beta)
                      / (s1 * s1 * (s1 + 1.0) * (s1 - 1.0)))
    diag[0] = (beta - alpha) / (alpha + beta + 2.0)
    if n > 1:
        off[0] = np.sqrt(4.0 * (1.0 + alpha) * (1.0 + beta)
                         / ((2.0 + alpha + beta) ** 2 * (3.0 + alpha + beta)))
    u, vectors = linalg.eigh_tridiagonal(diag, off)
    weights = vectors[0] ** 2
    return np.clip((1.0 + u) / 2.0, np.finfo(np.float64).tiny, 1.0), weights / weights.sum()


def gamma_gamma_log_likelihood(p: float, q: float, gamma: float, frequency: np.ndarray,
                               monetary_value: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend m over x > 0 purchases:

    LL = ln Gamma(px+q) - ln Gamma(px) - ln Gamma(q) + q ln gamma + (px-1) ln m + px ln x
         - (px+q) ln(gamma + m x).
    """
    x, m = _arrays(frequency, monetary_value)
    px = p * x
    return (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q)
            + q * np.log(gamma) + (px - 1) * np.log(m) + px * np.log(x)
            - (px + q) * np.log(gamma + m * x))


def fit_gamma_gamma(frequency: np.ndarray | pd.Series, monetary_value: np.ndarray | pd.Series,
                    *, penalizer: float = 0.0) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma over the customers with x > 0 and a positive mean spend."""
    x, m = _arrays(frequency, monetary_value)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    if keep.sum() < 3:
        raise InputError(f"Gamma-Gamma needs repeat customers with a positive spend; only "
                         f"{int(keep.sum())} in the data")
    (ux, um), weights = _unique_rows(x[keep], m[keep])
    total = weights.sum()

    def neg_ll(theta: np.ndarray) -> float:
        p, q, gamma = np.exp(theta)
        ll = gamma_gamma_log_likelihood(p, q, gamma, ux, um)
        return float(-(weights @ ll) / total + penalizer * float(np.sum(np.exp(theta) ** 2)))

    result = _fit(neg_ll, np.log([1.0, 1.0, max(float(np.median(um)), 1e-3)]))
    p, q, gamma = (float(v) for v in np.exp(result.x))
    ll = float(weights @ gamma_gamma_log_likelihood(p, q, gamma, ux, um))
    return GammaGamma(p, q, gamma, ll, int(keep.sum()),
                      bool(result.success) and not _at_bound(result.x))


def expected_order_value(model: GammaGamma, frequency: np.ndarray | pd.Series,
                         monetary_value: np.ndarray | pd.Series) -> np.ndarray:
    """E[spend per purchase | x, m] = p (gamma + x m) / (p x + q - 1): a weighted mean of the
    customer's own mean spend and the population mean p gamma / (q - 1) (that mean for x = 0)."""
    x, m = _arrays(frequency, monetary_value)
    m = np.where((x > 0) & np.isfinite(m), m, 0.0)
    if model.q <= 1:
        raise InputError(f"Gamma-Gamma q = {model.q:.3g} <= 1: the mean spend is infinite; "
                         "the spend data is too heavy-tailed for this model")
    return model.p * (model.gamma + x * m) / (model.p * x + model.q - 1.0)


def discounted_clv(model: BGNBD, value_per_purchase: np.ndarray, frequency: np.ndarray,
                   recency: np.ndarray, T: np.ndarray, *, periods: int, period_length: float,
                   discount_rate: float) -> np.ndarray:
    """Discounted predicted CLV over ``periods`` periods of ``period_length`` time units:
    sum_i (E[Y(i L)] - E[Y((i-1) L)]) x value / (1 + d)^i, d = ``discount_rate`` per period
    (purchases of period i are discounted to its end)."""
    x, tx, t, value = _arrays(frequency, recency, T, value_per_purchase)
    ends = np.arange(periods + 1, dtype=np.float64) * period_length
    # Each period's purchases directly, not as differences of cumulative expectations: >= 0.
    per_period = purchases_between(model, ends, x, t)
    factors = (1.0 + discount_rate) ** -np.arange(1, periods + 1, dtype=np.float64)
    return (factors @ per_period) * p_alive(model, x, tx, t) * value


def prediction_problems(bgnbd: BGNBD | None, gamma_gamma: GammaGamma | None, horizon: float,
                        customers: pd.DataFrame) -> list[str]:
    """The invariants every run's predictions must meet; one line per broken one (empty: fine).

    ``customers`` has customer_id, frequency, T_weeks, monetary_value, p_alive,
    expected_purchases (over ``horizon``), expected_order_value and predicted_clv. Checked:
    all finite; 0 <= P(alive) <= 1; 0 <= E[purchases] <= (r+x)/(alpha+T) x horizon (the
    expectation with nobody dropping out); the Gamma-Gamma order value between the customer's
    own mean spend and the population mean p gamma/(q-1), and > 0; where the order value is
    >= 0, 0 <= predicted CLV <= E[purchases] x order value (discounting only lowers it).
    """
    x = customers["frequency"].to_numpy(np.float64)
    alive = customers["p_alive"].to_numpy(np.float64)
    expected = customers["expected_purchases"].to_numpy(np.float64)
    value = customers["expected_order_value"].to_numpy(np.float64)
    clv = customers["predicted_clv"].to_numpy(np.float64)
    slack = 1e-9
    checks: list[tuple[str, np.ndarray]] = [
        (name + " is not finite", ~np.isfinite(column)) for name, column in
        (("p_alive", alive), ("expected_purchases", expected),
         ("expected_order_value", value), ("predicted_clv", clv))]
    checks.append(("p_alive outside [0, 1]", (alive < 0) | (alive > 1)))
    if bgnbd is not None:
        ceiling = (bgnbd.r + x) / (bgnbd.alpha + customers["T_weeks"].to_numpy(np.float64)) \
            * horizon
        checks.append(("expected_purchases outside [0, (r+x)/(alpha+T) x horizon]",
                       (expected < 0) | (expected > ceiling * (1 + slack))))
    if gamma_gamma is not None:
        own = np.where(x > 0, customers["monetary_value"].to_numpy(np.float64), np.inf)
        mean = gamma_gamma.p * gamma_gamma.gamma / (gamma_gamma.q - 1.0)
        low, high = np.minimum(own, mean), np.where(x > 0, np.maximum(own, mean), mean)
        checks.append(("expected_order_value not between the own and the population mean spend",
                       (value <= 0) | (value < low * (1 - slack)) | (value > high * (1 + slack))))
    checks.append(("predicted_clv outside [0, expected_purchases x expected_order_value]",
                   (value >= 0) & ((clv < 0) | (clv > expected * value * (1 + slack) + 1e-9))))
    ids = customers["customer_id"].to_numpy()
    return [f"{what}: {int(bad.sum()):,} customers (e.g. {ids[np.argmax(bad)]})"
            for what, bad in checks if bad.any()]
