"""The console's rules browser over about 300,000 rules: build, filter, sort, page, export.

The rules are real: Online Retail II purchase invoices, pairs at min_support 0.0005 and
min_confidence 0.1 (303,549 rules, the datasets README's exact answer), mined by the rules
job's miner and annotated with the descriptions as names. Each browser request is timed the
way the console runs it (``RuleBrowserTable.select`` then ``describe`` of one 50-rule page), cold
(the first time a sort order is used) and warm (best of 5). The issue names no peer: the
figures are absolute, on this machine.

    .venv/bin/python benchmarks/console_bench.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from recsys.console.rules import PAGE_SIZE, RuleBrowserQuery, RuleBrowserTable, RuleStatuses
from recsys.rules.export import export_csv
from recsys.rules.mining import mine

REPO = Path(__file__).resolve().parents[1]
RETAIL = REPO.parent / "shared/datasets/online_retail_ii_2009_2010/online_retail.parquet"

FILTERS = {
    "first page, by confidence": RuleBrowserQuery(),
    "min lift 5, min confidence 0.5, by lift, page 3": RuleBrowserQuery(min_lift=5, min_confidence=0.5,
                                                                  sort="lift", page=3),
    "search 'lantern' (names), by count": RuleBrowserQuery(q="lantern", sort="count"),
    "one product id (85123A), by support, ascending": RuleBrowserQuery(q="85123A", sort="support",
                                                                 order="asc"),
    "status rejected (1 rule in 1,000 decided)": RuleBrowserQuery(status="rejected"),
}


def main() -> None:
    raw = pd.read_parquet(RETAIL, columns=["Invoice", "StockCode", "Quantity", "Description"])
    invoice = raw["Invoice"].astype("string")
    keep = ~invoice.str.startswith("C").fillna(True) & (raw["Quantity"] > 0)
    orders = pd.DataFrame({"order_id": invoice[keep].to_numpy(),
                           "product_id": raw["StockCode"].astype("string")[keep].to_numpy()})
    names = raw.dropna(subset=["Description"]).drop_duplicates("StockCode").set_index(
        "StockCode")["Description"].astype(str).to_dict()
    rules = mine(orders, min_support=0.0005, min_confidence=0.1, max_len=2,
                 max_basket_items=None).rules
    start = time.perf_counter()
    table = RuleBrowserTable(rules, "bench", names, {})
    built = time.perf_counter() - start
    decided = RuleStatuses.from_decisions([{"id": i, "kind": "block_rule", "rule_key": k}
                                           for i, k in enumerate(table.keys[::1000].tolist())])
    statuses = table.statuses(decided)
    lines = ["| request | matching rules | cold ms | warm ms (best of 5) |", "|---|---:|---:|---:|"]
    for label, rule_filter in FILTERS.items():
        times = []
        for _ in range(6):
            start = time.perf_counter()
            rows = table.select(rule_filter, statuses)
            page = rows[(rule_filter.page - 1) * PAGE_SIZE: rule_filter.page * PAGE_SIZE]
            table.describe(page, statuses, decided)
            times.append((time.perf_counter() - start) * 1e3)
        lines.append(f"| {label} | {len(rows):,} | {times[0]:.1f} | {min(times[1:]):.1f} |")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_csv(table.export_frame(table.select(RuleBrowserQuery(), statuses), statuses),
                   Path(tmp) / "rules.csv")
        exported = time.perf_counter() - start
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    print(f"{len(rules):,} rules; table built in {built:.2f} s; CSV export of all of them "
          f"{exported:.1f} s\n")
    print("\n".join(lines))
    print(f"\n{date}; {platform.machine()}, Python {sys.version.split()[0]}; command: "
          "`.venv/bin/python benchmarks/console_bench.py`")


if __name__ == "__main__":
    main()
