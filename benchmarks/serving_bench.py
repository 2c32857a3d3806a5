"""Serving: the recsys API against a bare FastAPI endpoint, same uvicorn, same run, loopback.

Endpoints (``GET`` unless said):
  bare              ``benchmarks/bare_app.py`` ``/v1/bare``: ``async def`` returning a constant
                    ten-item list (the reference of the 0.8x target);
  bare-sync         the same list from a ``def`` route (pays the thread-pool hop ours pay);
  bought-together   ``/v1/items/{id}/bought-together`` (k=10);
  add-ons           ``POST /v1/cart/add-ons`` with a cart of 1-5 products (k=10).

Every server is started with the same command line, ``python -m uvicorn APP --host 127.0.0.1
--port P --workers W --log-level warning`` (uvloop and httptools, as ``recsys serve --quiet``);
the recsys API with ``--factory recsys.app:app_from_env`` and RECSYS_SERVING_ARTIFACTS /
RECSYS_SERVING_DATABASE_URL pointing under the work folder. Artifacts (``--artifacts``):
  orii  Online Retail II 2009-2010 (``../shared/datasets``), no events, no catalog, the default
        rule thresholds of ``configs/recsys.toml``; built with ``recsys run`` if missing;
  demo  the generated demo shop (orders, events, catalog), built with ``recsys demo --no-serve``.
Request ids are drawn (seeded) from the products that have at least one single-antecedent
rule in the artifact's ``rules.parquet``, weighted by their order count (a product page is
seen about as often as the product sells); carts are 1-5 distinct such products.

The servers of one worker count run side by side, idle but for the one under load:
  1. warm-up: ``wrk`` for ``--warmup`` s per endpoint, discarded;
  2. maximum throughput: ``wrk -t1 -c CONNECTIONS -d DURATION --timeout 10s`` (closed loop;
     a Lua script cycles through the request ids / cart bodies), ``--rounds`` rounds over
     all endpoints in turn, the best and the median reported;
  3. latency at half of the best maximum, ``--rounds`` rounds again: an open-loop,
     fixed-rate client of this script
     (``_openloop``: one epoll loop, raw keep-alive HTTP/1.1 over ``--rate-connections``
     connections) in its own process(es); request i is due at t0 + i / rate and its latency
     is measured from that due time, so time waiting for the server or a free connection
     counts (no coordinated omission); the first ``--warmup`` s of the same load are not
     counted (an idle core's first milliseconds run slowly on a virtual machine). Debian's
     wrk has no ``-R`` (wrk2), hence this client; its CPU time per request is reported (with
     2 workers it shares the cores with them).
The machine has 2 cores shared by server and load generator. With ``--workers 1`` the server
is pinned to CPU 0 and wrk / the client to CPU 1 (``taskset``); with 2 workers nothing is
pinned and the load generator takes CPU from the workers. Memory per worker is read after
the runs: VmRSS, RssAnon and RssFile of /proc/PID/status and Pss of /proc/PID/smaps_rollup
(the neighbour tables are memory-mapped and shared between workers; PSS splits them).
Where the time goes: ``--profile`` adds, for one worker, a py-spy sampling run (``--gil``)
of each recsys endpoint under wrk load; the lookups alone (``recommend.bought_together`` /
``cart_addons`` over the same ids) are timed in a fresh process (``--no-inproc`` skips it),
which also counts the objects the garbage collector tracks and times one full collection.
The machine is shared with other jobs: before each run the script waits (``--quiet-wait``)
for the rest of the machine to use under ``--quiet-below`` cores, and it reports the CPU
the rest used during each run and each server's CPU time per request (less sensitive to
that load than requests per second).

Results go to stdout as Markdown and replace the section "## Serving
(`benchmarks/serving_bench.py`)" of BENCHMARKS.md at the repository root (``--no-write`` to
leave it alone). Every server started is stopped at the end, also on errors.

    apt-get install -y wrk
    .venv/bin/python benchmarks/serving_bench.py --artifacts orii,demo --workers 1,2 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import re
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

log = logging.getLogger("serving_bench")

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
SECTION = "## Serving (`benchmarks/serving_bench.py`)"
ORII = REPO.parent / "shared/datasets/online_retail_ii_2009_2010/online_retail.parquet"
HOST = "127.0.0.1"
TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0


# -- artifacts -----------------------------------------------------------------------------


def artifact_config(name: str, work: Path) -> str:
    """The config TOML that builds artifact ``name`` under ``work``."""
    base = work / name
    if name == "orii":
        return f"""# Online Retail II 2009-2010: orders only (TOML has no null: "" disables a source)
data_dir = "{base / 'data'}"
[ingest]
orders = "{ORII}"
events = ""
catalog = ""
mapping = "{REPO / 'configs/mappings/online_retail_ii.toml'}"
[artifacts]
root = "{base / 'artifacts'}"
"""
    if name == "demo":
        shop = base / "shop"
        return f"""# The generated demo shop (orders, events, catalog), default size
data_dir = "{base / 'data'}"
[ingest]
orders = "{shop / 'orders.csv'}"
events = "{shop / 'events.csv'}"
catalog = "{shop / 'catalog.csv'}"
[demo]
out = "{shop}"
[artifacts]
root = "{base / 'artifacts'}"
"""
    raise SystemExit(f"unknown artifact {name!r}: use orii or demo")


def ensure_artifact(name: str, work: Path, rebuild: bool) -> tuple[Path, str]:
    """The artifact store of ``name`` (built with ``recsys run`` when missing) and the command."""
    root = work / name / "artifacts"
    config = work / f"{name}.toml"
    verb = "demo --no-serve" if name == "demo" else "run"  # the demo command generates the shop
    command = f"{REPO / '.venv/bin/recsys'} -q {verb} --config {config}"
    if (root / "CURRENT").exists() and not rebuild:
        log.info("%s: serving the existing artifact store %s", name, root)
        return root, command
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(artifact_config(name, work))
    log.info("%s: building the artifact: %s", name, command)
    start = time.perf_counter()
    subprocess.run(shlex.split(command), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    log.info("%s: built in %.0f s", name, time.perf_counter() - start)
    return root, command


@dataclass
class Requests:
    """The request ids of one artifact: seed products and carts."""

    products: list[str]
    carts: list[list[str]]
    with_rules: int  # products with at least one single-antecedent rule


def pick_requests(root: Path, n: int, seed: int) -> Requests:
    """Products with rules, weighted by their order count; carts of 1-5 distinct of them."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    current = (root / "CURRENT").read_text().strip()
    table = pq.read_table(root / "versions" / current / "rules.parquet",
                          columns=["antecedents", "antecedent_count"])
    table = table.filter(pc.equal(pc.list_value_length(table["antecedents"]), 1))
    ids = pc.list_flatten(table["antecedents"]).to_numpy(zero_copy_only=False).astype(str)
    counts = table["antecedent_count"].to_numpy()
    products, first = np.unique(ids, return_index=True)
    weights = counts[first].astype(float)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(products, size=n, p=weights).tolist()
    carts = []
    for _ in range(n):
        size = int(rng.integers(1, 6))
        cart = list(dict.fromkeys(rng.choice(products, size=size, p=weights).tolist()))
        carts.append(cart)
    return Requests(products=chosen, carts=carts, with_rules=len(products))


