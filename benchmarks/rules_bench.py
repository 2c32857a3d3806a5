"""Association-rule mining: our miner against mlxtend and pyfim, same input, same thresholds.

Cases (``--cases``):
  a  Online Retail II purchase invoices (22,103 baskets), pairs, min_support 0.0005,
     min_confidence 0.1;
  b  the same baskets, all lengths (max_len 20), min_support 0.002, min_confidence 0.3;
  c  a generated shop, 3,000,000 orders over 50,000 products (about 10 lines each),
     itemsets of up to 3 items, min_support 0.0001, min_confidence 0.1.

Each tool runs in its own subprocess (so that peak memory is its own), under a wall-clock
timeout and a memory cap watched from here. Inside the subprocess the input is built first,
outside the timer:
  ours     ``recsys.rules.mining.mine`` from the (order_id, product_id) DataFrame to the rules
           DataFrame, ``max_basket_items=None`` (the peers keep every basket), with
           ``significance=False`` (like for like: the peers compute no Fisher p) and, as
           ``ours+fisher``, with ``significance=True``; numba is warmed first by a tiny call
           whose time is reported apart (compile with an empty numba cache for ``ours``,
           load from the on-disk cache for ``ours+fisher``);
  pyfim    ``fim.arules`` and ``fim.fpgrowth(target="r")`` from the list of transactions to
           the list of rules: absolute support ``supp=-min_count`` (exact), ``conf`` in per cent,
           ``zmin=2`` (no empty antecedent), ``zmax=max_len``, ``mode="o"`` (a rule's support
           is that of antecedent and consequent together, as ours; pyfim's default is the
           antecedent's alone);
  mlxtend  TransactionEncoder one-hot (sparse DataFrame) + fpgrowth + association_rules from
           the list of transactions, restricted afterwards to single-item consequents. It is
           not run where the one-hot (orders x products bytes) exceeds the memory cap: its
           fpgrowth densifies even a sparse one-hot.
Times are wall clock and process CPU time (the machine is shared: CPU time suffers less from
other work); tools whose first run is under 10 s are run ``--repeat`` times and the best is
reported. Peak memory is the process's resident high-water mark during the
timed run (reset just before it through /proc/self/clear_refs), beside the resident size of
the input it started from and the whole process's peak (``ru_maxrss``, loading included).

Rule sets are compared as {(antecedent set, consequent): (count, antecedent count)}.

Results go to stdout as Markdown and replace the section "## Association rules
(`benchmarks/rules_bench.py`)" of BENCHMARKS.md at the repository root (``--no-write`` to
leave it alone). Cases not run this time keep their subsection from an earlier run. Each
tool's figures and rule set are also kept under ``--cache-dir``/runs; ``--reuse mlxtend``
takes mlxtend's from there instead of spending minutes on it again (the table says so).

    .venv/bin/python benchmarks/rules_bench.py --cases a,b,c
    .venv/bin/python benchmarks/rules_bench.py --cases a,b --reuse mlxtend
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import io
import itertools
import json
import logging
import os
import pstats
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
RETAIL = DATASETS / "online_retail_ii_2009_2010" / "online_retail.parquet"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION = "## Association rules (`benchmarks/rules_bench.py`)"
TOOLS = ("ours", "ours+fisher", "pyfim.arules", "pyfim.fpgrowth", "mlxtend")
PEERS = ("pyfim.arules", "pyfim.fpgrowth", "mlxtend")
REPEAT_UNDER_S = 10.0
MINER_FILES = ("recsys/rules/mining.py", "recsys/rules/itemsets.py", "recsys/matrices.py",
               "recsys/vocab.py", "recsys/rules/significance.py")

log = logging.getLogger("rules_bench")


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    min_support: str  # written as a decimal; thresholds are exact (see recsys.rules.mining)
    min_confidence: str
    max_len: int
    demo: dict[str, Any] | None = None  # DemoSpec arguments; None = Online Retail II

    @property
    def label(self) -> str:
        return (f"max_len {self.max_len}, min_support {self.min_support}, "
                f"min_confidence {self.min_confidence}")


CASES = {
    "a": Case("a", "Online Retail II purchases, pairs", "0.0005", "0.1", 2),
    "b": Case("b", "Online Retail II purchases, all lengths", "0.002", "0.3", 20),
    "c": Case("c", "generated shop, 3M orders x 50k products, up to triples", "0.0001", "0.1", 3,
              demo={"orders": 3_000_000, "products": 50_000, "mean_lines": 10, "seed": 1}),
}


# ----------------------------------------------------------------------------- input data

def _demo_dir(cache: Path, demo: dict[str, Any]) -> Path:
    return cache / ("demo_o{orders}_p{products}_l{mean_lines}_s{seed}".format(**demo))


def prepare_demo(cache: Path, demo: dict[str, Any]) -> Path:
    """The generated shop's (order_id, product_id) lines as Parquet, generated once and cached.

    generate_demo writes ~4 GB of CSV (about a minute); only orders.csv is read, two columns.
    Lines with an empty product id (planted dirty rows) are dropped; the other dirty kinds are
    copies of real lines, so they add no (order, product) pair.
    """
    out_dir = _demo_dir(cache, demo)
    pairs = out_dir.with_name(out_dir.name + "_orders.parquet")
    if pairs.exists():
        return pairs
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from recsys.demo import DemoSpec, generate_demo

    if not (out_dir / "planted.json").exists():  # written last: the demo is complete
        log.info("generating the demo shop %s into %s (about a minute, ~4 GB)", demo, out_dir)
        t0 = time.perf_counter()
        generate_demo(out_dir, DemoSpec(**demo),
                      progress=log.isEnabledFor(logging.INFO))
        log.info("generated in %.0f s", time.perf_counter() - t0)
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pacsv.read_csv(
        out_dir / "orders.csv",
        convert_options=pacsv.ConvertOptions(
            include_columns=["order_id", "product_id"],
            column_types={"order_id": pa.string(), "product_id": pa.string()},
            strings_can_be_null=True))
    table = table.filter(pc.is_valid(table["product_id"]))
    tmp = pairs.with_name(pairs.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, pairs)
    log.info("cached %d order lines in %s", table.num_rows, pairs)
    return pairs


def load_orders(case: Case, cache: Path) -> pd.DataFrame:
    """The (order_id, product_id) DataFrame of a case, string columns."""
    if case.demo is None:
        raw = pd.read_parquet(RETAIL, columns=["Invoice", "StockCode", "Quantity"])
        invoice = raw["Invoice"].astype("string")
        keep = ~invoice.str.startswith("C").fillna(True) & (raw["Quantity"] > 0)
        keep &= raw["StockCode"].notna()
        return pd.DataFrame({"order_id": invoice[keep].to_numpy(),
                             "product_id": raw["StockCode"].astype("string")[keep].to_numpy()})
    return pd.read_parquet(prepare_demo(cache, case.demo), columns=["order_id", "product_id"])


def item_index(orders: pd.DataFrame) -> pd.Index:
    """Sorted distinct product ids: the codes rule sets are compared in."""
    return pd.Index(np.sort(orders["product_id"].dropna().unique().astype(object)))


def transactions(orders: pd.DataFrame, items: pd.Index) -> list[list[str]]:
    """One list of distinct product ids (sorted) per order, for the peers."""
    o_codes, _ = pd.factorize(orders["order_id"])
    p_codes = items.get_indexer(orders["product_id"])
    pairs = np.unique(o_codes.astype(np.int64) * len(items) + p_codes)
    order, item = np.divmod(pairs, len(items))
    bounds = np.r_[0, np.flatnonzero(np.diff(order)) + 1, len(pairs)].tolist()
    names = items.to_numpy(dtype=object)[item].tolist()  # shared str objects
    return [names[s:e] for s, e in itertools.pairwise(bounds)]


# ----------------------------------------------------------------------------- rule sets

def padded(flat: np.ndarray, lengths: np.ndarray, pad: int) -> np.ndarray:
    """(n, max length) int32 rows of item codes from flat codes and lengths, sorted, padded."""
    width = max(int(lengths.max(initial=0)), 1)
    out = np.full((len(lengths), width), pad, np.int32)
    starts = np.cumsum(lengths) - lengths
    rows = np.repeat(np.arange(len(lengths)), lengths)
    out[rows, np.arange(len(flat)) - np.repeat(starts, lengths)] = flat
    out.sort(axis=1)
    return out


def rules_from_lists(items: pd.Index, ants: list[Any], cons: list[Any], count: np.ndarray,
                     ant_count: np.ndarray) -> dict[str, np.ndarray]:
    """A rule set as arrays: antecedent codes (n, w) padded with len(items), consequent code,
    rule count and antecedent count."""
    lengths = np.fromiter(map(len, ants), np.int64, len(ants))
    flat = items.get_indexer(pd.Index(list(itertools.chain.from_iterable(ants)), dtype=object))
    con = items.get_indexer(pd.Index(cons, dtype=object))
    if (flat < 0).any() or (con < 0).any():
        raise RuntimeError("a rule names a product that is not in the input")
    return {"ant": padded(flat, lengths, len(items)), "con": con.astype(np.int32),
            "count": np.asarray(count, np.int64), "ant_count": np.asarray(ant_count, np.int64)}


def ours_rules(rules: pd.DataFrame, items: pd.Index) -> dict[str, np.ndarray]:
    import pyarrow as pa

    def lists(column: str) -> Any:
        arr = pa.array(rules[column].array)
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr

    ant, con = lists("antecedents"), lists("consequents")
    if not np.all(np.diff(con.offsets.to_numpy()) == 1):
        raise RuntimeError("expected single-item consequents")
    lengths = np.diff(ant.offsets.to_numpy()).astype(np.int64)
    flat = items.get_indexer(pd.Index(ant.flatten().to_numpy(zero_copy_only=False)))
    return {"ant": padded(flat, lengths, len(items)),
            "con": items.get_indexer(pd.Index(con.flatten().to_numpy(
                zero_copy_only=False))).astype(np.int32),
            "count": rules["count"].to_numpy(np.int64),
            "ant_count": rules["antecedent_count"].to_numpy(np.int64)}


def compare(ours: dict[str, np.ndarray], peer: dict[str, np.ndarray], pad: int
            ) -> dict[str, pd.DataFrame]:
    """Rules only in ours, only in the peer, and in both with different counts."""
    width = max(ours["ant"].shape[1], peer["ant"].shape[1])

    def frame(r: dict[str, np.ndarray]) -> pd.DataFrame:
        ant = np.full((len(r["con"]), width), pad, np.int32)
        ant[:, : r["ant"].shape[1]] = r["ant"]
        cols = {f"a{j}": ant[:, j] for j in range(width)}
        return pd.DataFrame({**cols, "con": r["con"], "count": r["count"],
                             "ant_count": r["ant_count"]})

    keys = [f"a{j}" for j in range(width)] + ["con"]
    merged = frame(ours).merge(frame(peer), on=keys, how="outer", suffixes=("", "_peer"),
                               indicator=True)
    both = merged[merged["_merge"] == "both"]
    return {
        "only_ours": merged[merged["_merge"] == "left_only"],
        "only_peer": merged[merged["_merge"] == "right_only"].assign(
            count=lambda d: d["count_peer"], ant_count=lambda d: d["ant_count_peer"]),
        "count_differs": both[(both["count"] != both["count_peer"])
                              | (both["ant_count"] != both["ant_count_peer"])],
    }


# ----------------------------------------------------------------------------- workers

def miner_fingerprint() -> str:
    """sha256 (first 12 hex digits) of the miner's source files: which version was timed."""
    digest = hashlib.sha256()
    for name in MINER_FILES:
        path = REPO / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, kB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _warm_up() -> float:
    """A tiny mine() covering every compiled kernel (pairs, Eclat, Fisher p)."""
    from recsys.rules.mining import mine

    rng = np.random.default_rng(0)
    tiny = pd.DataFrame({"order_id": np.repeat(np.arange(200), 5).astype(str),
                         "product_id": rng.integers(0, 12, 1000).astype(str)})
    t0 = time.perf_counter()
    mine(tiny, min_count=2, min_confidence=0.1, max_len=4, significance=True)
    return time.perf_counter() - t0


