"""The local engine against the Spark engine (`recsys run --engine local|spark`) on generated
shops: wall time per stage and in total, and peak resident memory of the whole process tree
(driver Python, Spark's JVM, its Python workers), sampled from /proc every 0.2 s, with the
driver's own peak per stage.

Each run is a fresh `recsys run` subprocess on the same generated shop (generated once per
size into --work, outside the timing), so Spark's start-up (JVM, session) is included.

    .venv/bin/python benchmarks/spark_bench.py --orders 100000 [--orders 1000000 ...]
        [--engines local,spark] [--master local[2]] [--work var/spark-bench] [--timeout 3600]
        [--until rules]   # stop each run after that job: the ingest and rules stages only
        [--spark-setting KEY=VALUE ...]   # more [spark] settings for the Spark runs
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import machine
from recsys.demo import DemoSpec, generate_demo

_PAGE = os.sysconf("SC_PAGE_SIZE")
_STAGE = re.compile(r"^(\S+ \S+),(\d+) INFO recsys\.pipeline: (ingest done|job (\w+):)")


_FORKNOEXEC = 0x40  # the kernel's PF_FORKNOEXEC: a process that has not exec'd since its fork


def _tree_rss(root: int) -> dict[str, int]:
    """Resident bytes of ``root`` (the driver) and its descendants, by kind (driver, other
    python processes: Spark's Python workers; java: Spark's JVM; other). A child of the JVM
    that has not exec'd yet is left out: the JVM starts processes (``rm -rf`` of its scratch
    folders, the Python daemon) with posix_spawn, whose child shares the JVM's memory until
    it execs and, named after the spawning thread, would count the JVM a second time."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    spawning: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        names[int(entry)] = name
        if int(fields[6]) & _FORKNOEXEC:
            spawning.add(int(entry))
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    out = {"driver": 0, "python": 0, "java": 0, "other": 0}
    for pid in tree:
        if pid in spawning and names.get(parents[pid]) == "java":
            continue
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError):
            continue
        kind = "driver" if pid == root else "java" if names.get(pid) == "java" else (
            "python" if names.get(pid, "").startswith("python") else "other")
        out[kind] += resident
    return out


class _Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0
        self.peak_by_kind = {"driver": 0, "python": 0, "java": 0, "other": 0}
        self.stop = threading.Event()

        self.driver: list[tuple[float, int]] = []  # (time, driver's resident bytes)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            rss = _tree_rss(self.pid)
            self.peak = max(self.peak, sum(rss.values()))
            self.driver.append((time.time(), rss["driver"]))
            for kind, value in rss.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind[kind], value)


def _config(shop: Path, work: Path, engine: str, master: str,
            extra: dict[str, str] | None = None) -> Path:
    root = work / f"{engine}-{shop.name}"
    path = root / "recsys.toml"
    root.mkdir(parents=True, exist_ok=True)
    more = "".join(f', "{k}" = "{v}"' for k, v in (extra or {}).items())
    path.write_text(
        f'data_dir = "{root / "data"}"\n'
        f'[ingest]\norders = "{shop / "orders.csv"}"\nevents = "{shop / "events.csv"}"\n'
        f'catalog = "{shop / "catalog.csv"}"\n'
        f'[demo]\ngenerate_if_missing = false\n'
        f'[artifacts]\nroot = "{root / "artifacts"}"\nkeep_last = 1\n'
        f'[spark]\nmaster = "{master}"\n'
        f'settings = {{ "spark.driver.memory" = "4g", "spark.sql.shuffle.partitions" = "8", '
        f'"spark.ui.enabled" = "false", "spark.ui.showConsoleProgress" = "false", '
        f'"spark.local.dir" = "{root / "spark-tmp"}"{more} }}\n')
    return path


def _marks(log: str, start: float, end: float) -> list[tuple[str, float]]:
    """(stage, when it ended) from the pipeline's INFO log lines (ingest, then each job),
    after ("start", start) and before ("publish", end)."""
    marks = [("start", start)]
    for line in log.splitlines():
        m = _STAGE.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            marks.append((m.group(4) or "ingest", when.timestamp() + int(m.group(2)) / 1000))
    marks.append(("publish", end))
    return marks


