"""The live path: accepted events per second per worker, and a session-aware also-viewed
request beside the plain one, one uvicorn worker with Redis, in the same run.

One server (``python -m uvicorn --factory recsys.app:app_from_env``, 1 worker, pinned to
CPU 0; Redis at ``--redis``, keys under a fresh prefix) over the demo shop's artifact
(generated and built here when missing: ``--orders`` x ``--catalog`` products, 8,000 x 300 by
default). Endpoints:
  plain     ``GET /v1/items/{id}/also-viewed?k=10`` over ``--products`` products;
  session   the same with ``session_id=`` of sessions holding 5 views each (posted first);
            products and views drawn uniformly from those with an also-viewed row, or with
            ``--by-views`` as often as the training sessions viewed them (popular products
            most, as shoppers view them: V-SKNN then reads their many sessions);
  events    ``POST /v1/events`` view events of those sessions (Redis + the SQL store,
            PostgreSQL by default: ``--database``).
The load is ``serving_bench.py``'s open-loop client (pinned to CPU 1): first far above what
the server can take (``--overload`` req/s: what it completes per second is its maximum),
then at half of each endpoint's own maximum, where the latency percentiles are read after a
warm-up at that rate (``--warmup`` seconds, answered and not counted: a phase starts from an
idle server, whose first milliseconds on a virtual machine can be tens of times slower than
the rest, ``machine.wake_up_ms``, recorded with the results; ``--warmup 0`` counts them);
``--rounds`` repeats plain and session (each round: both maxima back to back, as the
machine's speed drifts, then both halves; the median of the rounds' ratios is reported too,
with a 95% bootstrap interval over the rounds). ``--restarts`` shares the rounds out over that
many server starts, so the median rests on more than one start (the same code measured 0.67
in both rounds of one start and 0.72-0.73 in another's: BENCHMARKS.md).
Each phase counts the server's Redis timeouts (lists served without the session for 2 s),
the worker's CPU per answered request at its maximum, and the cores the rest of the machine
used and the hypervisor took (steal) meanwhile. ``--session-knn-k`` and
``--session-knn-sample`` set V-SKNN's neighbours and sample (default: the served ones), in
process and on the server.
Before the server starts, the same lists in process (``recommend.also_viewed`` on the
loaded index, no HTTP, no Redis): the median per call of 5 passes over the products, plain
and with each session's 5 products. The machine is shared with other jobs: short runs,
figures as measured, with the load average.

Run: PYTHONPATH=. python benchmarks/live_bench.py [--duration 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from serving_bench import (  # noqa: E402
    HOST,
    Endpoint,
    Server,
    cpu_ticks,
    other_load,
    run_openloop,
)

from benchmarks import machine  # noqa: E402
from recsys.config import ServingSettings, load_config  # noqa: E402
from recsys.demo import DemoSpec, generate_demo  # noqa: E402
from recsys.pipeline import run_pipeline  # noqa: E402
from recsys.serving import recommend  # noqa: E402
from recsys.serving.finish import Decisions, Options  # noqa: E402
from recsys.serving.index import ServingIndex, load_index  # noqa: E402
from recsys.serving.session import NO_SESSION, session_of_recent  # noqa: E402


def demo_artifact(work: Path, orders: int = 8000, products: int = 300) -> Path:
    """The demo shop's artifact store under ``work`` (built once)."""
    root = work / "artifacts"
    if (root / "CURRENT").exists():
        return root
    generate_demo(work / "shop", DemoSpec(orders=orders, products=products, seed=3),
                  progress=False)
    config = work / "recsys.toml"
    config.write_text("\n".join([
        f'data_dir = "{work / "data"}"', "[ingest]",
        *(f'{t} = "{work / "shop" / f"{t}.csv"}"' for t in ("orders", "events", "catalog")),
        "[demo]", "generate_if_missing = false", "[artifacts]", f'root = "{root}"']) + "\n")
    run_pipeline(load_config(config), show_progress=False)
    return root