def run_mlxtend(tr: list[list[str]], case: Case, n: int) -> tuple[pd.DataFrame, dict[str, int]]:
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    te = TransactionEncoder()
    onehot = te.fit(tr).transform(tr, sparse=True)
    df = pd.DataFrame.sparse.from_spmatrix(onehot, columns=te.columns_)
    freq = fpgrowth(df, min_support=float(case.min_support), use_colnames=True,
                    max_len=case.max_len)
    rules = association_rules(freq, num_itemsets=n, metric="confidence",
                              min_threshold=float(case.min_confidence))
    before = len(rules)
    rules = rules[rules["consequents"].map(len) == 1]
    return rules, {"itemsets": len(freq), "rules_before_restricting": before}


def worker(tool: str, case: Case, out: Path, cache: Path, repeat: int, profile: bool) -> None:
    """Build the tool's input, time the tool, save its rule set (out.npz) and figures
    (out.json)."""
    from recsys.rules.mining import min_count_for, mine

    orders = load_orders(case, cache)
    items = item_index(orders)
    n = int(orders["order_id"].nunique())
    min_count = min_count_for(case.min_support, n)
    info: dict[str, Any] = {"tool": tool, "case": case.key, "n_orders": n,
                            "miner_sha256": miner_fingerprint(),
                            "n_items": len(items), "n_lines": len(orders),
                            "min_count": min_count}
    if tool.startswith("ours"):
        info["warm_up_s"] = _warm_up()
        significance = tool == "ours+fisher"

        def call() -> Any:
            # float("0.0005") reads back as the decimal 0.0005: mine's thresholds are exact
            return mine(orders, min_support=float(case.min_support),
                        min_confidence=float(case.min_confidence), max_len=case.max_len,
                        max_basket_items=None, significance=significance)
    elif tool.startswith("pyfim"):
        import fim

        tr = transactions(orders, items)
        conf = float(Fraction(case.min_confidence) * 100)
        if tool == "pyfim.arules":
            def call() -> Any:
                return fim.arules(tr, supp=-min_count, conf=conf, zmin=2, zmax=case.max_len,
                                  report="ab", mode="o")
        else:
            def call() -> Any:
                return fim.fpgrowth(tr, target="r", supp=-min_count, conf=conf, zmin=2,
                                    zmax=case.max_len, report="ab", mode="o")
    elif tool == "mlxtend":
        tr = transactions(orders, items)

        def call() -> Any:
            return run_mlxtend(tr, case, n)
    else:
        raise SystemExit(f"unknown tool {tool!r}")

    gc.collect()
    info["peak_reset"] = _reset_peak()
    info["input_rss_mb"] = _status()["VmRSS"] / 1024
    info["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["load_before"] = os.getloadavg()[0]
    times: list[float] = []
    cpu: list[float] = []
    result = None
    while True:
        result = None
        t0, c0 = time.perf_counter(), time.process_time()
        result = call()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if len(times) >= repeat or times[0] >= REPEAT_UNDER_S:
            break
    info["run_peak_mb"] = _status()["VmHWM"] / 1024
    info["load_after"] = os.getloadavg()[0]
    info["times_s"] = times
    info["time_s"] = min(times)
    info["cpu_s"] = min(cpu)
    log.info("%s %s: %.3f s wall, %.3f s CPU (runs: %s; load average %.1f -> %.1f)", case.key,
             tool, min(times), min(cpu), ", ".join(f"{t:.3f}" for t in times),
             info["load_before"], info["load_after"])

    if tool.startswith("ours"):
        info["itemsets_by_length"] = result.report.itemsets_by_length
        info["itemsets"] = int(sum(result.report.itemsets_by_length.values()))
        rules = ours_rules(result.rules, items)
        if profile:
            prof = cProfile.Profile()
            prof.runcall(call)
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
            info["profile"] = text.getvalue()
    elif tool.startswith("pyfim"):
        rules = rules_from_lists(items, [r[1] for r in result], [r[0] for r in result],
                                 np.fromiter((r[2] for r in result), np.int64, len(result)),
                                 np.fromiter((r[3] for r in result), np.int64, len(result)))
    else:
        table, extra = result
        info.update(extra)
        rules = rules_from_lists(
            items, table["antecedents"].tolist(),
            [next(iter(c)) for c in table["consequents"]],
            np.rint(table["support"].to_numpy() * n), np.rint(
                table["antecedent support"].to_numpy() * n))
    info["rules"] = len(rules["con"])
    payload: dict[str, Any] = {"item_ids": items.to_numpy(dtype=str), **rules}
    np.savez(out.with_suffix(".npz"), **payload)
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------- orchestration

def run_tool(tool: str, case: Case, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    """Run one tool on one case in a subprocess under the timeout and the memory cap."""
    out = runs / f"{case.key}_{tool}"
    saved = out.with_suffix(".result.json")
    if tool in args.reuse:
        if not saved.exists() and out.with_suffix(".json").exists():  # the worker's file only
            figures = json.loads(out.with_suffix(".json").read_text())
            figures.setdefault("measured_at", datetime.fromtimestamp(
                out.with_suffix(".json").stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC"))
            saved.write_text(json.dumps(figures, indent=1))
        if saved.exists() and out.with_suffix(".npz").exists():
            earlier: dict[str, Any] = json.loads(saved.read_text())
            log.info("case %s: %s reused from the run of %s", case.key, tool,
                     earlier.get("measured_at", "?"))
            earlier["reused"] = True
            if "failed" not in earlier:
                earlier["rule_set"] = dict(np.load(out.with_suffix(".npz")))
            return earlier
        log.warning("case %s: no earlier result of %s to reuse in %s; running it", case.key,
                    tool, runs)
    for suffix in (".json", ".npz", ".result.json"):
        out.with_suffix(suffix).unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--cases", case.key,
           "--out", str(out), "--cache-dir", str(args.cache_dir), "--repeat", str(args.repeat)]
    cmd += ["-q"] if args.quiet else []
    cmd += ["--profile"] if args.profile else []
    env = dict(os.environ)
    numba_dir = None
    if tool == "ours":  # an empty numba cache: the warm-up is a true compile
        numba_dir = tempfile.TemporaryDirectory(prefix="rules_bench_numba_")
        env["NUMBA_CACHE_DIR"] = numba_dir.name
    log.info("case %s: running %s (timeout %d s, memory cap %.0f GiB)", case.key, tool,
             args.timeout, args.memory_cap_gb)
    cap_kb = args.memory_cap_gb * 1024 * 1024
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO)
    stopped = None
    polled_kb = 0
    while True:
        pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open(f"/proc/{proc.pid}/status") as fh:
            rss = [int(x.split()[1]) for x in fh if x.startswith("VmRSS:")]
            polled_kb = max(polled_kb, rss[0])
        if stopped is None and polled_kb > cap_kb:
            stopped = f"stopped at the memory cap ({args.memory_cap_gb:g} GiB resident)"
            proc.kill()
        elif stopped is None and time.monotonic() - started > args.timeout:
            stopped = f"stopped at the timeout ({args.timeout} s, input building included)"
            proc.kill()
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    if numba_dir is not None:
        numba_dir.cleanup()
    result: dict[str, Any] = {"tool": tool, "case": case.key,
                              "process_peak_mb": usage.ru_maxrss / 1024,
                              "wall_s": time.monotonic() - started}
    info = out.with_suffix(".json")
    if stopped is None and proc.returncode == 0 and info.exists():
        result.update(json.loads(info.read_text()))
        result["rule_set"] = dict(np.load(out.with_suffix(".npz")))
    else:
        result["failed"] = stopped or f"exited with status {proc.returncode}"
        log.warning("case %s: %s %s", case.key, tool, result["failed"])
    saved.write_text(json.dumps({k: v for k, v in result.items() if k != "rule_set"}, indent=1))
    return result


def mlxtend_estimate(orders: int, items: int) -> str:
    dense = orders * items  # one byte per bool cell
    return (f"not run: the one-hot is {orders:,} x {items:,}; as dense bool that is "
            f"{dense / 2**30:,.0f} GiB (this machine has {_mem_gib():.0f} GiB, the memory cap "
            "is below that), and with TransactionEncoder(sparse=True) mlxtend's fpgrowth "
            "densifies it anyway (fpcommon.setup_fptree computes item supports with "
            "np.sum(df.values, axis=0), and df.values of a sparse DataFrame is dense)")


def _mem_gib() -> float:
    from benchmarks import machine

    return machine.memory_gib()


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _load(r: dict[str, Any]) -> str:
    if "load_before" not in r:
        return "-"
    return f"{r['load_before']:.1f}-{r['load_after']:.1f}"


def _fmt_time(t: float) -> str:
    return f"{t:.3f}" if t < 10 else f"{t:.1f}"


def mlxtend_confidence(c: np.ndarray | int, ca: np.ndarray | int, n: int) -> Any:
    """Confidence as mlxtend 0.25 computes it in float64: supports s = count / N from
    fpgrowth, then association_rules' (s_AC * (N - 0)) / (s_A * (N - 0) - 0)."""
    return ((np.asarray(c) / float(n)) * n) / ((np.asarray(ca) / float(n)) * n)


def _rule_text(row: pd.Series, ids: np.ndarray, width: int, n: int) -> str:
    ant = [str(ids[int(row[f"a{j}"])]) for j in range(width) if int(row[f"a{j}"]) < len(ids)]
    c, ca = int(row["count"]), int(row["ant_count"])
    return (f"{{{', '.join(ant)}}} -> {ids[int(row['con'])]}: count {c}, antecedent count "
            f"{ca}, count/antecedent = {Fraction(c, ca)} exactly; mlxtend's float64 "
            f"(s_AC*N)/(s_A*N) = {float(mlxtend_confidence(c, ca, n))!r}")


def explain(diff: dict[str, pd.DataFrame], case: Case, ids: np.ndarray, n: int,
            tool: str) -> list[str]:
    """Lines on where a peer's rule set differs from ours, and why."""
    lines = []
    conf = Fraction(case.min_confidence)
    min_count = -(-Fraction(case.min_support) * n // 1)
    width = sum(1 for c in diff["only_ours"].columns if re.fullmatch(r"a\d+", c))
    for kind, frame, verb in (("only_ours", diff["only_ours"], "misses"),
                              ("only_peer", diff["only_peer"], "adds"),
                              ("count_differs", diff["count_differs"], "miscounts")):
        if frame.empty:
            continue
        c = frame["count"].to_numpy(np.int64)
        ca = frame["ant_count"].to_numpy(np.int64)
        on_conf = np.array([Fraction(int(x), int(y)) == conf for x, y in zip(c, ca, strict=True)])
        float_below = mlxtend_confidence(c, ca, n) < float(conf)
        lines.append(
            f"- {tool} {verb} {len(frame):,} rule(s) of ours"
            if kind != "only_peer" else f"- {tool} adds {len(frame):,} rule(s) that ours lacks")
        if kind == "only_ours" and on_conf.all():
            lines[-1] += (f": every one sits exactly on the confidence threshold, "
                          f"count/antecedent count = {conf} exactly")
            if tool == "mlxtend" and float_below.all():
                lines[-1] += (". mlxtend keeps supports as floats, s = count/N (fpgrowth), "
                              "and association_rules computes confidence as "
                              "(s_AC * N) / (s_A * N) (its null-value-aware formula with no "
                              "nulls): in float64 that rounds to just below "
                              f"{float(conf)} for these counts, so its `>= {float(conf)}` "
                              "drops them")
        elif kind != "count_differs":
            below_support = (c < min_count).sum()
            below_conf = np.array([Fraction(int(x), int(y)) < conf
                                   for x, y in zip(c, ca, strict=True)]).sum()
            lines[-1] += (f" ({below_support} below min_count {min_count}, {below_conf} below "
                          f"min_confidence as exact fractions, {on_conf.sum()} exactly on it)")
        pairs = pd.Series([f"{x}/{y}" for x, y in zip(c, ca, strict=True)]).value_counts()
        lines[-1] += (". (count, antecedent count) of these rules: "
                      + ", ".join(f"{k} ({v})" for k, v in pairs.head(12).items())
                      + (", ..." if len(pairs) > 12 else ""))
        lines[-1] += ":" if len(frame) <= 20 else "; the first 20:"
        for _, row in frame.head(20).iterrows():
            lines.append(f"  - {_rule_text(row, ids, width, n)}")
    return lines


def on_threshold(rules: dict[str, np.ndarray], case: Case, n: int) -> list[str]:
    """Our rules whose confidence equals min_confidence exactly, and which of them a float
    confidence computed as mlxtend does falls below."""
    conf = Fraction(case.min_confidence)
    c, ca = rules["count"], rules["ant_count"]
    exact = c * conf.denominator == ca * conf.numerator
    if not exact.any():
        return []
    pairs = pd.DataFrame({"c": c[exact], "ca": ca[exact]}).value_counts().sort_index()
    below = [f"{x}/{y}" for x, y in pairs.index if mlxtend_confidence(x, y, n) < float(conf)]
    return [f"- ours has {int(exact.sum()):,} rule(s) exactly on min_confidence {conf} "
            f"((count/antecedent count): "
            f"{', '.join(f'{x}/{y} ({k})' for (x, y), k in pairs.head(15).items())}"
            f"{', ...' if len(pairs) > 15 else ''}"
            f"); mlxtend's float64 confidence falls below {float(conf)} for "
            f"{', '.join(below) if below else 'none of them'}."]


def run_case(case: Case, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        ours = results.get("ours", {})
        if tool == "mlxtend" and args.skip_mlxtend:
            results[tool] = {"tool": tool, "failed": "skipped (--skip-mlxtend)"}
            continue
        if tool == "mlxtend" and "n_orders" in ours and \
                ours["n_orders"] * ours["n_items"] > args.memory_cap_gb * 2**30:
            # its fpgrowth densifies the one-hot (see mlxtend_estimate): it cannot fit
            results[tool] = {"tool": tool, "failed": "not run",
                             "estimate": mlxtend_estimate(ours["n_orders"], ours["n_items"])}
            continue
        results[tool] = run_tool(tool, case, args, runs)
    ours = results["ours"]
    notes: list[str] = []
    if "rule_set" in ours:
        ids = ours["rule_set"]["item_ids"]
        for tool in TOOLS[1:]:
            peer = results[tool]
            if "rule_set" not in peer:
                continue
            diff = compare(ours["rule_set"], peer["rule_set"], len(ids))
            peer["only_ours"] = len(diff["only_ours"])
            peer["only_peer"] = len(diff["only_peer"])
            peer["count_differs"] = len(diff["count_differs"])
            notes += explain(diff, case, ids, ours["n_orders"], tool)
    threshold = on_threshold(ours["rule_set"], case, ours["n_orders"]) \
        if "rule_set" in ours else []
    for r in results.values():
        r.pop("rule_set", None)
    return {"case": case, "results": results, "notes": notes, "threshold": threshold}


def case_markdown(run: dict[str, Any], when: str, command: str) -> str:
    case: Case = run["case"]
    res = run["results"]
    ours = res["ours"]
    out = [f"### Case {case.key}: {case.title} ({case.label})", "",
           f"Measured {when} with `{command}`.", ""]
    if "n_orders" in ours:
        by_len = ", ".join(f"{k}: {v:,}" for k, v in sorted(
            ((int(k), v) for k, v in ours["itemsets_by_length"].items())))
        out += [f"{ours['n_orders']:,} baskets, {ours['n_items']:,} products, "
                f"{ours['n_lines']:,} lines; min_count {ours['min_count']}; frequent itemsets "
                f"by length {by_len}. Warm-up (numba) before the timed run of ours: "
                f"{ours['warm_up_s']:.1f} s compiling (empty numba cache), "
                f"{res['ours+fisher'].get('warm_up_s', float('nan')):.1f} s with the on-disk "
                "cache (ours+fisher).", ""]
    out += ["| tool | rules | time (s) | CPU (s) | ours faster by | peak RSS in run (MB) "
            "| input RSS (MB) | process peak (MB) | load avg | rule set vs ours |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    t_ours = ours.get("time_s")
    reused: list[str] = []
    for tool in TOOLS:
        r = res[tool]
        if "failed" in r:
            why = r.get("estimate", r["failed"])
            out.append(f"| {tool} | - | - | - | - | - | - | "
                       f"{_mb(r.get('process_peak_mb'))} | - | {why} |")
            continue
        speed = ""
        if t_ours and tool in PEERS:
            ratio = r["time_s"] / t_ours
            speed = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"
        if tool == "ours":
            same = "(reference)"
        elif r.get("only_ours", 0) + r.get("only_peer", 0) + r.get("count_differs", 0) == 0:
            same = "identical, counts equal"
        else:
            same = (f"{r['only_ours']:,} missing, {r['only_peer']:,} extra, "
                    f"{r['count_differs']:,} with other counts")
        times = r["times_s"]
        if r.get("reused"):
            reused.append(f"{tool} ({r.get('measured_at', '?')})")
        shown = _fmt_time(r["time_s"])
        if len(times) > 1:
            shown += f" (best of {len(times)})"
        out.append(f"| {tool} | {r['rules']:,} | {shown} | {_fmt_time(r['cpu_s'])} | {speed} | "
                   f"{r['run_peak_mb']:,.0f} | {r['input_rss_mb']:,.0f} | "
                   f"{_mb(r.get('process_peak_mb'))} | {_load(r)} | {same} |")
    prints = {res[t].get("miner_sha256") for t in ("ours", "ours+fisher") if "time_s" in res[t]}
    if prints:
        out += ["", f"Miner source fingerprint ({', '.join(MINER_FILES)}; sha256, 12 digits): "
                + ", ".join(sorted(p or "not recorded" for p in prints))
                + (" (ours and ours+fisher timed different versions)" if len(prints) > 1
                   else ".")]
    if reused:
        out += ["", "Reused from an earlier run of this script (`--reuse`), measured then: "
                + ", ".join(reused) + "."]
    if "rules_before_restricting" in res.get("mlxtend", {}):
        m = res["mlxtend"]
        out += ["", f"mlxtend found {m['itemsets']:,} itemsets and "
                f"{m['rules_before_restricting']:,} rules before the restriction to single-item "
                "consequents."]
    if run["notes"]:
        out += ["", "Where the rule sets differ, and why:", "", *run["notes"]]
    if run["threshold"]:
        out += ["", "Rules exactly on the confidence threshold:", "", *run["threshold"]]
    out += ["", *targets_markdown(run)]
    return "\n".join(out) + "\n"


def targets_markdown(run: dict[str, Any]) -> list[str]:
    case: Case = run["case"]
    res = run["results"]
    ours = res["ours"]
    if "time_s" not in ours:
        return ["Targets: ours did not finish: " + ours.get("failed", "?")]
    t = ours["time_s"]
    rows = []
    exact = all(res[p].get("only_ours", 0) + res[p].get("only_peer", 0)
                + res[p].get("count_differs", 0) == 0
                for p in ("pyfim.arules", "pyfim.fpgrowth") if "rules" in res[p])
    rows.append(("same rule set and counts as pyfim", "yes" if exact else "no",
                 "met" if exact else "MISSED"))
    if case.demo is None:
        m = res["mlxtend"]
        if "time_s" in m:
            speed = m["time_s"] / t
            cpu_speed = m["cpu_s"] / ours["cpu_s"]
            rows.append(("at least 100x faster than mlxtend",
                         f"{speed:,.0f}x wall ({_fmt_time(m['time_s'])} s vs {_fmt_time(t)} s); "
                         f"CPU time {cpu_speed:,.0f}x",
                         "met" if min(speed, cpu_speed) >= 100 else
                         "MISSED" if max(speed, cpu_speed) < 100 else "met in wall time only"))
        elif "timeout" in m.get("failed", ""):
            bound = m["wall_s"] / t
            rows.append(("at least 100x faster than mlxtend", f"over {bound:,.0f}x (mlxtend "
                         f"{m['failed']}, after {m['wall_s']:.0f} s)",
                         "met" if bound >= 100 else "not shown"))
        else:
            rows.append(("at least 100x faster than mlxtend", "mlxtend " + m["failed"], "n/a"))
        fims = [res[p]["time_s"] for p in ("pyfim.arules", "pyfim.fpgrowth") if "time_s" in res[p]]
        if fims:
            ratio = t / min(fims)
            cpus = [res[p]["cpu_s"] for p in ("pyfim.arules", "pyfim.fpgrowth")
                    if "cpu_s" in res[p]]
            cpu_ratio = ours["cpu_s"] / min(cpus)
            rows.append(("mining time within 1.5x of pyfim (best of its two entry points)",
                         f"{ratio:.2f}x wall ({_fmt_time(t)} s vs {_fmt_time(min(fims))} s); "
                         f"CPU time {cpu_ratio:.2f}x",
                         "met" if max(ratio, cpu_ratio) <= 1.5 else
                         "MISSED" if min(ratio, cpu_ratio) > 1.5 else
                         "met in CPU time only" if cpu_ratio <= 1.5 else
                         "met in wall time only"))
        if "time_s" in res["ours+fisher"]:
            rows.append(("(information) ours with significance=True",
                         f"{_fmt_time(res['ours+fisher']['time_s'])} s wall, "
                         f"{_fmt_time(res['ours+fisher']['cpu_s'])} s CPU", ""))
    else:
        rows.append(("under 2 minutes", f"{t:.1f} s", "met" if t < 120 else "MISSED"))
        peak = max(ours["run_peak_mb"], ours.get("process_peak_mb") or 0)
        rows.append(("peak memory under 8 GiB", f"{peak / 1024:.2f} GiB (process peak, input "
                     f"loading included; {ours['run_peak_mb'] / 1024:.2f} GiB in the run)",
                     "met" if peak < 8 * 1024 else "MISSED"))
    return ["| target (ours = `mine`, significance=False) | measured | |", "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows)]


def machine_markdown() -> list[str]:
    from benchmarks import machine

    libs = []
    for pkg in ("numpy", "pandas", "pyarrow", "scipy", "numba", "mlxtend", "pyfim"):
        try:
            libs.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            libs.append(f"{pkg} (absent)")
    return [f"Machine: {machine.describe()}; " + ", ".join(libs) + "."]


def write_section(runs: list[dict[str, Any]], when: str, command: str) -> str:
    """Replace our section of BENCHMARKS.md; case subsections not rerun are kept."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    old = ""
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        end = len(text) if nxt < 0 else nxt + 1
        old = text[start:end]
    else:
        start = end = len(text)
    kept = {m.group(1): m.group(0) for m in
            re.finditer(r"### Case (\w):.*?(?=\n### Case |\Z)", old, flags=re.S)}
    fresh = {r["case"].key: case_markdown(r, when, command) for r in runs}
    kept.update(fresh)
    body = [SECTION, "",
            "Our miner (`recsys.rules.mining.mine`, from the (order_id, product_id) DataFrame "
            "to the rules DataFrame) against pyfim (`fim.arules`, `fim.fpgrowth`, from a list "
            "of transactions to a list of rules) and mlxtend (TransactionEncoder sparse one-hot "
            "+ fpgrowth + association_rules, then single-item consequents). Same baskets and "
            "thresholds; each tool in its own process; inputs built outside the timer; wall "
            "clock and process CPU time, each the best of up to 5 runs (`--repeat`) for tools "
            "under 10 s. `ours faster by` = peer time / our time (significance=False). "
            "`load avg` = the machine's 1-minute load average before and after the timed runs "
            "(other work on this 2-core machine slows wall times; CPU times suffer less). "
            "Peak RSS in run = resident high-water mark during "
            "the timed call (reset before it); input RSS = resident size before it; process "
            "peak = `ru_maxrss` of the whole subprocess, input loading included.", "",
            f"Last run {when}: `{command}`", "", *machine_markdown(), ""]
    section = "\n".join(body) + "\n" + "\n".join(
        kept[k].rstrip("\n") + "\n" for k in sorted(kept))
    prefix = text[:start]
    if prefix and not prefix.endswith("\n\n"):
        prefix = prefix.rstrip("\n") + "\n\n"
    rest = text[end:]
    new = prefix + section + ("\n" + rest if rest else "")
    tmp = BENCHMARKS_MD.with_name(BENCHMARKS_MD.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, BENCHMARKS_MD)
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="a,b,c", help="comma-separated, from a,b,c")
    parser.add_argument("--skip-mlxtend", action="store_true", help="leave mlxtend out")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds per tool and case, input building included (600)")
    parser.add_argument("--memory-cap-gb", type=float, default=12.0,
                        help="resident memory at which a tool's process is stopped (12)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of tools whose first run takes under 10 s; best is kept")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/recsys_rules_bench"),
                        help="generated shop and per-run files (/tmp/recsys_rules_bench)")
    parser.add_argument("--reuse", default="", type=lambda v: [t for t in v.split(",") if t],
                        help="tools (e.g. mlxtend) whose result of an earlier run, kept in "
                             "--cache-dir, is reused instead of running them again")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one extra run of ours and print the top entries")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only on stderr")
    parser.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CASES]
    if unknown or not keys:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    if set(args.reuse) - set(TOOLS):
        parser.error(f"--reuse: unknown tool(s) {sorted(set(args.reuse) - set(TOOLS))}")
    sys.path.insert(0, str(REPO))
    if args.worker:
        worker(args.worker, CASES[keys[0]], args.out, args.cache_dir, args.repeat, args.profile)
        return 0
    if any(CASES[k].demo is None for k in keys) and not RETAIL.exists():
        parser.error(f"{RETAIL} is missing: cases a and b need ../shared/datasets")
    runs_dir = args.cache_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join([".venv/bin/python", "benchmarks/rules_bench.py",
                          *(argv if argv is not None else sys.argv[1:])])
    runs = []
    for key in keys:
        case = CASES[key]
        if case.demo is not None:
            prepare_demo(args.cache_dir, case.demo)  # once, before any timing
        run = run_case(case, args, runs_dir)
        runs.append(run)
        print(case_markdown(run, when, command), flush=True)
        if args.profile and "profile" in run["results"]["ours"]:
            print(run["results"]["ours"]["profile"], file=sys.stderr)
    if not args.no_write:
        write_section(runs, when, command)
        log.info("wrote the section to %s", BENCHMARKS_MD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
