"""Lifecycle stages, replenishment and campaign exports, measured (issue 15).

- lifecycle: Online Retail II, stages computed on orders up to a cutoff; the share of each
  stage's customers who do not buy in the holdout after it (declining / at risk must lose
  more customers than stable ones).
- replenishment: Instacart (100 users) and dunnhumby (sample), at weekly cutoffs over the
  last ``--weeks`` weeks: precision of the (customer, product) pairs "due in the next 7 days"
  (recsys.analytics.actions.replenishment_list) against a real purchase of that product in
  those 7 days, next to "every product the customer bought on two days or more before".
- export: a generated analytics folder of ``--customers`` customers exported to CSV and
  Parquet (and PostgreSQL with ``--postgres URL``) in a fresh process each; wall time and peak
  RSS of that process, also at a tenth and twice the customers (memory must not grow with
  them); with ``--exclude N`` each also with N products excluded (out of stock in the
  catalogue overlay: later recommendations move up).

    PYTHONPATH=. python benchmarks/actions_bench.py [--only lifecycle replenishment export]
        [--customers 1000000] [--exclude 250] [--postgres URL]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation_bench import (  # noqa: E402
    DATASETS,
    load_dunnhumby,
    load_instacart,
    load_online_retail,
)

from benchmarks import machine  # noqa: E402
from recsys.analytics.actions import ROW_GROUP_ROWS, replenishment_list  # noqa: E402
from recsys.analytics.job import compute_clv  # noqa: E402
from recsys.analytics.lifecycle import STAGES  # noqa: E402
from recsys.analytics.settings import ActionsConfig, AnalyticsConfig  # noqa: E402
from recsys.artifacts import save_parquet  # noqa: E402
from recsys.repurchase import repurchase_cycles  # noqa: E402


def lifecycle(holdout_days: int) -> None:
    orders = load_online_retail(DATASETS / "online_retail_ii_2009_2010" / "online_retail.parquet")
    orders = orders[orders["customer_id"].notna()]
    end = orders["ordered_at"].max()
    cutoff = end - pd.Timedelta(days=holdout_days)
    started = time.perf_counter()
    result = compute_clv(orders, None, config=AnalyticsConfig(as_of=cutoff.to_pydatetime()))
    stages = result.stages.copy()
    took = time.perf_counter() - started
    buyers = set(orders.loc[orders["ordered_at"] > cutoff, "customer_id"])
    stages["lost"] = ~stages["customer_id"].isin(buyers)
    print(f"\n== lifecycle: Online Retail II, calibration to {cutoff:%Y-%m-%d}, holdout "
          f"{holdout_days} days to {end:%Y-%m-%d}; {len(stages):,} customers; CLV + stages "
          f"{took:.1f} s")
    print("| stage | customers | no order in the holdout | share |")
    print("|---|---:|---:|---:|")
    for stage in (*STAGES, "declining + at_risk"):
        part = stages[stages["stage"].isin(["declining", "at_risk"] if "+" in stage else [stage])]
        lost = int(part["lost"].sum())
        share = f"{lost / len(part):.3f}" if len(part) else "-"
        print(f"| {stage} | {len(part):,} | {lost:,} | {share} |")


OVERDUE = (0.5, 1.0, 2.0)  # max_overdue_cycles tried; 1.0 is the default


def _due_pairs(lines: pd.DataFrame, cutoff: pd.Timestamp) -> dict[str, set]:
    """(customer, product) pairs due within 7 days at ``cutoff`` for each max_overdue_cycles,
    and the baseline pairs (bought on two days or more)."""
    before = lines[lines["ordered_at"] <= cutoff]
    cycles = repurchase_cycles(before)
    out = {}
    for overdue in OVERDUE:
        due = replenishment_list(before, cycles, cutoff,
                                 ActionsConfig(due_within_days=7, max_overdue_cycles=overdue))
        out[f"due in 7 days, overdue <= {overdue:g} cycle"] = set(
            zip(due["customer_id"], due["product_id"], strict=True))
    days = before.assign(day=before["ordered_at"].dt.floor("D"))
    counts = days.drop_duplicates(["customer_id", "product_id", "day"]).groupby(
        ["customer_id", "product_id"]).size()
    out["bought on two days or more before"] = set(counts[counts >= 2].index)
    return out


def replenishment(weeks: int) -> None:
    print("\n== replenishment: precision of 'due in the next 7 days' against a purchase of "
          "that product in those 7 days, summed over weekly cutoffs")
    print("| dataset | cutoffs | method | pairs predicted | bought in the 7 days | precision | "
          "share of the window's repeat purchases found |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, lines in (("Instacart 100 users", load_instacart(DATASETS / "instacart_100_users")),
                        ("dunnhumby sample",
                         load_dunnhumby(DATASETS / "dunnhumby_complete_journey"))):
        lines = lines[lines["customer_id"].notna()]
        end = lines["ordered_at"].max().floor("D") + pd.Timedelta(days=1)
        totals: dict[str, list[int]] = {}
        started = time.perf_counter()
        for week in range(1, weeks + 1):
            cutoff = end - pd.Timedelta(days=7 * week)
            window = lines[(lines["ordered_at"] > cutoff)
                           & (lines["ordered_at"] <= cutoff + pd.Timedelta(days=7))]
            bought = set(zip(window["customer_id"], window["product_id"], strict=True))
            before = lines[lines["ordered_at"] <= cutoff]
            earlier = set(zip(before["customer_id"], before["product_id"], strict=True))
            repeats = len(bought & earlier)  # repurchases in the window: what either can find
            for method, pairs in _due_pairs(lines, cutoff).items():
                total = totals.setdefault(method, [0, 0, 0])
                total[0] += len(pairs)
                total[1] += len(pairs & bought)
                total[2] += repeats
        took = time.perf_counter() - started
        for method, (predicted, hits, repeats_total) in totals.items():
            precision = f"{hits / predicted:.3f}" if predicted else "-"
            recall = f"{hits / repeats_total:.3f}" if repeats_total else "-"
            print(f"| {name} | {weeks} | {method} | {predicted:,} | {hits:,} | {precision} | "
                  f"{recall} |")
        print(f"({name}: {took:.1f} s for {weeks} cutoffs)")


def _generate(folder: Path, n: int, products: int = 5000, k: int = 10, seed: int = 0) -> Path:
    """An analytics folder as the customer_value job writes it (row groups included), for
    ``n`` customers."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    ids = pd.array([f"C{i:08d}" for i in range(n)], dtype="string")
    segments = np.array(["champions", "loyal", "potential", "at_risk", "hibernating", "lost"])
    first = np.datetime64("2022-01-01") + rng.integers(0, 900, n).astype("timedelta64[D]")
    last = first + rng.integers(0, 200, n).astype("timedelta64[D]")
    save_parquet(pd.DataFrame({
        "customer_id": ids, "segment": segments[rng.integers(0, 6, n)],
        "orders": rng.integers(1, 30, n), "revenue": rng.gamma(2.0, 80.0, n),
        "first_order": first.astype("datetime64[ns]"), "last_order": last.astype("datetime64[ns]"),
        "recency_days": rng.uniform(0, 400, n), "historical_clv": rng.gamma(2.0, 150.0, n),
        "predicted_clv": rng.gamma(1.5, 100.0, n), "p_alive": rng.uniform(0, 1, n),
        "expected_purchases": rng.uniform(0, 10, n),
        "next_order_due": (last + rng.integers(1, 90, n).astype("timedelta64[D]")
                           ).astype("datetime64[ns]"),
        "churn_risk": rng.uniform(0, 1, n) < 0.3,
    }), folder / "customers.parquet", row_group_size=ROW_GROUP_ROWS)
    save_parquet(pd.DataFrame({"customer_id": ids,
                               "stage": np.array(STAGES)[rng.integers(0, 7, n)]}),
                 folder / "lifecycle.parquet", row_group_size=ROW_GROUP_ROWS)
    product_ids = np.array([f"P{i:05d}" for i in range(products)], dtype=object)
    recs = {"customer_id": ids}
    for i in range(k):
        recs[f"rec_{i + 1}"] = product_ids[rng.integers(0, products, n)]
    save_parquet(pd.DataFrame(recs), folder / "recommendations.parquet",
                 row_group_size=ROW_GROUP_ROWS)
    catalog = folder.parent / "catalog.parquet"
    pd.DataFrame({"product_id": product_ids,
                  "name": [f"Product number {i}, size M" for i in range(products)]}
                 ).to_parquet(catalog, index=False)
    return catalog


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    parent across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _export_child(folder: str, catalog: str, out: str, fmt: str, queue: mp.Queue,
                  exclude: int) -> None:
    from recsys.analytics.export import ExportRequest, export_customers
    from recsys.analytics.export_sql import write_sql  # noqa: F401 - imported before the base

    base = _peak_mib()
    started = time.perf_counter()
    gone = frozenset(f"P{i:05d}" for i in range(exclude))  # out of stock since the job ran
    rows = export_customers(folder, ExportRequest(out=out, format=fmt, top_k=5,  # type: ignore[arg-type]
                                                  if_exists="replace", exclude=gone),
                            catalog=catalog)
    queue.put((rows, time.perf_counter() - started, _peak_mib(), base))