def _stages(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Seconds per stage."""
    return {name: round(t - marks[i - 1][1], 1) for i, (name, t) in enumerate(marks) if i}


def _driver_peaks(marks: list[tuple[str, float]], samples: list[tuple[float, int]]
                  ) -> dict[str, int]:
    """The driver's peak resident MB per stage (the samples taken while it ran)."""
    out = {}
    for i, (name, end) in enumerate(marks):
        if i:
            inside = [rss for t, rss in samples if marks[i - 1][1] <= t <= end]
            out[name] = max(inside, default=0) // 2**20
    return out


def run_one(config: Path, engine: str, timeout: float, until: str | None = None,
            ) -> dict[str, object]:
    """One `recsys run` subprocess, timed; with ``until`` (a job's name) it is stopped (its
    whole process group, Spark's JVM included) once that job has logged its end."""
    cmd = [sys.executable, "-m", "recsys.cli", "run", "--engine", engine, "--config", str(config)]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"}, start_new_session=True)
    sampler = _Sampler(proc.pid)
    sampler.start()
    log: list[str] = []
    stopped = threading.Event()
    written = (config.parent / f"run-{engine}.log").open("w")  # as it comes: a long run shows
    # where it is, and a run that times out keeps its log

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            written.write(line)
            written.flush()
            m = _STAGE.match(line)
            if m:  # progress of a long run
                print(f"  {engine}: {m.group(3)} at {time.time() - start:.0f} s", flush=True)
            if until is not None and m and m.group(4) == until:
                stopped.set()
                os.killpg(proc.pid, signal.SIGTERM)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        sampler.stop.set()
        sampler.join()
        reader.join(timeout=10)
        written.close()
    end = time.time()
    err = "".join(log)
    ok = proc.returncode == 0 or stopped.is_set()
    status = (f"timed out after {timeout:.0f} s" if timed_out else
              f"ok, stopped after job {until}" if stopped.is_set() else "ok" if ok else
              f"exit {proc.returncode}: {err.strip()[-300:]}")
    # a run that timed out: the stages it finished (its last mark is the kill, not publish)
    marks = _marks(err, start, end) if ok or timed_out else []
    stages, driver = _stages(marks), _driver_peaks(marks, sampler.driver)
    if stopped.is_set() or timed_out:  # the time to stop it, not a stage
        stages.pop("publish", None)
        driver.pop("publish", None)
    return {"engine": engine, "status": status, "wall_s": round(end - start, 1),
            "peak_rss_mb": sampler.peak // 2**20,
            "peak_by_kind_mb": {k: v // 2**20 for k, v in sampler.peak_by_kind.items()},
            "stages_s": stages, "driver_peak_by_stage_mb": driver}


def _setting(text: str) -> tuple[str, str]:
    """A ``--spark-setting`` value: ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, action="append", required=True)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--work", type=Path, default=Path("var/spark-bench"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--spark-setting", action="append", default=[], metavar="KEY=VALUE",
                        type=_setting, help="one more Spark setting for the Spark runs "
                                            "(repeatable)")
    parser.add_argument("--until", help="stop each run after this job (e.g. rules: ingest "
                                        "and the jobs up to the rules only)")
    args = parser.parse_args()
    print(f"# {machine.describe()}; master {args.master}")
    for n in args.orders:
        shop = args.work / f"shop-{n}"
        if not (shop / "orders.csv").exists():
            t = time.time()
            generate_demo(shop, DemoSpec(orders=n, products=min(args.products, max(300, n // 20))),
                          progress=False)
            print(f"generated {shop} in {time.time() - t:.0f} s")
        lines = sum(1 for _ in (shop / "orders.csv").open()) - 1
        for engine in args.engines.split(","):
            result = run_one(_config(shop, args.work, engine, args.master,
                                     dict(args.spark_setting)), engine, args.timeout, args.until)
            print(f"orders={n} lines={lines} {result}", flush=True)


if __name__ == "__main__":
    main()
