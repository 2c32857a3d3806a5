"""BG/NBD calibration / holdout check on real shops, as the BTYD literature plots it.

For Online Retail II and the dunnhumby sample: the last ``--holdout-share`` of the date range
(whole days) is the holdout. The model is fitted on the customers' purchase days before it
(frequency, recency and T measured to the last calibration day, in weeks), then for every
calibration customer the expected number of purchase days in the holdout,
E[Y(t) | x, t_x, T] with t the holdout length, is set against the actual number, averaged per
calibration frequency group (0, 1, ..., 6, 7+ repeat purchase days; Fader, Hardie & Lee 2005,
figure 5). Customers first seen in the holdout are not part of it, as in the papers. The same
for Gamma-Gamma: expected spend per purchase day against the actual holdout spend per
purchase day of the customers who bought in the holdout.

The CDNOW sample in ``tests/fixtures`` holds only the 39-week calibration summary (x, t_x, T),
not the transactions after it, so for CDNOW (and the other two) the script also gives the
in-sample check: the expected number of customers with 0, 1, ..., 7+ repeat purchases against
the actual one (the paper's figure 2), from P(X(T) = x) summed over the customers' own T.

Writes one PNG per dataset (predicted vs actual per group) into ``--out`` (a temporary folder
by default) and prints Markdown tables for BENCHMARKS.md. Beside ours, the closed form
through scipy's hyp2f1 that the CLV job used before, on the same customers (also for the fit
on the whole period with the job's 12-month horizon, where it broke).

    python benchmarks/btyd_calibration.py [--holdout-share 0.3] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluation_bench import load_dunnhumby, load_online_retail  # noqa: E402

from recsys.analytics import btyd  # noqa: E402
from recsys.analytics.clv import order_table  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
CDNOW = REPO / "tests" / "fixtures" / "cdnow_customers_summary_with_transactions.csv"
GROUPS = [str(k) for k in range(7)] + ["7+"]
_WEEK = 7.0
_DAY = pd.Timedelta(days=1)


def split(orders: pd.DataFrame, holdout_share: float
          ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, float, pd.Timestamp]:
    """Calibration summary (btyd_summary columns, one row per calibration customer), their
    actual purchase days and revenue in the holdout, the holdout length in weeks and the first
    holdout day. ``orders``: customer_id, ordered_at, revenue (one row per order)."""
    day = orders["ordered_at"].dt.floor("D")
    first, last = day.min(), day.max()
    cutoff = first + pd.Timedelta(days=round((1 - holdout_share) * (last - first).days))
    calibration = orders[day < cutoff]
    summary = btyd.btyd_summary(calibration, cutoff - _DAY, time_unit_days=_WEEK)
    later = pd.DataFrame({"customer_id": orders["customer_id"], "day": day,
                          "revenue": orders["revenue"]})[day >= cutoff]
    per = later.groupby("customer_id").agg(days=("day", "nunique"), revenue=("revenue", "sum"))
    per = per.reindex(summary["customer_id"], fill_value=0)
    return (summary, per["days"].to_numpy(np.float64), per["revenue"].to_numpy(np.float64),
            (last - (cutoff - _DAY)) / _DAY / _WEEK, cutoff)


def spend_table(summary: pd.DataFrame, days: np.ndarray, revenue: np.ndarray) -> pd.DataFrame:
    """Gamma-Gamma fitted on the calibration repeat spend: its expected spend per purchase day
    against the actual holdout spend per purchase day, over the customers who bought in the
    holdout, by calibration frequency group."""
    x, m = summary["frequency"].to_numpy(np.float64), summary["monetary_value"].to_numpy()
    model = btyd.fit_gamma_gamma(x, m)
    bought = days > 0
    frame = pd.DataFrame({"group": np.minimum(x, 7).astype(int)[bought],
                          "actual": revenue[bought] / days[bought],
                          "predicted": btyd.expected_order_value(model, x, m)[bought]})
    table = frame.groupby("group").agg(customers=("actual", "size"),
                                       actual=("actual", "mean"),
                                       predicted=("predicted", "mean")).reindex(range(8))
    table.index = pd.Index(GROUPS, name="group")
    print(f"\nGamma-Gamma on the calibration period: p = {model.p:.4g}, q = {model.q:.4g}, "
          f"gamma = {model.gamma:.4g}; spend per purchase day in the holdout, customers who "
          f"bought in it:\n")
    return table.reset_index().rename(columns={"customers": "buying customers",
                                               "actual": "actual mean spend",
                                               "predicted": "predicted mean spend"})


def frequency_pmf(model: btyd.BGNBD, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """P(X(t) = x) of BG/NBD (Fader, Hardie & Lee 2005, eq. 8), in log space; the sum over
    j < x is the negative binomial survival function."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    share = alpha / (alpha + t)
    first = np.exp(special.betaln(a, b + x) - special.betaln(a, b)
                   + stats.nbinom.logpmf(x, r, share))
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.exp(special.betaln(a + 1, b + x - 1) - special.betaln(a, b)
                        + stats.nbinom.logsf(x - 1, r, share))
    return first + np.where(x > 0, second, 0.0)


