"""Commands that measure: evaluate (offline evaluation), clv (customer value), report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys.cli.common import AddCommand, load_config_arg
from recsys.filemodes import private_dir

__all__ = ["register"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys.evaluation import run_evaluation

    result = run_evaluation(args.data, args.out, config=load_config_arg(args),
                            tasks=args.tasks.split(",") if args.tasks else None,
                            seed=args.seed, engine=not args.no_engine,
                            show_progress=not args.quiet)
    print(result.table())
    print(f"written to {args.out}: metrics.json, evaluation.json, report.html")
    return 0


def cmd_clv(args: argparse.Namespace) -> int:
    from recsys.analytics.clv import summary_lines
    from recsys.analytics.job import run_clv_job
    from recsys.ingest import load_table

    config = load_config_arg(args)
    orders = load_table(args.data, "orders")
    assert orders is not None
    private_dir(Path(args.out))  # per-customer tables: owner-only
    figures = run_clv_job(orders, load_table(args.data, "catalog", required=False), args.out,
                          config=config.analytics)
    print("\n".join(summary_lines(figures)))
    print(f"written to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from recsys.analytics.report import build_report

    config = load_config_arg(args)
    serving = config.serving_settings()  # ab_test: arms only when the experiment ran
    events = args.events or serving.database_url
    if args.events is None and _missing_sqlite(serving.database_url):
        events = None  # no server has stored events there yet: the report without them
        print("note: the server's database holds no events yet; the outcomes of "
              "recommendations come from DATA_DIR/events.parquet if it has impressions or "
              "clicks, else are left out", file=sys.stderr)
    out = build_report(args.data or config.data_dir, Path(args.out), config=config.analytics,
                       events=events, ab_test=serving.ab_test)
    print(f"report written to {out}")
    return 0


def _missing_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite file that does not exist (yet): any other database the
    report reads, so that one that is down or misconfigured fails loudly."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    return bool(file) and file != ":memory:" and not Path(str(file)).exists()


def register(add: AddCommand) -> None:
    """Declare this module's commands."""
    p = add("evaluate", cmd_evaluate, "offline evaluation: basket completion, also viewed and "
            "next basket, baselines against the engine on one global time split", config=True)
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="output of recsys ingest")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tasks", help="comma-separated: basket_completion,also_viewed,next_basket")
    p.add_argument("--seed", type=int, default=0, help="which item each test basket holds out")
    p.add_argument("--no-engine", action="store_true", help="baselines only")

    p = add("clv", cmd_clv, "customer value: CLV, BG/NBD and Gamma-Gamma, RFM, retention",
            config=True)
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="output of recsys ingest")
    p.add_argument("--out", required=True, metavar="DIR")

    p = add("report", cmd_report, "a self-contained HTML report: retention, CLV, RFM, and "
            "outcomes of recommendations (per arm with ab_test, else observational)", config=True)
    p.add_argument("--data", metavar="DATA_DIR", help="default: data_dir from the config")
    p.add_argument("--events", metavar="URL_OR_FILE",
                   help="events: SQLAlchemy URL or Parquet (default: the server's database)")
    p.add_argument("--out", required=True, metavar="PATH")