def export(customers: int, postgres: str | None, exclude: int) -> None:
    print("\n== export-customers, default columns and top 5 recommendations with names "
          "(generated; fresh process per run)")
    print("| customers | format | seconds | peak RSS MiB (after imports) | output MiB |")
    print("|---:|---|---:|---:|---:|")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (customers // 10, customers, 2 * customers):
            folder = Path(tmp) / f"n{n}" / "analytics"
            catalog = _generate(folder, n)
            targets = [("csv", str(Path(tmp) / f"out{n}.csv")),
                       ("parquet", str(Path(tmp) / f"out{n}.parquet"))]
            if postgres:
                targets.append(("sql", f"{postgres}#recsys_bench_export"))
            for (fmt, out), gone in [(t, g) for t in targets for g in sorted({0, exclude})]:
                queue: mp.Queue = ctx.Queue()
                child = ctx.Process(target=_export_child,
                                    args=(str(folder), str(catalog), out, fmt, queue, gone))
                child.start()
                rows, took, peak, base = queue.get()
                child.join()
                assert rows == n, (rows, n)
                size = f"{Path(out).stat().st_size / 2**20:.0f}" if fmt != "sql" else "-"
                what = f"{fmt}, {gone:,} products excluded" if gone else fmt
                print(f"| {n:,} | {what} | {took:.1f} | {peak:.0f} ({base:.0f}) | {size} |")
    if postgres:
        from sqlalchemy import create_engine, text

        engine = create_engine(postgres)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS recsys_bench_export"))
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["lifecycle", "replenishment", "export"])
    parser.add_argument("--holdout-days", type=int, default=90)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="also export to this database")
    parser.add_argument("--exclude", type=int, default=0, metavar="N",
                        help="export: also run with N of the products excluded (out of stock "
                             "in the catalogue overlay), 10 recommendations kept per customer")
    args = parser.parse_args()
    print(f"# {machine.describe()}")
    if "lifecycle" in args.only:
        lifecycle(args.holdout_days)
    if "replenishment" in args.only:
        replenishment(args.weeks)
    if "export" in args.only:
        export(args.customers, args.postgres, args.exclude)
    return 0


if __name__ == "__main__":
    sys.exit(main())
