"""Memory of N serving workers on one artifact: what each extra worker adds.

Builds a generated shop's artifact once (``recsys run`` into --work; or serves --store), then
for each --server and each --workers count starts the server: ``recsys`` is ``recsys serve
--workers N`` (workers forked from a supervisor that imported the app and preloaded the
artifact: recsys.cli.prefork), ``uvicorn`` is ``uvicorn --factory recsys.app:app_from_env
--workers N`` (uvicorn's own workers, each a fresh interpreter: spawn), both with
RECSYS_SERVING_ARTIFACTS / RECSYS_SERVING_DATABASE_URL under --work. It waits until every
worker answers and is idle, warms the workers with requests over fresh connections (item
lists, cart add-ons, customer lists, session-aware lists; the kernel hands each connection to
one of the workers, so all of them get some), and reads every process's VmRSS, RssAnon and
RssFile (/proc/PID/status) and Pss and Private (/proc/PID/smaps_rollup). Pss splits shared
pages among the processes mapping them, so the sum of Pss over the server's processes is the
memory the server costs the host; RssFile of a worker is mostly the artifact's
memory-mapped arrays (and the shared libraries), shared by all workers.

What an extra worker adds: (sum of Pss with N workers - sum of Pss with 1) / (N - 1),
compared with the RSS of the single worker (the issue's target: at most 25%).

    PYTHONPATH=. .venv/bin/python benchmarks/worker_memory_bench.py --orders 3000000 \\
        --products 50000 --workers 1,4 [--server recsys,uvicorn] [--work var/worker-memory]
        [--store STORE] [--code /other/checkout --without sessions_by_item.npz]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def build(work: Path, orders: int, products: int) -> tuple[Path, float]:
    """The artifact store of a generated shop (built with ``recsys run`` when missing)."""
    from recsys.demo import DemoSpec, generate_demo

    shop, root = work / f"shop-{orders}-{products}", work / f"run-{orders}-{products}"
    store = root / "artifacts"
    if (store / "CURRENT").exists():
        return store, 0.0
    if not (shop / "orders.csv").exists():
        generate_demo(shop, DemoSpec(orders=orders, products=products), progress=False)
    root.mkdir(parents=True, exist_ok=True)
    config = root / "recsys.toml"
    config.write_text(
        f'data_dir = "{root / "data"}"\n'
        f'[ingest]\norders = "{shop / "orders.csv"}"\nevents = "{shop / "events.csv"}"\n'
        f'catalog = "{shop / "catalog.csv"}"\n[demo]\ngenerate_if_missing = false\n'
        f'[artifacts]\nroot = "{store}"\nkeep_last = 1\n')
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recsys.cli", "-q", "run", "--config", str(config)],
                   check=True, cwd=REPO, env={**os.environ, "TQDM_DISABLE": "1"})
    return store, time.perf_counter() - start


def without(store: Path, files: list[str], work: Path) -> Path:
    """A store whose current version is ``store``'s (hard links) less ``files`` and their
    manifest entries: what code from before those files were written can load."""
    current = (store / "CURRENT").read_text().strip()
    source, out = store / "versions" / current, work / "store-without"
    target = out / "versions" / current
    if not target.exists():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(source).as_posix()
            if rel in files or rel == "manifest.json":
                continue
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target / rel)
        manifest = json.loads((source / "manifest.json").read_text())
        manifest["files"] = {k: v for k, v in manifest["files"].items() if k not in files}
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (out / "CURRENT").write_text(current + "\n")
    return out


def memory(pid: int) -> dict[str, float]:
    """MiB: VmRSS, RssAnon, RssFile, VmHWM (status) and Pss, Private (smaps_rollup)."""
    out: dict[str, float] = {}
    status = Path(f"/proc/{pid}/status").read_text()
    for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", status, flags=re.M)
        out[key] = int(m.group(1)) / 1024 if m else 0.0
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", rollup, flags=re.M)}
    out["Pss"] = kb.get("Pss", 0) / 1024
    out["Private"] = (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024
    return out


def children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Server:
    """``recsys serve`` or ``uvicorn`` with N workers in its own session (stopped by its
    process group)."""

    def __init__(self, store: Path, workers: int, work: Path, code: Path, kind: str) -> None:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.workers = workers
        self.kind = kind
        common = ["--host", HOST, "--port", str(self.port), "--workers", str(workers)]
        self.command = (
            [sys.executable, "-m", "recsys.cli", "-q", "serve", "--artifacts", str(store),
             *common] if kind == "recsys" else
            [sys.executable, "-m", "uvicorn", "--factory", "recsys.app:app_from_env", *common,
             "--log-level", "warning", "--timeout-worker-healthcheck", "900"])
        self.env = {**os.environ, "PYTHONPATH": str(code),
                    "RECSYS_SERVING_ARTIFACTS": str(store),
                    "RECSYS_SERVING_DATABASE_URL": f"sqlite:///{work / f'w{workers}.db'}"}
        self.code = code
        self.log = work / f"server-{kind}-{workers}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        # uvicorn's workers run multiprocessing's spawn_main; recsys serve's are forks of it
        mark = (Path(f"/proc/{self.proc.pid}/cmdline").read_bytes() if self.kind == "recsys"
                else b"spawn_main")
        return sorted(c for c in children(self.proc.pid)
                      if mark in Path(f"/proc/{c}/cmdline").read_bytes())

    def start(self, timeout: float) -> float:
        start = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.code, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"server not ready after {timeout:.0f} s; see {self.log}")
            with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(
                    f"http://{HOST}:{self.port}/readyz", timeout=5) as resp:
                if resp.status == 200 and len(self.worker_pids()) == self.workers:
                    break
            time.sleep(1.0)
        while time.perf_counter() - start < timeout:  # every worker loaded and idle
            pids = self.worker_pids()
            before = [cpu_ticks(p) for p in pids]
            time.sleep(2.0)
            if len(pids) == self.workers and all(
                    cpu_ticks(p) - b < 10 for p, b in zip(pids, before, strict=True)):
                return time.perf_counter() - start
        raise RuntimeError("workers did not settle")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def requests_for(store: Path, n: int, seed: int) -> list[tuple[str, str, bytes | None]]:
    """(method, path, body): item lists, cart add-ons, customer lists, session-aware lists."""
    import pyarrow.parquet as pq

    version = store / "versions" / (store / "CURRENT").read_text().strip()
    ids = pq.read_table(version / "items.parquet").column("id").to_pylist()
    customers_file = version / "customers.parquet"
    customers = (pq.read_table(customers_file).column("id").to_pylist()
                 if customers_file.exists() else [])
    rng = random.Random(seed)
    out: list[tuple[str, str, bytes | None]] = []
    for _ in range(n):
        p = urllib.parse.quote(rng.choice(ids), safe="")
        cart = [rng.choice(ids) for _ in range(rng.randint(1, 5))]
        history = urllib.parse.quote(",".join(rng.choice(ids) for _ in range(3)), safe=",")
        out += [("GET", f"/v1/items/{p}/bought-together?k=10", None),
                ("GET", f"/v1/items/{p}/also-viewed?k=10&history={history}", None),
                ("GET", f"/v1/items/{p}/similar?k=10", None),
                ("POST", "/v1/cart/add-ons?k=10", json.dumps(
                    {"items": [{"product_id": c, "quantity": 1} for c in cart]}).encode())]
        if customers:
            c = urllib.parse.quote(rng.choice(customers), safe="")
            out.append(("GET", f"/v1/customers/{c}/recommendations?k=10", None))
    return out


def warm(port: int, requests: list[tuple[str, str, bytes | None]]) -> dict[int, int]:
    """Send every request on a fresh connection; the HTTP statuses and their counts."""
    statuses: dict[int, int] = {}
    for method, path, body in requests:
        req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              "X-API-Key": "change-me"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def run(store: Path, workers: int, work: Path, code: Path, n_warm: int,
        kind: str) -> dict[str, Any]:
    server = Server(store, workers, work, code, kind)
    try:
        ready_s = server.start(timeout=1800)
        pids = server.worker_pids()
        cpu_before = {p: cpu_ticks(p) for p in pids}
        statuses = warm(server.port, requests_for(store, n_warm, seed=7))
        time.sleep(2.0)
        assert server.proc is not None
        supervisor = [] if workers == 1 else [server.proc.pid]
        return {"server": kind, "workers": workers, "ready_s": round(ready_s, 1), "statuses": statuses,
                "warm_cpu_ticks": [cpu_ticks(p) - cpu_before[p] for p in pids],
                "worker_memory": [memory(p) for p in pids],
                "supervisor_memory": [memory(p) for p in supervisor]}
    finally:
        server.stop()


def summary(results: list[dict[str, Any]]) -> list[str]:
    """One server's table (every result of one --server), and what each extra worker adds."""
    lines = [f"server: {results[0]['server']}",
             "| workers | process | RSS | RssAnon | RssFile | PSS | private | peak (VmHWM) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    totals = {}
    for r in results:
        rows = [(f"worker {i + 1}", m) for i, m in enumerate(r["worker_memory"])]
        rows += [("supervisor", m) for m in r["supervisor_memory"]]
        for name, m in rows:
            lines.append(f"| {r['workers']} | {name} | {m['VmRSS']:,.0f} | {m['RssAnon']:,.0f} | "
                         f"{m['RssFile']:,.0f} | {m['Pss']:,.0f} | {m['Private']:,.0f} | "
                         f"{m['VmHWM']:,.0f} |")
        total = {k: sum(m[k] for _, m in rows) for k in ("VmRSS", "Pss", "Private")}
        totals[r["workers"]] = total
        lines.append(f"| {r['workers']} | **total** | {total['VmRSS']:,.0f} | | | "
                     f"**{total['Pss']:,.0f}** | {total['Private']:,.0f} | |")
    if 1 in totals:
        first = next(r for r in results if r["workers"] == 1)["worker_memory"][0]["VmRSS"]
        for n, total in totals.items():
            if n > 1:
                extra = (total["Pss"] - totals[1]["Pss"]) / (n - 1)
                lines.append(f"\n{n} workers: each extra worker adds {extra:,.0f} MiB PSS = "
                             f"{extra / first:.0%} of the single worker's RSS ({first:,.0f} MiB); "
                             f"target at most 25%: {'met' if extra <= 0.25 * first else 'missed'}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=3_000_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--server", default="recsys,uvicorn",
                        help="recsys (recsys serve: forked workers) and/or uvicorn (spawned)")
    parser.add_argument("--work", type=Path, default=REPO / "var/worker-memory")
    parser.add_argument("--store", type=Path, help="serve this artifact store (no build)")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the checkout whose recsys the server runs")
    parser.add_argument("--warm", type=int, default=100, help="rounds of warm-up requests")
    parser.add_argument("--without", default="",
                        help="comma-separated files of the version to leave out (to serve it "
                             "with --code from before they existed)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, nproc {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    store, build_s = (args.store, 0.0) if args.store else build(args.work, args.orders,
                                                                 args.products)
    if build_s:
        print(f"built {store} in {build_s:.0f} s", flush=True)
    if args.without:
        store = without(store, args.without.split(","), args.work)
    for kind in args.server.split(","):
        results = []
        for workers in (int(w) for w in args.workers.split(",")):
            result = run(store, workers, args.work, args.code.resolve(), args.warm, kind)
            print(json.dumps(result), flush=True)
            results.append(result)
        print("\n".join(summary(results)), flush=True)


if __name__ == "__main__":
    main()
