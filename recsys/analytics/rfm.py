"""RFM: recency, frequency and monetary quintile scores and six named segments.

Scores are 1..5, 5 best (most recent, most frequent, highest spend). A customer's score on a
measure is ``floor(5 x (average rank - 0.5) / n) + 1`` over the n customers, so the five scores
hold a fifth of the customers each, and customers with equal values always get equal scores
(many one-order customers share one F score instead of being split arbitrarily).

Segments, on R and FM = round-half-up of (F + M) / 2; every (R, FM) cell has exactly one:

==============  ====================  =======================================================
segment         rule                  reading
==============  ====================  =======================================================
champions       R >= 4 and FM >= 4    bought recently, often and for a lot
loyal           R >= 3 and FM >= 3    good customers, not champions
potential       R >= 3 and FM <= 2    recent, but few or small orders yet
at_risk         R <= 2 and FM >= 3    were good customers, not seen for a while
hibernating     R == 2 and FM <= 2    small and lapsing
lost            R == 1 and FM <= 2    small and long gone
==============  ====================  =======================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SEGMENTS", "quintile_scores", "rfm_table", "segment_of", "segment_summary"]

SEGMENTS: tuple[str, ...] = ("champions", "loyal", "potential", "at_risk", "hibernating", "lost")


def quintile_scores(values: np.ndarray | pd.Series, *, higher_is_better: bool = True,
                    bins: int = 5) -> np.ndarray:
    """Scores 1..``bins`` by average rank: equal values get equal scores (see module doc)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return np.zeros(0, dtype=np.int8)
    ranks = pd.Series(v if higher_is_better else -v).rank(method="average").to_numpy()
    scores = np.floor(bins * (ranks - 0.5) / len(v)).astype(np.int64) + 1
    return np.clip(scores, 1, bins).astype(np.int8)


def segment_of(r: np.ndarray, fm: np.ndarray) -> np.ndarray:
    """Segment names for R and FM scores (the table in the module docstring)."""
    r = np.asarray(r)
    fm = np.asarray(fm)
    conditions = [(r >= 4) & (fm >= 4), (r >= 3) & (fm >= 3), (r >= 3) & (fm <= 2),
                  (r <= 2) & (fm >= 3), (r == 2) & (fm <= 2)]
    return np.select(conditions, list(SEGMENTS[:5]), default="lost")


def rfm_table(customers: pd.DataFrame, *, monetary: str = "revenue",
              frequency: str = "orders") -> pd.DataFrame:
    """Per customer: r, f, m scores, fm, rfm_score ("545") and segment.

    ``customers`` needs customer_id, recency_days, and the ``frequency`` and ``monetary``
    columns (for example orders / purchase_frequency and revenue / profit)."""
    r = quintile_scores(customers["recency_days"], higher_is_better=False)
    f = quintile_scores(customers[frequency])
    m = quintile_scores(customers[monetary])
    fm = np.floor((f.astype(np.int64) + m) / 2 + 0.5).astype(np.int8)
    score = (pd.Series(r).astype(str) + pd.Series(f).astype(str) + pd.Series(m).astype(str))
    return pd.DataFrame({"customer_id": customers["customer_id"].to_numpy(), "r": r, "f": f,
                         "m": m, "fm": fm, "rfm_score": score.to_numpy(),
                         "segment": segment_of(r, fm)})


def segment_summary(rfm: pd.DataFrame, revenue: np.ndarray | pd.Series,
                    clv: np.ndarray | pd.Series | None = None) -> pd.DataFrame:
    """One row per segment (all six, in order): customers, customer_share, revenue,
    revenue_share, and mean_predicted_clv when ``clv`` is given."""
    frame = pd.DataFrame({"segment": rfm["segment"].to_numpy(),
                          "revenue": np.asarray(revenue, dtype=np.float64)})
    if clv is not None:
        frame["clv"] = np.asarray(clv, dtype=np.float64)
    grouped = frame.groupby("segment")
    out = pd.DataFrame(index=pd.Index(SEGMENTS, name="segment"))
    out["customers"] = grouped.size().reindex(out.index, fill_value=0).astype(np.int64)
    out["customer_share"] = out["customers"] / max(len(frame), 1)
    out["revenue"] = grouped["revenue"].sum().reindex(out.index, fill_value=0.0)
    total = float(frame["revenue"].sum())
    out["revenue_share"] = out["revenue"] / total if total > 0 else 0.0
    if clv is not None:
        out["mean_predicted_clv"] = grouped["clv"].mean().reindex(out.index)
    return out.reset_index()