def post(port: int, body: dict[str, Any]) -> None:
    request = urllib.request.Request(f"http://{HOST}:{port}/v1/events",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


def in_process(index: ServingIndex, products: list[str], recent: list[list[str]],
               s: ServingSettings) -> dict[str, float]:
    """Median ms per ``recommend.also_viewed`` call over 5 passes: plain, with the session
    (``s``'s session settings)."""
    options = replace(Options(k=10), min_score_share=s.placements.also_viewed.min_score_share,
                      max_p_value=s.placements.also_viewed.max_p_value,
                      fill=s.placements.also_viewed.fill)
    sessions = [session_of_recent(list(reversed(views)), [p], weight=s.session_weight,
                                  decay=s.session_decay, length=s.session_length,
                                  knn_weight=s.session_knn_weight, knn_k=s.session_knn_k,
                                  knn_sample=s.session_knn_sample)
                for p, views in zip(products, recent, strict=True)]
    passes: dict[str, list[float]] = {"plain": [], "session": []}
    for _ in range(6):  # the first pass warms up; plain and session in turn (speed drifts)
        for name, with_session in (("plain", False), ("session", True)):
            started = time.perf_counter()
            for p, session in zip(products, sessions, strict=True):
                recommend.also_viewed(index, p, options, Decisions(),
                                      session if with_session else NO_SESSION)
            passes[name].append((time.perf_counter() - started) * 1e3 / len(products))
    out = {f"{name}_ms": round(statistics.median(times[1:]), 4)
           for name, times in passes.items()}
    out["session_vs_plain"] = round(out["plain_ms"] / out["session_ms"], 3)
    return out


def median_interval(values: list[float], draws: int = 2000,
                    seed: int = 11) -> tuple[float, float]:
    """The 95% bootstrap interval of the median of ``values`` (drawn with replacement)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def serve_rounds(args: argparse.Namespace, root: Path, knn: dict[str, int],
                 results: dict[str, Any], numbers: list[int], products: list[str],
                 sessions: list[str], views: list[list[str]], known: list[str],
                 rng: random.Random, *, events: bool) -> None:
    """One server start (a fresh Redis prefix, the sessions' views posted): the rounds
    ``numbers``, then the events phases when ``events``."""
    prefix = f"bench-{uuid.uuid4().hex}:"
    env = {"RECSYS_SERVING_ARTIFACTS": str(root), "RECSYS_SERVING_RELOAD_INTERVAL_S": "0",
           "RECSYS_SERVING_DATABASE_URL": args.database,
           "RECSYS_SERVING_REDIS_URL": args.redis, "RECSYS_SERVING_REDIS_PREFIX": prefix,
           "RECSYS_SERVING_STOREFRONT": "false",
           "RECSYS_SERVING_EVENTS_PER_MINUTE": "0",  # the load is one client: no rate limit
           **{f"RECSYS_SERVING_{name.upper()}": str(value) for name, value in knn.items()}}
    server = Server("recsys", ["--factory", "recsys.app:app_from_env"], 1, "0", env,
                    args.workdir / "server.log", None)
    server.start("/readyz", 180)
    results.setdefault("servers", []).append({"prefix": prefix, "rounds": numbers})
    results["command"] = " ".join(server.command)
    try:
        for session, posted in zip(sessions, views, strict=True):
            for pid in posted:
                post(server.port, {"event_type": "view", "product_id": pid,
                                   "session_id": session})
        lists = [
            Endpoint("plain", "GET", [f"/v1/items/{p}/also-viewed?k=10" for p in products]),
            Endpoint("session", "GET", [f"/v1/items/{p}/also-viewed?k=10&session_id={s}"
                                        for p, s in zip(products, sessions, strict=True)])]
        log_path = args.workdir / "server.log"
        degraded = 0
        worker = server.worker_pids()[0]
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")

        def phase(name: str, endpoint: Endpoint, rate: float | None) -> None:
            """One phase: at ``rate`` req/s (None: the overload, the endpoint's maximum)."""
            nonlocal degraded
            ticks = cpu_ticks(worker)
            with other_load([server]) as load:
                found = run_openloop(server.port, endpoint,
                                     args.overload if rate is None else rate,
                                     args.duration, 32, 1, "1", args.workdir,
                                     0.0 if rate is None else args.warmup)
            out = results.setdefault(name, {})
            at = "max" if rate is None else "half"
            if rate is None:
                # the worker's CPU per answered request at its maximum (its idle start included)
                out.update(max_rps=round(found["achieved_rps"], 1), max_errors=found["errors"],
                           worker_cpu_us_per_request=round(
                               (cpu_ticks(worker) - ticks) * tick_us / max(1, found["ok"]), 1))
            else:
                out.update(half_rate=round(found["rate"], 1), half_errors=found["errors"],
                           **{f"half_{k}": round(found[k], 2)
                              for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "lag_p99_ms")})
            # cores the rest of the machine used and the hypervisor took meanwhile
            out.update({f"{at}_{k}": round(load[k], 3) for k in ("other_cores", "steal_cores")},
                       load_average=os.getloadavg()[0])
            # a Redis call over 50 ms (a loaded machine) serves lists without the session for
            # 2 s: the session figures of a phase with such an episode are not the session's
            seen = log_path.read_text(errors="replace").count("redis unavailable")
            out["redis_degraded_episodes"] = out.get("redis_degraded_episodes", 0) + (
                seen - degraded)
            degraded = seen

        # each round: both maxima back to back (the machine's speed drifts), then both halves
        for r in numbers:
            named = [(f"{e.name}_{r}" if args.rounds > 1 else e.name, e) for e in lists]
            for name, endpoint in named:
                phase(name, endpoint, None)
            for name, endpoint in named:
                phase(name, endpoint, results[name]["max_rps"] / 2)
                print(name, results[name], flush=True)
        if events:
            events_endpoint = Endpoint("events", "POST", ["/v1/events"], [json.dumps(
                {"event_type": "view", "product_id": rng.choice(known),
                 "session_id": rng.choice(sessions)}).encode() for _ in range(500)])
            phase("events", events_endpoint, None)
            phase("events", events_endpoint, results["events"]["max_rps"] / 2)
            print("events", results["events"], flush=True)
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        help="default: recsys_live_bench[_ORDERS] in the temp folder")
    parser.add_argument("--orders", type=int, default=8000, help="the demo shop's orders")
    parser.add_argument("--catalog", type=int, default=300, help="the demo shop's products")
    parser.add_argument("--by-views", action="store_true",
                        help="draw the products and the sessions' views in proportion to "
                             "their training views (popular products most), not uniformly")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="the events store (SQLite refuses concurrent writers under load)")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--overload", type=float, default=4000.0)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--restarts", type=int, default=1,
                        help="server starts the rounds are shared out over (the rounds' "
                             "median then spans several starts)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each half-rate phase's counted requests")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--session-knn-k", type=int, help="V-SKNN's neighbours (default: served)")
    parser.add_argument("--session-knn-sample", type=int,
                        help="V-SKNN's sessions read per product (default: served)")
    args = parser.parse_args()
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more seconds, got {args.warmup:g}")
    if not 1 <= args.restarts <= args.rounds:
        parser.error(f"--restarts must be 1 to --rounds ({args.rounds}), got {args.restarts}")
    knn = {name: value for name, value in (("session_knn_k", args.session_knn_k),
                                           ("session_knn_sample", args.session_knn_sample))
           if value is not None}
    settings = ServingSettings(**knn)
    args.workdir = args.workdir or Path(tempfile.gettempdir()) / (
        "recsys_live_bench" + ("" if (args.orders, args.catalog) == (8000, 300) else
                               f"_{args.orders}x{args.catalog}"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = demo_artifact(args.workdir, args.orders, args.catalog)
    index = load_index(root)
    rng = random.Random(7)
    table = index.also_viewed
    assert table is not None
    known = [index.ids[c] for c in range(len(index.ids)) if table.ids[c][0] >= 0]
    sessions = [f"s-{i}" for i in range(args.products)]
    if args.by_views:  # a product as often as the training sessions viewed it
        assert index.sessions is not None
        viewed = [index.ids[c] for c in index.sessions.arrays[3].tolist()]
        has_row = set(known)
        viewed = [p for p in viewed if p in has_row]
        products = [rng.choice(viewed) for _ in range(args.products)]
        views = [[rng.choice(viewed) for _ in range(5)] for _ in sessions]
    else:
        products = [rng.choice(known) for _ in range(args.products)]
        views = [rng.sample(known, 5) for _ in sessions]  # posted oldest first
    print(f"# {machine.describe()}", flush=True)
    results: dict[str, Any] = {"machine": machine.describe(),
                               "machine_wake_up": machine.wake_up_ms(),
                               "warmup_s": args.warmup,
                               "shop": {"orders": args.orders, "products": args.catalog,
                                        "by_views": args.by_views,
                                        "session_knn_k": settings.session_knn_k,
                                        "session_knn_sample": settings.session_knn_sample},
                               "load_average_before": os.getloadavg(),
                               "in_process": in_process(index, products, views, settings)}
    print("in process", results["in_process"], flush=True)
    rounds = iter(range(1, args.rounds + 1))
    for start in range(args.restarts):  # the rounds shared out over the server starts
        share = args.rounds // args.restarts + (start < args.rounds % args.restarts)
        serve_rounds(args, root, knn, results, [next(rounds) for _ in range(share)],
                     products, sessions, views, known, rng,
                     events=start == args.restarts - 1)
    for r in range(1, args.rounds + 1):
        suffix = f"_{r}" if args.rounds > 1 else ""
        results[f"session_vs_plain{suffix}"] = round(
            results[f"session{suffix}"]["max_rps"] / results[f"plain{suffix}"]["max_rps"], 3)
    ratios = [v for k, v in results.items() if k.startswith("session_vs_plain")]
    results["session_vs_plain_median"] = statistics.median(ratios)
    if len(ratios) > 1:
        results["session_vs_plain_median_ci95"] = median_interval(ratios)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
