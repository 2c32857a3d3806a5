"""The console's rules browser: the table over 300,000 pair rules (build, filter, sort, page,
export), and the first ``/console/rules`` page a merchandiser gets with the default settings.

``--case pairs``: the rules are real: Online Retail II purchase invoices, pairs at min_support
0.0005 and min_confidence 0.1 (303,549 rules, the datasets README's exact answer), mined by the
rules job's miner and annotated with the descriptions as names. Each browser request is timed
the way the console runs it (``RuleBrowserTable.select`` then ``describe`` of one 50-rule
page), cold (the first time a sort order is used) and warm (best of 5).

``--case cut`` and ``--case full`` (issue 16 item 4: "the first console page under 1 s"): the
Online Retail II export (cut at 2010-04-01, or whole) is run the way a shop would run it, a
config whose only settings are the sources (``configs/mappings/online_retail_ii.toml``), the
folders and ``[demo] generate_if_missing = false``, and ``recsys run`` (a subprocess); then the
app (``recsys.app.create_app``, in-process through FastAPI's TestClient) is started, a viewer
signs in, and ``GET /console/rules`` is timed end to end: cold (the first request after the
server loaded the version: reading rules.parquet, building the browser table, selecting,
rendering the HTML) and warm (best of 5). The parts of the cold request are timed apart
(the same calls, again, on a fresh table). ``--profile`` prints the top functions of those
parts (cProfile). The issue names no peer: the figures are absolute, on this machine.

    PYTHONPATH=. .venv/bin/python benchmarks/console_bench.py [--case pairs cut full] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.console.rules import (  # noqa: E402
    PAGE_SIZE,
    RuleBrowserQuery,
    RuleBrowserTable,
    RulesCache,
    RuleStatuses,
)
from recsys.rules.export import export_csv  # noqa: E402
from recsys.rules.mining import mine  # noqa: E402

RETAIL = REPO.parent / "shared/datasets/online_retail_ii_2009_2010/online_retail.parquet"
MAPPING = REPO / "configs" / "mappings" / "online_retail_ii.toml"
CUT = "2010-04-01"
PASSWORD = "bench-password-1"

FILTERS = {
    "first page, by confidence": RuleBrowserQuery(),
    "min lift 5, min confidence 0.5, by lift, page 3": RuleBrowserQuery(min_lift=5, min_confidence=0.5,
                                                                  sort="lift", page=3),
    "search 'lantern' (names), by count": RuleBrowserQuery(q="lantern", sort="count"),
    "one product id (85123A), by support, ascending": RuleBrowserQuery(q="85123A", sort="support",
                                                                 order="asc"),
    "status rejected (1 rule in 1,000 decided)": RuleBrowserQuery(status="rejected"),
}


def pairs_case() -> None:
    """303,549 pair rules of the whole export: the browser table's requests."""
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
    print(f"## pairs: {len(rules):,} rules; table built in {built:.2f} s; CSV export of all of "
          f"them {exported:.1f} s\n")
    print("\n".join(lines))


def _run_shop(folder: Path, cut: str | None) -> tuple[Path, float]:
    """The export (cut or whole) through ``recsys run`` with the default settings."""
    orders = RETAIL
    if cut:
        raw = pd.read_parquet(RETAIL)
        orders = folder / f"online_retail_to_{cut}.parquet"
        raw[raw["InvoiceDate"] < cut].to_parquet(orders)
        del raw
    config = folder / "recsys.toml"
    config.write_text("\n".join([
        f'data_dir = "{folder / "data"}"', "[ingest]", f'orders = "{orders}"',
        'events = ""', 'catalog = ""', f'mapping = "{MAPPING}"',
        "[demo]", "generate_if_missing = false", "[artifacts]",
        f'root = "{folder / "artifacts"}"', "[serving]",
        f'database_url = "sqlite:///{folder / "recsys.db"}"', "reload_interval_s = 0"]) + "\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recsys.cli", "-q", "run", "--config", str(config)],
                   cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return config, time.perf_counter() - start


