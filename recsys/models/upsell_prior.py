"""The upsell prior: which pricier product a shopper who viewed product A buys instead,
learned from every product's "viewed A, bought B instead" sessions (a conditional logit).

A's candidates are the products of its category (exact path) priced within the upsell band.
A candidate B's features (``FEATURES``, one row per candidate):

- ``log_orders``: log(1 + B's orders in the category's best-seller table);
- ``same_brand``: 1 when A and B have the same (non-empty) brand, else 0;
- ``log_price_ratio`` and its square: log(price B / price A).

P(B | A) is the softmax of ``weights . features`` over A's candidates. The weights maximise
the likelihood of the evidence (each (A, B, sessions) row: ``sessions`` choices of B among A's
candidates), by Newton steps with a small ridge, over at most ``MAX_PRODUCTS`` viewed
products and ``MAX_CELLS`` candidate rows (the products A with the most evidence first).

The upsell list ranks by ``sessions(A, B) + PRIOR_SESSIONS x P(B | A)``: the sparse counts
shrunk toward the prior (a Dirichlet-multinomial posterior mean, up to A's own total), so one
or two sessions of evidence no longer outrank a product the whole shop's evidence favours. ``PRIOR_SESSIONS`` was
chosen on a validation time slice of the demo shop (``BENCHMARKS.md``, issue 15 item 1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FEATURES", "PRIOR_SESSIONS", "UpsellPrior", "features", "fit_weights",
           "fit_upsell_prior"]

FEATURES = ("log_orders", "same_brand", "log_price_ratio", "log_price_ratio_sq")
PRIOR_SESSIONS = 8.0  # the prior's weight, in sessions of evidence
MAX_CELLS = 2_000_000  # candidate rows the fit reads at most
MAX_PRODUCTS = 20_000  # viewed products it reads at most (those with the most evidence)
_RIDGE = 1.0  # on the weights, against a feature that never varies (no brands in the catalog)
_STEPS = 25


@dataclass(frozen=True)
class UpsellPrior:
    """The fitted weights (by ``FEATURES``) and what they were fitted on; the default (an
    artifact without ``upsell_prior.json``) is the category's orders alone."""

    weights: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
    prior_sessions: float = PRIOR_SESSIONS
    band: tuple[float, float] = (1.1, 2.0)
    products: int = 0  # viewed products whose evidence the fit read
    sessions: int = 0  # evidence sessions it read
    features: tuple[str, ...] = field(default=FEATURES)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(B | A) over one product's candidates (rows of ``x``, from ``features``)."""
        if not len(x):
            return np.zeros(0)
        s = x @ np.asarray(self.weights)
        p = np.exp(s - s.max())
        return p / p.sum()

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> UpsellPrior:
        raw = json.loads(path.read_text())
        return cls(weights=tuple(raw["weights"]), prior_sessions=float(raw["prior_sessions"]),
                   band=(float(raw["band"][0]), float(raw["band"][1])),
                   products=int(raw["products"]), sessions=int(raw["sessions"]),
                   features=tuple(raw["features"]))


def features(orders: np.ndarray, same_brand: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """(candidates x len(FEATURES)) from each candidate's category orders, same-brand flag and
    price ratio to the viewed product."""
    log_ratio = np.log(ratio)
    return np.column_stack([np.log1p(orders), same_brand.astype(float), log_ratio,
                            log_ratio ** 2])


def fit_weights(x: np.ndarray, counts: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Conditional-logit weights: rows ``x`` (cells x features) are candidates, ``group``
    (sorted, 0..g-1) the viewed product each belongs to, ``counts`` the sessions that chose
    it. Newton steps on the ridge-penalised log-likelihood."""
    n_groups = int(group[-1]) + 1 if len(group) else 0
    chosen = np.bincount(group, weights=counts, minlength=n_groups)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    w = np.zeros(x.shape[1])
    for _ in range(_STEPS):
        s = x @ w
        s -= np.maximum.reduceat(s, starts)[group]
        e = np.exp(s)
        p = e / np.add.reduceat(e, starts)[group]
        mean = np.add.reduceat(p[:, None] * x, starts)  # per group: expected features
        gradient = counts @ x - chosen @ mean - _RIDGE * w
        hessian = ((chosen[group] * p)[:, None] * x).T @ x - (chosen[:, None] * mean).T @ mean
        step = np.linalg.solve(hessian + _RIDGE * np.eye(len(w)), gradient)
        w += step
        if np.abs(step).max() < 1e-6:
            break
    return w


def fit_upsell_prior(bought_instead: pd.DataFrame, catalog: pd.DataFrame | None,
                     popular: pd.DataFrame, band: tuple[float, float]) -> UpsellPrior:
    """Fit on ``bought_instead`` (``viewed_bought.parquet``: product_a, product_b, sessions),
    the catalog's category / price / brand and ``popular`` (the best-seller table: scope,
    product_id, orders), over the candidates within ``band``."""
    if catalog is None or not {"category", "price"} <= set(catalog) or bought_instead.empty:
        return UpsellPrior(band=band)
    cat = catalog.dropna(subset=["category", "price"])
    cat = cat[cat["price"] > 0]
    brand = (cat["brand"].astype("string").str.strip().fillna("") if "brand" in cat
             else pd.Series("", index=cat.index, dtype="string"))
    frame = pd.DataFrame({"product_id": cat["product_id"].astype(str).to_numpy(),
                          "category": cat["category"].astype(str).to_numpy(),
                          "price": cat["price"].astype(float).to_numpy(),
                          "brand": brand.astype(str).to_numpy()})
    orders = popular[["scope", "product_id", "orders"]].rename(columns={"scope": "category"})
    frame = frame.merge(orders, on=["category", "product_id"], how="left")
    frame["orders"] = frame["orders"].fillna(0)
    by_category = {c: g for c, g in frame.groupby("category", sort=False)}
    row_of = dict(zip(frame["product_id"], range(len(frame)), strict=True))
    evidence = bought_instead.assign(product_a=bought_instead["product_a"].astype(str),
                                     product_b=bought_instead["product_b"].astype(str))
    evidence = evidence[evidence["product_a"].isin(row_of)]
    totals = evidence.groupby("product_a")["sessions"].sum().sort_values(ascending=False,
                                                                          kind="stable")
    parts: list[np.ndarray] = []
    chosen: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    cells = sessions = 0
    by_a = {a: g for a, g in evidence.groupby("product_a", sort=False)}
    for a in totals.index[:MAX_PRODUCTS]:
        row = frame.iloc[row_of[a]]
        pool = by_category[row["category"]]
        ratio = pool["price"].to_numpy() / row["price"]
        pool = pool[(ratio >= band[0]) & (ratio <= band[1]) & (pool["product_id"] != a)]
        counts = pool["product_id"].map(by_a[a].set_index("product_b")["sessions"]).fillna(0)
        if cells + len(pool) > MAX_CELLS:
            break
        if not counts.sum():
            continue
        same = (pool["brand"].to_numpy() == row["brand"]) & (pool["brand"].to_numpy() != "")
        parts.append(features(pool["orders"].to_numpy(float), same,
                              pool["price"].to_numpy() / row["price"]))
        chosen.append(counts.to_numpy(float))
        groups.append(np.full(len(pool), len(groups)))
        cells += len(pool)
        sessions += int(counts.sum())
    if not parts:
        return UpsellPrior(band=band)
    w = fit_weights(np.vstack(parts), np.concatenate(chosen), np.concatenate(groups))
    return UpsellPrior(weights=tuple(round(float(v), 6) for v in w), band=band,
                       products=len(parts), sessions=sessions)