def in_sample(model: btyd.BGNBD, x: np.ndarray, T: np.ndarray) -> pd.DataFrame:
    """Actual vs expected customers with 0..6 and 7+ repeat purchases (each with its own T)."""
    expected = [float(frequency_pmf(model, np.full_like(T, k), T).sum()) for k in range(7)]
    expected.append(len(T) - sum(expected))
    actual = [int((x == k).sum()) for k in range(7)] + [int((x >= 7).sum())]
    return pd.DataFrame({"group": GROUPS, "actual customers": actual,
                         "expected customers": expected})


def holdout_table(summary: pd.DataFrame, actual: np.ndarray,
                  predicted: np.ndarray) -> pd.DataFrame:
    group = np.minimum(summary["frequency"].to_numpy(), 7).astype(int)
    frame = pd.DataFrame({"group": group, "actual": actual, "predicted": predicted})
    table = frame.groupby("group").agg(customers=("actual", "size"),
                                       actual=("actual", "mean"),
                                       predicted=("predicted", "mean"))
    table = table.reindex(range(8))
    table.index = pd.Index(GROUPS, name="group")
    return table.reset_index()


def scipy_closed_form(model: btyd.BGNBD, t: float, x: np.ndarray, tx: np.ndarray,
                      T: np.ndarray) -> np.ndarray:
    """The expectation as computed before (Pfaff-transformed eq. 10 through scipy's hyp2f1):
    the peer that gave negative and NaN predictions on real fits."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    hyp = special.hyp2f1(r + x, a - 1.0, a + b + x - 1.0, -t / (alpha + T))
    return (a + b + x - 1.0) / (a - 1.0) * (1.0 - hyp) * btyd.p_alive(model, x, tx, T)


def peer_line(model: btyd.BGNBD, t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray,
              ours: np.ndarray) -> str:
    closed = scipy_closed_form(model, t, x, tx, T)
    ceiling = (model.r + x) / (model.alpha + T) * t
    broken = ~np.isfinite(closed) | (closed < 0) | (closed > ceiling * (1 + 1e-9))
    ok = ~broken
    worst = float(np.max(np.abs(closed[ok] / ours[ok] - 1))) if ok.any() else float("nan")
    return (f"scipy hyp2f1 closed form on the same customers: {int(np.isnan(closed).sum()):,} "
            f"NaN, {int(broken.sum()):,} outside [0, (r+x)/(alpha+T) t] (range "
            f"{np.nanmin(closed):,.4g} to {np.nanmax(closed):,.4g}); largest relative "
            f"difference to ours where it is in range {worst:.2g}.")


def markdown(frame: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:,.3f}"
        if isinstance(v, int | np.integer):
            return f"{v:,}"
        return str(v)
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" if j == 0 else "---:" for j in range(len(frame.columns))) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def plot(name: str, table: pd.DataFrame, path: Path, *, holdout: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if holdout:
        ax.plot(table["group"], table["actual"], "o-", label="actual")
        ax.plot(table["group"], table["predicted"], "s--", label="BG/NBD")
        ax.set_ylabel("mean purchase days in the holdout")
    else:
        ax.plot(table["group"], table["actual customers"], "o-", label="actual")
        ax.plot(table["group"], table["expected customers"], "s--", label="BG/NBD")
        ax.set_ylabel("customers")
    ax.set_xlabel("repeat purchase days in the calibration period")
    ax.set_title(name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_dataset(name: str, lines: pd.DataFrame, holdout_share: float, out: Path) -> None:
    started = time.perf_counter()
    orders = order_table(lines).orders
    summary, actual, revenue, weeks, cutoff = split(orders, holdout_share)
    x, tx, T = (summary[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    model = btyd.fit_bgnbd(x, tx, T)
    predicted = btyd.expected_purchases(model, weeks, x, tx, T)
    seconds = time.perf_counter() - started
    table = holdout_table(summary, actual, predicted)
    print(f"\n### {name}: holdout from {cutoff:%Y-%m-%d} ({weeks:.1f} weeks), "
          f"{len(summary):,} calibration customers")
    print(f"\nBG/NBD on the calibration period: r = {model.r:.4g}, alpha = {model.alpha:.4g}, "
          f"a = {model.a:.4g}, b = {model.b:.4g}, converged = {model.converged}; "
          f"split, fit and predict {seconds:.1f} s. Holdout purchase days, all calibration "
          f"customers: actual {actual.sum():,.0f}, predicted {predicted.sum():,.0f}.\n")
    print(peer_line(model, weeks, x, tx, T, predicted) + "\n")
    print(markdown(table.rename(columns={"actual": "actual mean",
                                         "predicted": "predicted mean"})))
    print("\nIn-sample (calibration) frequencies:\n")
    print(markdown(in_sample(model, x, T)))
    print(markdown(spend_table(summary, actual, revenue)))
    full = btyd.btyd_summary(orders, orders["ordered_at"].max(), time_unit_days=_WEEK)
    fx, ftx, fT = (full[c].to_numpy(np.float64) for c in ("frequency", "recency", "T"))
    whole = btyd.fit_bgnbd(fx, ftx, fT)
    horizon = 365.25 / _WEEK  # the CLV job's default: 12 months
    print(f"\nThe whole period as `recsys run` fits it (r = {whole.r:.4g}, alpha = "
          f"{whole.alpha:.4g}, a = {whole.a:.4g}, b = {whole.b:.4g}), 12 months ahead: "
          + peer_line(whole, horizon, fx, ftx, fT,
                      btyd.expected_purchases(whole, horizon, fx, ftx, fT)))
    plot(f"{name}: holdout", table, out / f"{name.split()[0].lower()}_holdout.png",
         holdout=True)


def run_cdnow(out: Path) -> None:
    summary = pd.read_csv(CDNOW)
    x, tx, T = (summary[c].to_numpy(np.float64) for c in ("x", "t_x", "T"))
    model = btyd.fit_bgnbd(x, tx, T)
    table = in_sample(model, x, T)
    predicted = btyd.expected_purchases(model, 39.0, x, tx, T)
    print(f"\n### CDNOW sample (39-week calibration summary, {len(summary):,} customers)")
    print(f"\nBG/NBD: r = {model.r:.4g}, alpha = {model.alpha:.4g}, a = {model.a:.4g}, "
          f"b = {model.b:.4g} (published 0.243, 4.414, 0.793, 2.426). No holdout "
          f"transactions in the fixture; in-sample frequencies:\n")
    print(peer_line(model, 39.0, x, tx, T, predicted) + "\n")
    print(markdown(table))
    plot("CDNOW: calibration", table, out / "cdnow_in_sample.png", holdout=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout-share", type=float, default=0.3,
                        help="share of the date range held out at the end (default 0.3)")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the PNG plots (default: a new temporary folder)")
    args = parser.parse_args()
    if not 0 < args.holdout_share < 1:
        parser.error("--holdout-share must be between 0 and 1")
    out = args.out or Path(tempfile.mkdtemp(prefix="btyd_calibration_"))
    out.mkdir(parents=True, exist_ok=True)
    run_dataset("Online Retail II 2009-2010", load_online_retail(
        args.datasets / "online_retail_ii_2009_2010" / "online_retail.parquet"),
        args.holdout_share, out)
    run_dataset("dunnhumby sample", load_dunnhumby(args.datasets / "dunnhumby_complete_journey"),
                args.holdout_share, out)
    run_cdnow(out)
    print(f"\nplots written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
