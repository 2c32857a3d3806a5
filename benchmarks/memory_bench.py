"""Peak resident memory of `recsys run` and `recsys evaluate` with the default settings on every
shared dataset with orders, and on Online Retail II cut at 2010-04-01 (issue 16: 8.8 GB and
9.7 GB before; the target is under 2 GB).

    .venv/bin/python benchmarks/memory_bench.py [--only NAME ...] [--work DIR]

Each dataset becomes raw files a shop would export (Online Retail II and its cut: the UCI
Parquet with ``configs/mappings/online_retail_ii.toml``; the others: canonical CSVs from the
loaders of ``evaluation_bench.py``), a config whose only settings are the sources, the
folders and ``[demo] generate_if_missing = false``, then, each under ``/usr/bin/time -v`` as
its own subprocess:

    recsys -q run --config CONFIG
    recsys -q evaluate --config CONFIG --data DATA_DIR --out OUT

Peak RSS is GNU time's "Maximum resident set size": the largest single process of the tree
(the evaluation's forked workers are not added together). YOOCHOOSE has no orders (clicks
only) and is left out: `recsys run` needs orders. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from evaluation_bench import load_dunnhumby, load_instacart  # noqa: E402

DATASETS = REPO.parent / "shared" / "datasets"
RETAIL = DATASETS / "online_retail_ii_2009_2010" / "online_retail.parquet"
MAPPING = REPO / "configs" / "mappings" / "online_retail_ii.toml"
RECSYS = Path(sys.executable).with_name("recsys")


def _retail(folder: Path) -> tuple[Path, Path | None]:
    return RETAIL, MAPPING


def _retail_cut(folder: Path) -> tuple[Path, Path | None]:
    raw = pd.read_parquet(RETAIL)
    path = folder / "online_retail_to_2010-04-01.parquet"
    raw[raw["InvoiceDate"] < "2010-04-01"].to_parquet(path)
    return path, MAPPING


def _bakery(folder: Path) -> tuple[Path, Path | None]:
    raw = pd.read_csv(DATASETS / "bread_basket" / "BreadBasket_DMS.csv", dtype=str)
    raw = raw[raw["Item"] != "NONE"]
    path = folder / "orders.csv"
    pd.DataFrame({"order_id": raw["Transaction"], "product_id": raw["Item"],
                  "ordered_at": pd.to_datetime(raw["Date"] + " " + raw["Time"]),
                  "quantity": 1.0}).to_csv(path, index=False)
    return path, None


def _canonical(loader: Callable[[Path], pd.DataFrame], name: str) -> Callable[[Path], tuple[
        Path, Path | None]]:
    def write(folder: Path) -> tuple[Path, Path | None]:
        path = folder / "orders.csv"
        loader(DATASETS / name).to_csv(path, index=False)
        return path, None
    return write


CASES: dict[str, Callable[[Path], tuple[Path, Path | None]]] = {
    "online_retail_ii": _retail,
    "online_retail_ii_to_2010-04-01": _retail_cut,
    "bread_basket": _bakery,
    "instacart_100_users": _canonical(load_instacart, "instacart_100_users"),
    "dunnhumby_complete_journey": _canonical(load_dunnhumby, "dunnhumby_complete_journey"),
}


def _timed(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of one command under GNU time."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                          cwd=REPO, check=False)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
    seconds = 0.0
    for part in (wall.group(1) if wall else "0").split(":"):
        seconds = seconds * 60 + float(part)
    return (int(rss.group(1)) / 1024 if rss else float("nan")), seconds, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CASES))
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="memory_bench_"))
    rows = []
    for name in args.only or CASES:
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        orders, mapping = CASES[name](folder)
        config = folder / "recsys.toml"
        config.write_text("\n".join([
            f'data_dir = "{folder / "data"}"', "[ingest]", f'orders = "{orders}"',
            'events = ""', 'catalog = ""', *([f'mapping = "{mapping}"'] if mapping else []),
            "[demo]", "generate_if_missing = false", "[artifacts]",
            f'root = "{folder / "artifacts"}"', "[serving]",
            f'database_url = "sqlite:///{folder / "recsys.db"}"']) + "\n")
        run = _timed([str(RECSYS), "-q", "run", "--config", str(config)])
        evaluate = _timed([str(RECSYS), "-q", "evaluate", "--config", str(config), "--data",
                           str(folder / "data"), "--out", str(folder / "evaluation")])
        rows.append((name, run, evaluate))
        print(f"{name}: run {run[0]:,.0f} MiB {run[1]:.0f} s (exit {run[2]}); evaluate "
              f"{evaluate[0]:,.0f} MiB {evaluate[1]:.0f} s (exit {evaluate[2]})", flush=True)
    print("\n| dataset | `recsys run` peak RSS | time | `recsys evaluate` peak RSS | time |")
    print("|---|---:|---:|---:|---:|")
    for name, run, evaluate in rows:
        print(f"| {name} | {run[0]:,.0f} MiB | {run[1]:.0f} s | {evaluate[0]:,.0f} MiB | "
              f"{evaluate[1]:.0f} s |" + ("" if run[2] == evaluate[2] == 0 else " failed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