def _parts(app: object, index: object, profile: bool) -> dict[str, float]:
    """The cold request's steps, timed apart on a fresh table (same calls as the page);
    ``profile``: their top functions (the TestClient serves in another thread, which cProfile
    does not see)."""
    from recsys.console.deps import rule_statuses

    console = app.state.console  # type: ignore[attr-defined]
    out = {}
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    start = time.perf_counter()
    table = RulesCache(console.serving.settings.artifacts).get(index)  # type: ignore[arg-type]
    out["read rules.parquet (sides, metrics), build the browser table"] = (
        time.perf_counter() - start)
    start = time.perf_counter()
    decided, statuses = rule_statuses(console, table)
    rows = table.select(RuleBrowserQuery(), statuses)
    table.describe(rows[:PAGE_SIZE], statuses, decided)
    out["decisions, select (sort by lift), describe one page"] = time.perf_counter() - start
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return out


def defaults_case(name: str, cut: str | None, profile: bool) -> None:
    """``recsys run`` with the defaults, then the first /console/rules page, cold and warm."""
    from fastapi.testclient import TestClient

    from recsys.app import create_app
    from recsys.config import load_config
    from recsys.console.passwords import hash_password
    from recsys.console.session import COOKIE

    with tempfile.TemporaryDirectory() as tmp:
        config_path, ran = _run_shop(Path(tmp), cut)
        config = load_config(config_path)
        app = create_app(config.serving_settings())
        with TestClient(app) as client:
            index = app.state.serving.index
            app.state.serving.store.add_user("ann", hash_password(PASSWORD), "viewer")
            client.get("/console/login")
            csrf = app.state.console.codec.loads(client.cookies.get(COOKIE)).csrf
            signed = client.post("/console/login", follow_redirects=False, data={
                "username": "ann", "password": PASSWORD, "csrf_token": csrf})
            assert signed.status_code == 303, signed.text
            start = time.perf_counter()
            first = client.get("/console/rules")
            cold = time.perf_counter() - start
            assert first.status_code == 200 and 'class="rule' in first.text, first.text[:500]
            warm = []
            for _ in range(5):
                start = time.perf_counter()
                again = client.get("/console/rules")
                warm.append(time.perf_counter() - start)
                assert again.status_code == 200
            search = []
            for _ in range(3):
                start = time.perf_counter()
                found = client.get("/console/rules", params={"q": "CAKESTAND"})
                search.append(time.perf_counter() - start)
                assert found.status_code == 200
            parts = _parts(app, index, profile)
        n_rules = len(app.state.console.rules.get(index))
        print(f"## {name}: `recsys run` {ran:.0f} s; {n_rules:,} rules served; "
              f"{len(first.content) / 1024:.0f} KiB page\n")
        print("| request | ms |\n|---|---:|")
        print(f"| first /console/rules, cold (first request after the version loaded) | "
              f"{cold * 1e3:.0f} |")
        print(f"| first /console/rules, warm (best of 5) | {min(warm) * 1e3:.0f} |")
        print(f"| /console/rules?q=CAKESTAND, first / best of 2 more | {search[0] * 1e3:.0f} / "
              f"{min(search[1:]) * 1e3:.0f} |")
        for label, seconds in parts.items():
            print(f"| cold part: {label} | {seconds * 1e3:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=["pairs", "cut", "full"],
                        default=["pairs", "cut", "full"])
    parser.add_argument("--profile", action="store_true",
                        help="print the top functions of the cold request's parts (cases cut, full)")
    args = parser.parse_args()
    for case in args.case:
        if case == "pairs":
            pairs_case()
        else:
            defaults_case(f"Online Retail II{' cut at ' + CUT if case == 'cut' else ''}, "
                          "default config", CUT if case == "cut" else None, args.profile)
        print(flush=True)
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    print(f"{date}; {platform.machine()}, Python {sys.version.split()[0]}; command: "
          f"`PYTHONPATH=. .venv/bin/python benchmarks/console_bench.py --case "
          f"{' '.join(args.case)}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