# -- endpoints -----------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    method: str
    paths: list[str]
    bodies: list[bytes] = field(default_factory=list)

    def lua(self) -> str:
        """A wrk script cycling through the requests."""
        def long_string(text: str) -> str:
            assert "]==]" not in text
            return f"[==[{text}]==]"

        lines = ["local i = 0"]
        if self.method == "POST":
            lines += ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"',
                      "local bodies = {" + ",\n".join(long_string(b.decode()) for b in self.bodies)
                      + "}",
                      f"local path = {long_string(self.paths[0])}",
                      "request = function()", "  i = i % #bodies + 1",
                      '  return wrk.format("POST", path, nil, bodies[i])', "end"]
        else:
            lines += ["local paths = {" + ",\n".join(long_string(p) for p in self.paths) + "}",
                      "request = function()", "  i = i % #paths + 1",
                      '  return wrk.format("GET", paths[i])', "end"]
        return "\n".join(lines) + "\n"

    def raw_requests(self, port: int) -> list[bytes]:
        """The same requests as raw HTTP/1.1 bytes, for the open-loop client."""
        host = f"Host: {HOST}:{port}\r\n"
        if self.method == "POST":
            return [(f"POST {self.paths[0]} HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
                     f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in self.bodies]
        return [f"GET {p} HTTP/1.1\r\n{host}\r\n".encode() for p in self.paths]


def recsys_endpoints(requests: Requests) -> list[Endpoint]:
    paths = [f"/v1/items/{urllib.parse.quote(p, safe='')}/bought-together?k=10"
             for p in requests.products]
    bodies = [json.dumps({"items": [{"product_id": p, "quantity": 1} for p in cart]},
                         separators=(",", ":")).encode() for cart in requests.carts]
    return [Endpoint("bought-together", "GET", paths),
            Endpoint("add-ons", "POST", ["/v1/cart/add-ons?k=10"], bodies)]


BARE_ENDPOINTS = [Endpoint("bare", "GET", ["/v1/bare"]),
                  Endpoint("bare-sync", "GET", ["/v1/bare-sync"])]


# -- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_prefix(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def proc_children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Server:
    """A uvicorn server in its own session (stopped by its process group id)."""

    def __init__(self, label: str, app: list[str], workers: int, cpus: str | None,
                 env: dict[str, str], log_path: Path, healthcheck_s: int | None) -> None:
        self.label = label
        self.port = free_port()
        self.workers = workers
        self.uvicorn_args = [*app, "--host", HOST, "--port", str(self.port),
                             "--workers", str(workers), "--log-level", "warning"]
        if healthcheck_s:
            self.uvicorn_args += ["--timeout-worker-healthcheck", str(healthcheck_s)]
        self.command = [*cpu_prefix(cpus), sys.executable, "-m", "uvicorn", *self.uvicorn_args]
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0
        self.seen_workers: set[int] = set()  # more than ``workers``: the supervisor restarted some

    @property
    def restarts(self) -> int:
        return max(0, len(self.seen_workers) - self.workers)

    def start(self, ready_path: str, timeout: float) -> None:
        env = {**os.environ, **self.env}
        self._log = self.log_path.open("wb")
        log.info("starting %s: %s", self.label, shlex.join(self.command))
        start = time.perf_counter()
        self.proc = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://{HOST}:{self.port}{ready_path}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; see "
                                   f"{self.log_path}")
            self.seen_workers.update(self.worker_pids())
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s "
                                   f"({self.restarts} worker restarts)")
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    break
            time.sleep(0.5)
        self._wait_workers_idle(start + timeout)
        self.ready_s = time.perf_counter() - start
        log.info("%s ready in %.1f s, workers %s", self.label, self.ready_s, self.worker_pids())

    def _wait_workers_idle(self, deadline: float) -> None:
        """With several workers one answers while others may still load: wait for all idle."""
        while time.perf_counter() < deadline:
            pids = self.worker_pids()
            self.seen_workers.update(pids)
            if len(pids) == self.workers:
                before = [cpu_ticks(p) for p in pids]
                time.sleep(1.0)
                if all(cpu_ticks(p) - b < 10 for p, b in zip(pids, before, strict=True)):
                    return
            else:
                time.sleep(0.5)
        raise RuntimeError(f"{self.label}: workers did not settle")

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        pids = []
        for child in proc_children(self.proc.pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(child)
        return sorted(pids)

    def all_pids(self) -> list[int]:
        """The server's processes: uvicorn and, with several workers, its children."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *proc_children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group is the server's own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()
        log.info("stopped %s", self.label)


def memory(pid: int) -> dict[str, float]:
    """Resident memory of a process in MiB: RSS, its anonymous and file parts, PSS."""
    out: dict[str, float] = {}
    status = Path(f"/proc/{pid}/status").read_text()
    for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
        m = re.search(rf"^{key}:\s+(\d+) kB", status, flags=re.M)
        if m:
            out[key] = int(m.group(1)) / 1024
    m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), flags=re.M)
    if m:
        out["Pss"] = int(m.group(1)) / 1024
    return out


def check_endpoint(port: int, endpoint: Endpoint, n: int = 50) -> dict[str, Any]:
    """A few requests: every status 200; the share of lists filled by a fallback."""
    fallbacks: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    sizes = []
    for i in range(min(n, max(len(endpoint.paths), len(endpoint.bodies)))):
        if endpoint.method == "POST":
            req = urllib.request.Request(f"http://{HOST}:{port}{endpoint.paths[0]}",
                                         data=endpoint.bodies[i], method="POST",
                                         headers={"Content-Type": "application/json"})
        else:
            req = urllib.request.Request(f"http://{HOST}:{port}{endpoint.paths[i]}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{endpoint.name}: status {resp.status}")
            body = resp.read()
        sizes.append(len(body))
        doc = json.loads(body)
        fallbacks[doc.get("fallback") or "none"] += 1
        sources.update(item["reason"]["source"] for item in doc["items"])
    return {"checked": len(sizes), "body_bytes": sum(sizes) / len(sizes),
            "fallbacks": dict(fallbacks), "sources": dict(sources)}


# -- load generators -----------------------------------------------------------------------

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def run_wrk(port: int, script: Path, connections: int, duration: float,
            cpus: str | None) -> dict[str, Any]:
    """Closed loop: wrk with one thread; requests/s, latency percentiles, errors."""
    cmd = [*cpu_prefix(cpus), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
           "--timeout", "10s", "--latency", "-s", str(script), f"http://{HOST}:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=duration + 60).stdout
    res: dict[str, Any] = {"command": shlex.join(cmd)}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)(B|KB|MB|GB) read", out)
    assert m, out
    res["requests"] = int(m.group(1))
    res["bytes_per_response"] = float(m.group(3)) * _UNITS_B[m.group(4)] / max(1, res["requests"])
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+\w+)", out, flags=re.M)
        res[f"p{pct}_ms"] = _seconds(m.group(1)) * 1e3 if m else math.nan
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    return res


def run_openloop(port: int, endpoint: Endpoint, rate: float, duration: float,
                 connections: int, procs: int, cpus: str | None, work: Path,
                 warmup: float = 0.0) -> dict[str, Any]:
    """Open loop at ``rate`` req/s in ``procs`` client processes; merged latencies. With a
    ``warmup`` (seconds), the same load runs that much longer first, answered but left out
    of the figures: they are those of a server already under the load, not of one waking
    from idle (on a virtual machine an idle core's first milliseconds of work can take tens
    of milliseconds: ``machine.wake_up_ms``)."""
    import numpy as np

    n = int(rate * duration)
    lead = int(rate * warmup)
    spec_path = work / f"openloop-{endpoint.name}.json"
    t0 = time.monotonic() + 1.5  # CLOCK_MONOTONIC: shared by the client processes
    spec = {"port": port, "rate": rate, "n": lead + n, "skip": lead, "t0": t0, "procs": procs,
            "connections": max(1, connections // procs),
            "requests": [r.decode("latin-1") for r in endpoint.raw_requests(port)]}
    spec_path.write_text(json.dumps(spec))
    cmds = [[*cpu_prefix(cpus), sys.executable, __file__, "_openloop", str(spec_path), str(i)]
            for i in range(procs)]
    children = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in cmds]
    results = [json.loads(c.communicate(timeout=warmup + duration + 120)[0]) for c in children]
    latency = np.concatenate([np.array(r["latency"]) for r in results])
    lag = np.concatenate([np.array(r["lag"]) for r in results])
    ok = latency[np.isfinite(latency)]
    pct = np.percentile(ok, [50, 90, 99, 99.9]) * 1e3 if len(ok) else [math.nan] * 4
    shown = [*cpu_prefix(cpus), sys.executable, __file__, "_openloop", "SPEC.json", "I"]
    return {"command": shlex.join(shown) + f"  # I = 0..{procs - 1}, rate {rate:.0f}/s",
            "rate": rate, "sent": n, "ok": len(ok), "errors": n - len(ok),
            "achieved_rps": len(ok) / max(r["elapsed"] for r in results),
            "p50_ms": pct[0], "p90_ms": pct[1], "p99_ms": pct[2], "p999_ms": pct[3],
            "max_ms": float(ok.max() * 1e3) if len(ok) else math.nan,
            "lag_p99_ms": float(np.percentile(lag, 99) * 1e3) if len(lag) else math.nan,
            "client_cpu_ms_per_request": sum(r["cpu_s"] for r in results) * 1e3 / max(1, n)}


def _openloop_client(spec: dict[str, Any], proc: int) -> dict[str, Any]:
    """Requests proc, proc + procs, ... of the schedule, each due at t0 + i / rate and sent on
    an idle keep-alive connection (queued while none is idle). One epoll loop over
    non-blocking sockets, no asyncio: the client shares the cores with the server, so it
    spends as little CPU per request as Python can."""
    requests = [r.encode("latin-1") for r in spec["requests"]]
    rate, n, t0, procs = spec["rate"], spec["n"], spec["t0"], spec["procs"]
    skip = spec.get("skip", 0)  # the warm-up's requests: sent, not counted
    mine = range(proc, n, procs)
    due = [t0 + i / rate for i in mine]
    latency = [math.nan] * len(mine)
    lag = [math.nan] * len(mine)
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    buffers: dict[int, bytearray] = {}
    busy: dict[int, int] = {}  # fd -> request j in flight
    idle: list[int] = []
    queued: deque[int] = deque()

    def connect() -> int:
        sock = socket.create_connection((HOST, spec["port"]))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        fd = sock.fileno()
        socks[fd], buffers[fd] = sock, bytearray()
        poller.register(fd, select.EPOLLIN)
        return fd

    def send(fd: int, j: int) -> None:
        busy[fd] = j
        request = requests[mine[j] % len(requests)]
        if socks[fd].send(request) != len(request):  # a small request on an idle socket
            raise RuntimeError("request not sent whole")

    def close(fd: int) -> None:
        poller.unregister(fd)
        socks.pop(fd).close()
        buffers.pop(fd)
        if fd in idle:  # the server closed an idle keep-alive connection
            idle.remove(fd)

    def use(fd: int) -> None:
        if queued:
            send(fd, queued.popleft())
        else:
            idle.append(fd)

    for _ in range(spec["connections"]):
        idle.append(connect())
    cpu0 = time.process_time()
    next_j = done = 0
    give_up = (due[-1] if due else t0) + 60.0
    while done < len(mine):
        now = time.monotonic()
        if now > give_up:
            break
        while next_j < len(mine) and due[next_j] <= now:
            lag[next_j] = now - due[next_j]  # how late this client is (not the server)
            if idle:
                send(idle.pop(), next_j)
            else:
                queued.append(next_j)
            next_j += 1
        timeout = due[next_j] - now if next_j < len(mine) else 0.1
        for fd, _ in poller.poll(max(0.0, timeout)):
            try:
                chunk = socks[fd].recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:  # closed by the server: the request in flight failed
                if busy.pop(fd, None) is not None:  # its latency stays NaN: an error
                    done += 1
                close(fd)
                use(connect())
                continue
            buf = buffers[fd]
            buf += chunk
            head = buf.find(b"\r\n\r\n")
            if head < 0:
                continue
            m = _CONTENT_LENGTH.search(buf, 0, head + 2)
            if m is None:
                raise RuntimeError("response without Content-Length")
            end = head + 4 + int(m.group(1))
            if len(buf) < end:
                continue
            ok = buf[9:10] == b"2"  # any 2xx (events answer 201)
            del buf[:end]
            j = busy.pop(fd)
            if ok:  # else its latency stays NaN: an error
                latency[j] = time.monotonic() - due[j]
            done += 1
            use(fd)
    elapsed = time.monotonic() - (t0 + skip / rate)
    cpu_s = time.process_time() - cpu0
    for fd in list(socks):
        close(fd)
    counted = [i for i, j in enumerate(mine) if j >= skip]
    return {"latency": [latency[i] for i in counted if not math.isnan(latency[i])],
            "lag": [lag[i] for i in counted], "errors": sum(
                1 for i in counted if math.isnan(latency[i])),
            "elapsed": elapsed, "cpu_s": cpu_s}


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", flags=re.I)


def openloop_main(spec_path: str, proc: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    json.dump(_openloop_client(spec, int(proc)), sys.stdout)
    return 0


# -- the lookups alone ----------------------------------------------------------------------


def run_inproc(store: Path, requests: Requests, work: Path, name: str) -> dict[str, Any]:
    """``recommend.bought_together`` / ``cart_addons`` called directly, in a fresh process
    that loads the index itself (load time and memory of one worker, without a server)."""
    spec = work / f"inproc-{name}.json"
    spec.write_text(json.dumps({"store": str(store), "products": requests.products,
                                "carts": requests.carts}))
    out = subprocess.run([sys.executable, __file__, "_inproc", str(spec)], capture_output=True,
                         text=True, check=True, timeout=1800).stdout
    return dict(json.loads(out))


def inproc_main(spec_path: str) -> int:
    import numpy as np

    from recsys.serving import recommend
    from recsys.serving.index import load_index
    from recsys.serving.store import Decisions

    spec = json.loads(Path(spec_path).read_text())
    start = time.perf_counter()
    index = load_index(spec["store"])
    result: dict[str, Any] = {"load_s": time.perf_counter() - start,
                              "mem": memory(os.getpid())}
    # a full collection walks every tracked object: the index's Python objects included
    gc.collect()
    result["gc_objects"] = len(gc.get_objects())
    start = time.perf_counter()
    gc.collect()
    result["gc_full_ms"] = (time.perf_counter() - start) * 1e3
    options, decisions = recommend.Options(k=10), Decisions()
    calls = (("bought-together", recommend.bought_together, spec["products"]),
             ("add-ons", recommend.cart_addons, spec["carts"]))
    for name, function, arguments in calls:
        for argument in arguments[:50]:  # warm-up
            function(index, argument, options, decisions)
        cpu = []
        for argument in arguments:
            t0 = time.thread_time()
            function(index, argument, options, decisions)
            cpu.append(time.thread_time() - t0)
        ms = np.array(cpu) * 1e3
        result[name] = {"calls": len(ms), "mean_ms": float(ms.mean()),
                        "p50_ms": float(np.percentile(ms, 50)),
                        "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
    json.dump(result, sys.stdout)
    return 0


# -- profile -------------------------------------------------------------------------------


def profile(pid: int, port: int, script: Path, connections: int, duration: float,
            cpus: str | None, work: Path, name: str) -> list[tuple[str, float]]:
    """py-spy (GIL holder only) during a wrk run: share of samples by innermost recsys
    function, else by the leaf frame's top-level package."""
    out = work / f"pyspy-{name}.txt"
    spy_bin = Path(sys.executable).parent / "py-spy"
    spy = subprocess.Popen([*cpu_prefix(cpus), str(spy_bin), "record", "--pid", str(pid),
                            "--duration", f"{duration:g}", "--rate", "200", "--gil",
                            "--nonblocking", "--function", "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    run_wrk(port, script, connections, duration, cpus)
    spy.wait(timeout=duration + 60)
    shares: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        where = None
        for frame in reversed(frames):
            m = re.match(r"(.+) \((.+?)(?::\d+)?\)$", frame)
            if m and "recsys/" in m.group(2):
                where = f"{m.group(2).split('recsys/', 1)[1]}:{m.group(1)}"
                break
        if where is None:  # py-spy names files from their sys.path entry: pkg/mod.py
            m = re.match(r"(.+) \((.+?)(?::\d+)?\)$", frames[-1])
            path = m.group(2) if m else frames[-1]
            where = path.split("/", 1)[0] if "/" in path else Path(path).stem
        shares[where] += int(count)
    return [(w, c / total) for w, c in shares.most_common(8)] if total else []


# -- the run -------------------------------------------------------------------------------


def _cpu_stat() -> tuple[int, int]:
    """Busy (user + nice + system) and steal ticks of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[0] + fields[1] + fields[2], fields[7]


@contextlib.contextmanager
def other_load(servers: list[Server]) -> Iterator[dict[str, float]]:
    """CPU the rest of the machine used meanwhile (cores): not our servers, not this process
    or its load generators (waited-for children); plus steal (the hypervisor's)."""
    tck = os.sysconf("SC_CLK_TCK")

    def ours() -> float:
        ticks = 0
        for server in servers:
            for pid in server.all_pids():
                with contextlib.suppress(OSError):
                    ticks += cpu_ticks(pid)
        me = os.times()
        return ticks / tck + me.user + me.system + me.children_user + me.children_system

    out: dict[str, float] = {}
    (busy0, steal0), ours0, t0 = _cpu_stat(), ours(), time.monotonic()
    yield out
    (busy1, steal1), ours1, t1 = _cpu_stat(), ours(), time.monotonic()
    out["other_cores"] = max(0.0, (busy1 - busy0) / tck - (ours1 - ours0)) / (t1 - t0)
    out["steal_cores"] = (steal1 - steal0) / tck / (t1 - t0)


def probe_default_healthcheck(name: str, store: Path, workers: int, work: Path,
                              seconds: float) -> dict[str, Any]:
    """``recsys serve --workers N`` runs uvicorn with its default worker health check (5 s):
    does the server come up, or does the supervisor kill workers while they load?"""
    env = {"RECSYS_SERVING_ARTIFACTS": str(store),
           "RECSYS_SERVING_DATABASE_URL": f"sqlite:///{work / name / 'recsys.db'}"}
    server = Server(f"probe[{name}]", ["--factory", "recsys.app:app_from_env"],
                    workers, None, env, work / f"probe-{name}-w{workers}.log", None)
    ready = True
    try:
        server.start("/readyz", seconds)
    except RuntimeError as exc:
        log.info("%s", exc)
        ready = False
    finally:
        server.stop()
    cmd = shlex.join(server.command).replace(f"--port {server.port}", "--port PORT")
    probe = {"artifact": name, "workers": workers, "seconds": seconds, "ready": ready,
             "ready_s": server.ready_s if ready else None, "restarts": server.restarts,
             "command": cmd}
    log.info("default health check probe: %s", probe)
    return probe


def server_cpu_s(server: Server) -> float:
    """CPU seconds used so far by a server's processes (all threads)."""
    ticks = 0
    for pid in server.all_pids():
        with contextlib.suppress(OSError):
            ticks += cpu_ticks(pid)
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_quiet(servers: list[Server], below: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until the rest of the machine uses under ``below`` cores
    for a second: other jobs on this shared machine distort every figure. Seconds waited."""
    start = time.monotonic()
    while True:
        with other_load(servers) as load:
            time.sleep(1.0)
        waited = time.monotonic() - start
        if load["other_cores"] < below or waited >= max_wait:
            return waited


@dataclass
class Target:
    """One endpoint of one running server, and its runs."""

    endpoint: Endpoint
    artifact: str  # "-" for the bare app
    workers: int
    server: Server
    script: Path
    check: dict[str, Any] | None = None
    tops: list[dict[str, Any]] = field(default_factory=list)
    fixed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, server_key: str) -> dict[str, Any]:
        return {"endpoint": self.endpoint.name, "artifact": self.artifact,
                "workers": self.workers, "server": server_key,
                "check": self.check, "tops": self.tops, "fixed": self.fixed}


def run(args: argparse.Namespace, results: dict[str, Any], save: Callable[[], None]) -> None:
    """Per worker count: start every server, then rounds of maximum-throughput runs over all
    endpoints in turn, then rounds of fixed-rate runs; memory; profiles; stop. Fills
    ``results`` (plain JSON) and saves it after each stage."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"requests": {}, "servers": {}}
    stores = {}
    for name in args.artifacts:
        stores[name], results["build"][name] = ensure_artifact(name, work, args.rebuild)
        reqs = info["requests"][name] = pick_requests(stores[name], args.ids, args.seed)
        results["requests"][name] = {"products": len(reqs.products), "carts": len(reqs.carts),
                                     "with_rules": reqs.with_rules}
        if args.inproc:
            log.info("%s: timing the lookups in process (loads the index)", name)
            results["inproc"][name] = run_inproc(stores[name], reqs, work, name)
            log.info("%s: %s", name, results["inproc"][name])
            save()
    servers: list[Server] = []
    try:
        for workers in args.workers:
            pin = args.pin and workers == 1
            server_cpus, load_cpus = ("0", "1") if pin else (None, None)
            if workers > 1 and args.probe_s > 0:
                for name in args.artifacts:
                    results["probes"].append(probe_default_healthcheck(
                        name, stores[name], workers, work, args.probe_s))
                    save()
            bare = Server("bare", ["--app-dir", "benchmarks", "bare_app:app"], workers,
                          server_cpus, {}, work / f"bare-w{workers}.log", args.healthcheck)
            servers.append(bare)
            bare.start("/v1/bare", 120)
            info["servers"][("bare", workers)] = bare
            mine = [Target(ep, "-", workers, bare, work / f"bare-{ep.name}.lua")
                    for ep in BARE_ENDPOINTS]
            for name in args.artifacts:
                env = {"RECSYS_SERVING_ARTIFACTS": str(stores[name]),
                       "RECSYS_SERVING_DATABASE_URL": f"sqlite:///{work / name / 'recsys.db'}"}
                ours = Server(f"recsys[{name}]", ["--factory", "recsys.app:app_from_env"],
                              workers, server_cpus, env, work / f"recsys-{name}-w{workers}.log",
                              args.healthcheck)
                servers.append(ours)
                ours.start("/readyz", args.ready_timeout)
                info["servers"][(name, workers)] = ours
                mine += [Target(ep, name, workers, ours, work / f"{name}-{ep.name}.lua")
                         for ep in recsys_endpoints(info["requests"][name])]
            running = [bare] + [info["servers"][(n, workers)] for n in args.artifacts]
            for t in mine:
                t.script.write_text(t.endpoint.lua())
                t.check = check_endpoint(t.server.port, t.endpoint)
                run_wrk(t.server.port, t.script, args.connections, args.warmup, load_cpus)
            for r in range(args.rounds):
                for t in mine:
                    waited = wait_quiet(running, args.quiet_below, args.quiet_wait)
                    cpu0 = server_cpu_s(t.server)
                    with other_load(running) as load:
                        top = run_wrk(t.server.port, t.script, args.connections, args.duration,
                                      load_cpus)
                    top["cpu_ms_per_request"] = (server_cpu_s(t.server) - cpu0) * 1e3 / max(
                        1, top["requests"])
                    t.tops.append({**top, **load, "waited_s": waited})
                    log.info("w%d round %d %s %s: max %.0f req/s (p99 %.1f ms), server CPU "
                             "%.2f ms/request, other CPU %.2f cores (waited %.0f s)", workers,
                             r + 1, t.artifact, t.endpoint.name, top["rps"], top["p99_ms"],
                             top["cpu_ms_per_request"], load["other_cores"], waited)
            for r in range(args.rounds):
                for t in mine:
                    rate = max(x["rps"] for x in t.tops) / 2
                    duration = min(60.0, max(args.duration, args.min_fixed_requests / rate))
                    waited = wait_quiet(running, args.quiet_below, args.quiet_wait)
                    cpu0 = server_cpu_s(t.server)
                    with other_load(running) as load:
                        fixed = run_openloop(t.server.port, t.endpoint, rate, duration,
                                             args.rate_connections, args.client_procs,
                                             load_cpus, work, args.warmup)
                    fixed["cpu_ms_per_request"] = (server_cpu_s(t.server) - cpu0) * 1e3 / max(
                        1, fixed["ok"])
                    t.fixed.append({**fixed, **load, "waited_s": waited})
                    log.info("w%d round %d %s %s: %.0f req/s fixed: p50 %.2f ms, p99 %.2f ms, "
                             "%d errors, other CPU %.2f cores", workers, r + 1, t.artifact,
                             t.endpoint.name, fixed["achieved_rps"], fixed["p50_ms"],
                             fixed["p99_ms"], fixed["errors"], load["other_cores"])
            if args.profile and workers == 1:
                for t in mine:
                    if t.artifact != "-":
                        shares = profile(t.server.worker_pids()[0], t.server.port, t.script,
                                         args.connections, args.duration, load_cpus, work,
                                         f"{t.artifact}-{t.endpoint.name}")
                        results["profiles"].append({"artifact": t.artifact,
                                                    "endpoint": t.endpoint.name,
                                                    "shares": shares})
            for server in running:
                key = f"{server.label}/{workers}"
                cmd = shlex.join(server.command).replace(f"--port {server.port}", "--port PORT")
                env_text = " ".join(f"{k}={v}" for k, v in server.env.items())
                results["servers"][key] = {
                    "command": f"{env_text} {cmd}".strip(), "ready_s": server.ready_s,
                    "restarts": server.restarts,
                    "mem": [memory(p) for p in server.worker_pids()]}
                results["targets"] += [t.to_json(key) for t in mine if t.server is server]
            for server in running:
                server.stop()
            save()
    finally:
        for server in servers:
            server.stop()


# -- report --------------------------------------------------------------------------------


def _versions() -> str:
    libs = []
    for pkg in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "pydantic", "orjson"):
        try:
            libs.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            libs.append(f"{pkg} (absent)")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    return (f"Python {platform.python_version()}, " + ", ".join(libs)
            + f", wrk {wrk[1] if len(wrk) > 1 else '?'}, Linux {platform.release()}")


def _machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), flags=re.M)
        cpu = m.group(1).strip() if m else cpu
    mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    gib = int(mem.group(1)) / 1024**2 if mem else math.nan
    return (f"{len(os.sched_getaffinity(0))} cores (nproc), {gib:.1f} GiB memory, {cpu}")


def _targets(results: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [t for t in results["targets"] if all(t[k] == v for k, v in match.items())]


def _bare(results: dict[str, Any], workers: int) -> dict[str, Any]:
    return _targets(results, endpoint="bare", workers=workers)[0]


def _best_top(t: dict[str, Any]) -> dict[str, Any]:
    """The maximum run with the most requests/s (other load only ever lowers it)."""
    return max(t["tops"], key=lambda x: x["rps"])


def _best_fixed(t: dict[str, Any]) -> dict[str, Any] | None:
    """The half-max run with the lowest p99 (other load only ever raises it)."""
    return min(t["fixed"], key=lambda x: x["p99_ms"]) if t["fixed"] else None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _cpu(t: dict[str, Any]) -> float:
    """Server CPU per request: the least of the rounds (contention only inflates it)."""
    return min(x["cpu_ms_per_request"] for x in t["tops"])


def _f(value: float, fmt: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def _mem(mem: list[dict[str, float]]) -> str:
    return ", ".join(f"{m.get('VmRSS', math.nan):,.0f} / {m.get('Pss', math.nan):,.0f}"
                     for m in mem) or "-"


def table(results: dict[str, Any]) -> list[str]:
    out = ["| endpoint | artifact | workers | max req/s: best (median) | ratio to bare "
           "| server CPU ms/req | CPU ratio | half-max rate req/s | p50 ms "
           "| p99 ms: best (median) | errors | other CPU, cores (best runs) | body bytes "
           "| RSS / PSS per worker MiB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for t in results["targets"]:
        bare = _bare(results, t["workers"])
        top, fixed = _best_top(t), _best_fixed(t)
        errors = sum(x["non2xx"] + x["socket_errors"] for x in t["tops"]) + sum(
            x["errors"] for x in t["fixed"])
        med_rps = _median([x["rps"] for x in t["tops"]])
        med_p99 = _median([x["p99_ms"] for x in t["fixed"]])
        other = f"{top['other_cores']:.2f}" + (f", {fixed['other_cores']:.2f}" if fixed else "")
        body = t["check"]["body_bytes"] if t["check"] else math.nan
        mem = results["servers"][t["server"]]["mem"]
        out.append(
            f"| {t['endpoint']} | {t['artifact']} | {t['workers']} | {top['rps']:,.0f} "
            f"({med_rps:,.0f}) | {top['rps'] / _best_top(bare)['rps']:.2f} "
            f"| {_cpu(t):.2f} | {_cpu(bare) / _cpu(t):.2f} "
            f"| {_f(fixed['achieved_rps'] if fixed else math.nan, ',.0f')} "
            f"| {_f(fixed['p50_ms'] if fixed else math.nan, '.2f')} "
            f"| {_f(fixed['p99_ms'] if fixed else math.nan, '.2f')} ({_f(med_p99, '.1f')}) "
            f"| {errors} | {other} | {body:,.0f} | {_mem(mem)} |")
    return out


def verdicts(results: dict[str, Any]) -> list[str]:
    out = []
    for t in results["targets"]:
        if t["artifact"] == "-":
            continue
        bare = _bare(results, t["workers"])
        ratio = _best_top(t)["rps"] / _best_top(bare)["rps"]
        med_ratio = (_median([x["rps"] for x in t["tops"]])
                     / _median([x["rps"] for x in bare["tops"]]))
        fixed = _best_fixed(t)
        p99 = fixed["p99_ms"] if fixed else math.nan
        med_p99 = _median([x["p99_ms"] for x in t["fixed"]])
        out.append(f"- {t['endpoint']}, {t['artifact']}, {t['workers']} worker(s): throughput "
                   f"{ratio:.2f}x bare ({'met' if ratio >= TARGET_RATIO else 'missed'}; "
                   f"medians {med_ratio:.2f}x; server CPU per request "
                   f"{_cpu(bare) / _cpu(t):.2f}x); p99 at half max {p99:.1f} ms "
                   f"({'met' if p99 <= TARGET_P99_MS else 'missed'}; median {med_p99:.1f} ms).")
    return out


def markdown(results: dict[str, Any]) -> str:
    a = results["args"]
    lines = [SECTION, "",
             "The recsys API (`GET /v1/items/{id}/bought-together`, `POST /v1/cart/add-ons`, "
             "k=10) against a bare FastAPI endpoint returning a constant ten-item list "
             "(`benchmarks/bare_app.py`: `bare` is `async def` returning a dict, the reference "
             "of `ratio to bare`; `bare-sync` the same from a `def` route), all "
             "served by the same uvicorn command line on 127.0.0.1, side by side, loaded one "
             f"at a time. `max req/s`: closed loop, `wrk -t1 -c{a['connections']} "
             f"-d{a['duration']:g}s` after a {a['warmup']:g} s warm-up, {a['rounds']} rounds "
             "over all endpoints in turn. `half-max rate`: open loop at half of the best "
             f"maximum, this script's own client (one epoll loop; wrk2 is not in Debian) on "
             f"{a['rate_connections']} keep-alive connections, latency from each request's due "
             f"time (queueing included), after {a['warmup']:g} s of the same load not counted, "
             f"{a['rounds']} rounds; `errors`: non-200 answers and "
             "socket errors of all runs. The machine is shared with other jobs that come and "
             "go (`other CPU`: cores used by other processes during the run, not our servers "
             "or load generator; before each run the script waits up to "
             f"{a['quiet_wait']:g} s for it to fall under {a['quiet_below']:g}), and their "
             "load only ever lowers throughput and raises latency: so the table gives the "
             "best round (the most req/s, the lowest p99; p50 and rate of that same run), "
             "with the median of the rounds in brackets. `server CPU ms/req`: CPU time of the "
             "server's processes (all threads) per answered request in the maximum runs, the "
             "least of the rounds; `CPU ratio`: the bare endpoint's / this one's (the "
             "throughput ratio on a core of its own). Memory per worker after the runs: "
             "VmRSS / PSS (smaps_rollup). The 2 cores are shared by server and load "
             "generator: with 1 worker the server is pinned to CPU 0 and wrk / the client to "
             "CPU 1; with 2 workers nothing is pinned and the load generator competes with "
             "the workers.", "",
             f"Last run {results['when']}: `{results['command']}`", "",
             f"Machine: {results['machine']}. Versions: {results['versions']}.", ""]
    for name, reqs in results["requests"].items():
        lines.append(f"Artifact `{name}`: built with `{results['build'][name]}`; "
                     f"{reqs['products']:,} seed products and {reqs['carts']:,} carts of 1-5 "
                     f"products, drawn (seed {a['seed']}) from the {reqs['with_rules']:,} "
                     "products with a single-antecedent rule, weighted by their order count.")
    lines += ["", "Server commands (the port is free, chosen per run):", ""]
    for server in results["servers"].values():
        restarts = f", {server['restarts']} worker restarts" if server.get("restarts") else ""
        lines.append(f"    {server['command']}  # ready after {server['ready_s']:.0f} s"
                     + restarts)
    if results.get("probes"):
        lines += ["", "Every server runs with `--timeout-worker-healthcheck "
                  f"{results.get('healthcheck')}` (`recsys serve` sets 600 s): with uvicorn's "
                  "default (5 s) the supervisor pings each worker from a thread of "
                  "the worker and kills the worker when no answer comes in time, which "
                  "happens while a large index loads (long calls that hold the GIL). Watched "
                  "with the default:", ""]
        for p in results["probes"]:
            state = (f"ready after {p['ready_s']:.0f} s" if p["ready"]
                     else f"not ready after {p['seconds']:.0f} s")
            lines.append(f"- `{p['artifact']}`, {p['workers']} workers: {state}, "
                         f"{p['restarts']} worker restarts (`{p['command']}`)")
    if results["targets"] and results["targets"][0]["tops"]:
        wrk_cmd = results["targets"][0]["tops"][0]["command"]
        wrk_cmd = re.sub(r":\d+$", ":PORT", re.sub(r"-s \S+", "-s ENDPOINT.lua", wrk_cmd))
        fixed_cmd = next((t["fixed"][0]["command"] for t in results["targets"] if t["fixed"]),
                         "")
        lines += ["", "Load generator commands (ENDPOINT.lua cycles through the request "
                  "paths or bodies; SPEC.json holds the raw requests, the rate and the start "
                  "time):", "", f"    {wrk_cmd}", "    " + re.sub(r"  # .*", "", fixed_cmd)]
    lines += ["", *table(results), "",
              f"Targets (the issue): throughput at least {TARGET_RATIO}x the bare endpoint's; "
              f"p99 at half of the maximum at most {TARGET_P99_MS:g} ms; memory per worker "
              "recorded.", "", *verdicts(results), ""]
    if results["inproc"]:
        lines += ["The lookups alone (`recommend.bought_together` / `recommend.cart_addons` "
                  "called in a fresh process over the same request ids, thread CPU time per "
                  "call, after 50 warm-up calls; the server adds its CPU per request minus the "
                  "mean here):", "",
                  "| endpoint | artifact | calls | mean ms | p50 ms | p99 ms | max ms "
                  "| server CPU ms/req (1 worker) | index load s | RSS after load MiB "
                  "| GC-tracked objects | full GC ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, res in results["inproc"].items():
            for ep in ("bought-together", "add-ons"):
                r = res[ep]
                served = _targets(results, artifact=name, workers=1, endpoint=ep)
                cpu = f"{_cpu(served[0]):.2f}" if served else "-"
                lines.append(f"| {ep} | {name} | {r['calls']:,} | {r['mean_ms']:.2f} "
                             f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} "
                             f"| {cpu} | {res['load_s']:.0f} | {res['mem']['VmRSS']:,.0f} "
                             f"| {res.get('gc_objects', 0):,} "
                             f"| {_f(res.get('gc_full_ms', math.nan), ',.0f')} |")
        lines.append("")
    lines += ["The best half-max runs in detail: p90 / p99.9 / max ms, how late the client "
              "itself sent (p99 lag), the CPU it used, steal (cores the hypervisor took):", ""]
    for t in results["targets"]:
        f = _best_fixed(t)
        if f:
            lines.append(f"- {t['endpoint']}, {t['artifact']}, {t['workers']} worker(s): p90 "
                         f"{f['p90_ms']:.2f}, p99.9 {f['p999_ms']:.2f}, max {f['max_ms']:.1f}; "
                         f"client lag p99 {f['lag_p99_ms']:.2f} ms; {f['sent']:,} requests; "
                         f"server CPU {f.get('cpu_ms_per_request', math.nan):.2f} ms/request; "
                         "client CPU "
                         f"{f.get('client_cpu_ms_per_request', math.nan):.3f} ms/request; "
                         f"steal {f['steal_cores']:.2f}")
    lines += ["", "What the answers held (the first 50 requests of each list, before the runs):",
              ""]
    seen = set()
    for t in results["targets"]:
        key = (t["endpoint"], t["artifact"])
        if t["check"] and t["artifact"] != "-" and key not in seen:
            seen.add(key)
            lines.append(f"- {t['endpoint']}, {t['artifact']}: item sources "
                         f"{t['check']['sources']}, fallbacks {t['check']['fallbacks']}")
    lines += ["", "Memory per worker in detail, MiB (anon: the Python objects of the index, "
              "private to each worker; file: mapped files, shared between workers; peak: "
              "VmHWM, during loading):", ""]
    for key, server in results["servers"].items():
        parts = "; ".join(f"RSS {m['VmRSS']:,.0f} (anon {m.get('RssAnon', 0):,.0f}, file "
                          f"{m.get('RssFile', 0):,.0f}), PSS {m['Pss']:,.0f}, peak "
                          f"{m.get('VmHWM', 0):,.0f}" for m in server["mem"])
        label, workers = key.rsplit("/", 1)
        lines.append(f"- {label}, {workers} worker(s), ready after {server['ready_s']:.0f} s: "
                     f"{parts}")
    lines.append("")
    if results["profiles"]:
        lines += ["Where the time goes (py-spy, 1 worker, samples of the thread holding the "
                  f"GIL during a {a['duration']:g} s wrk run; by innermost recsys function, "
                  "else by the package of the leaf frame):", ""]
        for p in results["profiles"]:
            lines.append(f"- {p['endpoint']}, {p['artifact']}: "
                         + ", ".join(f"`{w}` {s:.0%}" for w, s in p["shares"]))
        lines.append("")
    return "\n".join(lines)


def write_section(section: str) -> None:
    """Replace our section of BENCHMARKS.md (re-read just now); other sections kept."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        end = len(text) if nxt < 0 else nxt + 1
    else:
        start = end = len(text)
    prefix = text[:start]
    if prefix and not prefix.endswith("\n\n"):
        prefix = prefix.rstrip("\n") + "\n\n"
    rest = text[end:]
    new = prefix + section.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    tmp = BENCHMARKS_MD.with_name(BENCHMARKS_MD.name + ".serving.tmp")
    tmp.write_text(new)
    os.replace(tmp, BENCHMARKS_MD)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_openloop"]:
        return openloop_main(argv[1], argv[2])
    if argv[:1] == ["_inproc"]:
        return inproc_main(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", default="orii,demo", help="comma list of orii, demo")
    parser.add_argument("--workers", default="1,2", help="comma list of worker counts")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir())
                                                 / "recsys_serving_bench"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the artifacts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of load before each measurement (not counted)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rate-connections", type=int, default=64,
                        help="connections of the open-loop client")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="open-loop client processes")
    parser.add_argument("--min-fixed-requests", type=int, default=2000,
                        help="a fixed-rate run lasts longer (up to 60 s) to send this many")
    parser.add_argument("--ids", type=int, default=2000, help="request ids and carts drawn")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES",
                        help="before each run, wait until other processes use fewer cores")
    parser.add_argument("--quiet-wait", type=float, default=60.0, metavar="S",
                        help="longest wait for a quiet machine before each run")
    parser.add_argument("--healthcheck", type=int, default=600, metavar="S",
                        help="uvicorn --timeout-worker-healthcheck for every server (its "
                             "default, 5 s, kills workers that load a large index)")
    parser.add_argument("--probe-s", type=float, default=0.0, metavar="S",
                        help="with several workers, first watch each artifact's server with "
                             "uvicorn's default health check this long (0 = skip)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin server and load generator to separate CPUs")
    parser.add_argument("--profile", action="store_true", help="py-spy the recsys endpoints")
    parser.add_argument("--no-inproc", dest="inproc", action="store_false",
                        help="skip timing the lookups in process")
    parser.add_argument("--report-only", metavar="RESULTS_JSON",
                        help="only render the report of an earlier run's results.json")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.artifacts = [a for a in args.artifacts.split(",") if a]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
    else:
        results = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": (".venv/bin/python benchmarks/serving_bench.py " + shlex.join(argv)).strip(),
            "args": {k: getattr(args, k) for k in ("connections", "duration", "warmup", "rounds",
                                                   "rate_connections", "seed", "quiet_wait",
                                                   "quiet_below")},
            "machine": _machine(), "versions": _versions(), "build": {}, "requests": {},
            "inproc": {}, "servers": {}, "targets": [], "profiles": [], "probes": [],
            "healthcheck": args.healthcheck}
        out = Path(args.workdir) / "results.json"

        def save() -> None:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1))

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
        run(args, results, save)
        log.info("raw results in %s", out)
    section = markdown(results)
    print(section)
    if not args.no_write:
        write_section(section)
        log.info("wrote the section to %s", BENCHMARKS_MD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
