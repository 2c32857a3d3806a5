"""Rule counts with the earlier and the current default `[rules]` settings on Online Retail II
and on its cut at 2010-04-01 (issue 16, item 4: 5,044,799 and 31.5 M rules before).

    .venv/bin/python benchmarks/rule_defaults_bench.py

Orders come from the project's ingest with ``configs/mappings/online_retail_ii.toml``. The
earlier defaults (min_support 0.001, min_confidence 0.05, min_lift 1, max_len 3, no pruning)
are counted without building the rules: ``mine(..., max_rules=1)`` reports in
``rules_estimated`` the exact number of rules that pass those thresholds (``bounds``) and
then builds only the few above the raised count. The current defaults are mined in full; the
table gives the rules kept, the candidates before redundancy pruning and the cap per
antecedent, the count threshold and the time (wall clock, on a shared machine).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.ingest import ingest, load_table  # noqa: E402
from recsys.mapping import load_mapping  # noqa: E402
from recsys.rules.mining import mine  # noqa: E402
from recsys.rules.settings import RulesConfig  # noqa: E402

RETAIL = REPO.parent / "shared" / "datasets" / "online_retail_ii_2009_2010" / "online_retail.parquet"
EARLIER = {"min_support": 0.001, "min_confidence": 0.05, "min_lift": 1.0, "max_len": 3}


def _orders(work: Path, cut: str | None) -> pd.DataFrame:
    raw = pd.read_parquet(RETAIL)
    if cut:
        raw = raw[raw["InvoiceDate"] < cut]
    raw.to_parquet(work / "raw.parquet")
    ingest({"orders": str(work / "raw.parquet")},
           load_mapping(str(REPO / "configs" / "mappings" / "online_retail_ii.toml")),
           work / "data", show_progress=False)
    orders = load_table(work / "data", "orders")
    assert orders is not None
    return orders


def main() -> int:
    print("| data | orders mined | earlier defaults: rules | now: count threshold | now: "
          "candidates before pruning and cap | now: rules | now: time |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for label, cut in (("Online Retail II", None), ("cut at 2010-04-01", "2010-04-01")):
        with tempfile.TemporaryDirectory() as tmp:
            orders = _orders(Path(tmp), cut)
        earlier = mine(orders, **EARLIER, max_rules=1).report
        began = time.perf_counter()
        now = mine(orders, **RulesConfig().thresholds())
        seconds = time.perf_counter() - began
        print(f"| {label} | {now.report.n_orders:,} | {earlier.rules_estimated:,} | "
              f"{now.report.min_count} | {now.report.rules_estimated:,} | {now.report.rules:,} "
              f"| {seconds:.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
