"""The `recsys` command line. Exit codes: 0 ok, 1 bad input or config, 2 internal error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from recsys.config import format_validation_error
from recsys.errors import ConfigError, InputError, RecsysError

if TYPE_CHECKING:
    from recsys.config import Config, ServingSettings

__all__ = ["main", "job_main"]

log = logging.getLogger("recsys")

DEFAULT_CONFIG = "configs/recsys.toml"


def _config(args: argparse.Namespace) -> Config:
    from recsys.config import load_config

    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load_config(path)


# -- commands ----------------------------------------------------------------------------------


def cmd_generate_demo(args: argparse.Namespace) -> int:
    from recsys.demo import DemoSpec, generate_demo

    spec = DemoSpec(orders=args.orders, products=args.products, seed=args.seed,
                    customers=args.customers)
    summary = generate_demo(Path(args.out), spec, progress=not args.quiet)
    print(f"demo shop written to {args.out}: " + ", ".join(
        f"{name} {count:,} rows" for name, count in summary.rows.items()))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from recsys.ingest import ingest
    from recsys.mapping import load_mapping

    mapping = load_mapping(args.mapping)
    sources = {t: getattr(args, t) for t in ("orders", "events", "catalog") if getattr(args, t)}
    report = ingest(sources, mapping, Path(args.out), show_progress=not args.quiet)
    print(report.summary())
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


def cmd_mine_rules(args: argparse.Namespace) -> int:
    from recsys.ingest import load_table
    from recsys.rules.job import run_rules_job
    from recsys.rules.settings import CLI_OVERRIDES, FULL_SET, RulesConfig

    config = _config(args)
    overrides = {**(FULL_SET if args.all_rules else {}), **{
        key: getattr(args, key) for key in CLI_OVERRIDES if getattr(args, key) is not None}}
    try:
        rules_config = RulesConfig.model_validate({**config.rules.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(f"mine-rules: {format_validation_error(exc)}") from None
    data = Path(args.data)
    orders = load_table(data, "orders")
    assert orders is not None
    metrics = run_rules_job(orders, load_table(data, "events", required=False),
                            load_table(data, "catalog", required=False), rules_config,
                            Path(args.out), weights=config.interactions)
    print(f"{metrics['rules']:,} rules from {metrics['n_orders']:,} orders "
          f"(itemsets counted in >= {metrics['min_count']:,} orders), "
          f"{metrics['category_rules']:,} category rules, {metrics['bundles']:,} bundles, "
          f"{metrics['substitute_pairs']:,} substitute pairs")
    for warning in metrics["warnings"]:
        print(f"warning: {warning}")
    if metrics["baskets_excluded"]:
        print(f"left out {metrics['baskets_excluded']:,} orders with more than "
              f"{metrics['max_basket_items']:,} products ({metrics['lines_excluded']:,} lines)")
    print(f"written to {args.out}: rules.parquet, itemsets.parquet, category_rules.parquet, "
          "bundles.parquet, substitutes.parquet, rules_report.json")
    return 0


def cmd_export_rules(args: argparse.Namespace) -> int:
    from recsys.artifacts import ArtifactStore, load_parquet
    from recsys.rules.export import export_rules, select_rules

    store = ArtifactStore(args.root or _config(args).artifacts.root)
    manifest = store.manifest(args.version)
    path = store.path(manifest.version) / "rules.parquet"
    if not path.exists():
        raise RecsysError(f"artifact version {manifest.version} has no rules.parquet; "
                          "run `recsys run` with the rules job")
    rules = select_rules(load_parquet(path), min_lift=args.min_lift, product=args.product,
                         category=args.category, top=args.top)
    options: dict[str, object] = {}
    if args.format == "html":
        report = manifest.metrics.get("rules", {})
        options["summary"] = {"artifact version": manifest.version, **{
            k: report[k] for k in ("n_orders", "min_count", "min_confidence", "max_len", "rules",
                                   "baskets_excluded") if k in report}}
        if args.top:
            options["top"] = args.top
    out = export_rules(rules, args.format, Path(args.out), **options)
    print(f"{len(rules):,} rules written to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys.evaluation import run_evaluation

    result = run_evaluation(args.data, args.out, config=_config(args),
                            tasks=args.tasks.split(",") if args.tasks else None,
                            seed=args.seed, engine=not args.no_engine,
                            show_progress=not args.quiet)
    print(result.table())
    print(f"written to {args.out}: metrics.json, evaluation.json, report.html")
    return 0


def cmd_clv(args: argparse.Namespace) -> int:
    from recsys.analytics.job import run_clv_job
    from recsys.ingest import load_table

    config = _config(args)
    orders = load_table(args.data, "orders")
    assert orders is not None
    figures = run_clv_job(orders, load_table(args.data, "catalog", required=False), args.out,
                          config=config.analytics)
    shown = {k: v for k, v in figures.items() if not isinstance(v, dict | list)}
    for key, value in shown.items():
        print(f"{key}: {value}")
    print(f"written to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from recsys.analytics.report import build_report

    config = _config(args)
    events = args.events or config.serving_settings().database_url
    out = build_report(args.data or config.data_dir, Path(args.out), events=events,
                       config=config.analytics)
    print(f"report written to {out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from recsys.pipeline import run_pipeline

    config = _config(args)
    report, manifest = run_pipeline(config, show_progress=not args.quiet)
    print(report.summary())
    print(f"published artifact version {manifest.version} in {config.artifacts.root}")
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    from recsys.artifacts import ArtifactStore

    root = args.root or _config(args).artifacts.root
    store = ArtifactStore(root)
    if args.action == "list":
        current = store.current_version()
        versions = store.versions()
        if not versions:
            print(f"no versions in {root}")
        for v in versions:
            m = store.manifest(v)
            mark = "*" if v == current else " "
            print(f"{mark} {v}  created {m.created_at}  files {len(m.files)}  "
                  f"config {m.config_hash[:12]}")
    elif args.action == "show":
        print(json.dumps(store.manifest(args.version).to_dict(), indent=2, sort_keys=True))
    elif args.action == "verify":
        m = store.verify(args.version)
        print(f"version {m.version}: all {len(m.files)} files match their checksums")
    elif args.action == "rollback":
        version = store.rollback(args.version)
        print(f"CURRENT now points at {version}")
    return 0


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RecsysError(f"cannot serve on {host}:{port}: {exc.strerror}; is another "
                              "server running? stop it or pass --port") from None


def _serve(settings: ServingSettings, quiet: bool) -> int:
    import uvicorn

    _check_port_free(settings.host, settings.port)
    for key, value in settings.model_dump(mode="json").items():  # workers read the environment
        os.environ[f"RECSYS_SERVING_{key.upper()}"] = (
            json.dumps(value) if isinstance(value, list | dict) else str(value))
    from recsys.serving.logs import uvicorn_log_config

    metrics_dir = None
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # the values of an earlier run must go
        for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
            stale.unlink()
    elif settings.workers > 1:
        # each worker keeps its Prometheus values in files here; /metrics adds them up
        metrics_dir = tempfile.mkdtemp(prefix="recsys-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        # Loading a large index holds the GIL for seconds at a time: with uvicorn's default
        # worker health check (5 s) the supervisor would kill workers while they load.
        uvicorn.run("recsys.serving.app:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers,
                    timeout_worker_healthcheck=600,
                    log_config=uvicorn_log_config("WARNING" if quiet else "INFO"))
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _config(args).serving_settings(
        artifacts=args.artifacts, host=args.host, port=args.port, workers=args.workers)
    return _serve(settings, args.quiet)


def _new_password(from_stdin: bool) -> str:
    """The first line of stdin, or typed twice at a terminal (never a command-line argument)."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password on; pipe it in with "
                         "--password-stdin")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise InputError("the two passwords differ; nothing was changed")
    return password


def cmd_users(args: argparse.Namespace) -> int:
    """Console users, in the server's database (database_url of the config)."""
    from recsys.console.passwords import hash_password
    from recsys.serving.store import ServingStore

    store = ServingStore(_config(args).serving_settings().database_url)
    try:
        if args.action == "list":
            users = store.list_users()
            if not users:
                print("no console users yet; add one with: recsys users add NAME --role editor")
            for user in users:
                print(f"{user['username']}  {user['role']}  created "
                      f"{user['created_at']:%Y-%m-%d %H:%M}")
            return 0
        password_hash = hash_password(_new_password(args.password_stdin))
        try:
            store.add_user(args.name, password_hash, args.role)
        except ValueError as exc:
            raise InputError(f"users add: {exc}") from None
        print(f"user {args.name} ({args.role}) created; they sign in at /console/login")
        return 0
    finally:
        store.dispose()


def _example_product(artifacts_root: str) -> str:
    """The antecedent of the strongest rule of the current version, for the example request."""
    from recsys.artifacts import ArtifactStore, load_parquet

    rules_path = ArtifactStore(artifacts_root).path() / "rules.parquet"
    if rules_path.exists():
        rules = load_parquet(rules_path)
        pairs = rules[rules["antecedents"].list.len() == 1]
        if len(pairs):
            return str(pairs.sort_values("count", ascending=False)["antecedents"].iloc[0][0])
    return "P00001"


def _demo_user(database_url: str) -> str:
    """The demo console editor ``demo`` with a fresh random password (printed by the demo)."""
    import secrets

    from recsys.console.passwords import hash_password
    from recsys.serving.store import ServingStore

    password = secrets.token_urlsafe(12)
    store = ServingStore(database_url)
    try:
        if not store.set_password("demo", hash_password(password)):
            store.add_user("demo", hash_password(password), "editor")
    finally:
        store.dispose()
    return password


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the demo shop, run the whole pipeline, publish and serve it."""
    from recsys.demo import DemoSpec, generate_demo
    from recsys.pipeline import run_pipeline

    config = _config(args)
    generate_demo(Path(config.demo.out), DemoSpec(orders=config.demo.orders,
                                                  products=config.demo.products,
                                                  seed=config.demo.seed),
                  progress=not args.quiet)
    report, manifest = run_pipeline(config, show_progress=not args.quiet)
    print(report.summary())
    print(f"published artifact version {manifest.version}")
    if args.no_serve:
        print("serve it with: recsys serve --config configs/recsys.toml")
        return 0
    settings = config.serving_settings(port=args.port)
    _check_port_free(settings.host, settings.port)
    base = f"http://{settings.host}:{settings.port}"
    product = _example_product(config.artifacts.root)
    shop = f"  storefront: {base}/storefront/\n" if settings.storefront else ""
    password = _demo_user(settings.database_url)
    print(f"\nServing on {base}\n{shop}  console:    {base}/console/ (user demo, password "
          f"{password})\n  API docs:   {base}/docs\n  health:     {base}/healthz\n"
          f"  readiness:  {base}/readyz\n  version:    {base}/v1/version\n"
          f"Example requests:\n"
          f"  curl '{base}/v1/items/{product}/bought-together?k=5'\n"
          f"  curl -X POST '{base}/v1/cart/add-ons?k=5' -H 'Content-Type: application/json' "
          f"-d '{{\"items\": [{{\"product_id\": \"{product}\", \"quantity\": 1}}]}}'\n"
          f"  curl '{base}/v1/popular?k=5'\n(Ctrl-C stops the server)\n", flush=True)
    return _serve(settings, args.quiet)


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description="Recommendation and cross-sell engine for online shops.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            config: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        if config:
            p.add_argument("--config", metavar="FILE",
                           help=f"config file (default: {DEFAULT_CONFIG} if present, else built-in)")
        return p

    p = add("generate-demo", cmd_generate_demo, "write a generated demo shop (orders, events, catalog)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--products", type=int, default=300)
    p.add_argument("--customers", type=int, default=None)

    p = add("ingest", cmd_ingest, "read, map and validate sources into a data directory")
    p.add_argument("--orders", required=True, metavar="PATH_OR_URL",
                   help="CSV/Parquet file, or SQLAlchemy URL with #table")
    p.add_argument("--events", metavar="PATH_OR_URL")
    p.add_argument("--catalog", metavar="PATH_OR_URL")
    p.add_argument("--mapping", metavar="FILE", help="column-mapping file (TOML)")
    p.add_argument("--out", required=True, metavar="DATA_DIR")

    p = add("mine-rules", cmd_mine_rules,
            "mine association rules, bundles and substitutes from a data directory", config=True)
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="output of recsys ingest")
    p.add_argument("--out", required=True, metavar="DIR")
    from recsys.rules.settings import CLI_OVERRIDES, RulesConfig
    for name in CLI_OVERRIDES:  # type and help from the [rules] field itself
        field = RulesConfig.model_fields[name]
        p.add_argument(f"--{name.replace('_', '-')}", type=field.annotation or str,
                       help=field.description)
    p.add_argument("--all-rules", action="store_true", help="no pruning, floors or per-antecedent cap")

    p = add("export-rules", cmd_export_rules,
            "export an artifact's rules for merchandisers (CSV, XLSX or HTML report)", config=True)
    p.add_argument("--root", metavar="DIR", help="artifact store (default: from the config)")
    p.add_argument("--version", help="artifact version (default: current)")
    p.add_argument("--format", required=True, choices=["csv", "xlsx", "html"])
    p.add_argument("--out", required=True, metavar="PATH")
    p.add_argument("--min-lift", type=float)
    p.add_argument("--product", metavar="ID", help="rules with this product on either side")
    p.add_argument("--category", help="rules with a product in this category (path prefix)")
    p.add_argument("--top", type=int, metavar="N", help="the N rules with the highest lift")

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
            "measured outcomes of recommendations per arm", config=True)
    p.add_argument("--data", metavar="DATA_DIR", help="default: data_dir from the config")
    p.add_argument("--events", metavar="URL_OR_FILE",
                   help="events: SQLAlchemy URL or Parquet (default: the server's database)")
    p.add_argument("--out", required=True, metavar="PATH")

    add("run", cmd_run, "the whole offline pipeline: ingest, every job, publish", config=True)

    p = add("artifacts", cmd_artifacts, "list, show, verify or roll back artifact versions",
            config=True)
    p.add_argument("--root", metavar="DIR", help="artifact store (default: from the config)")
    p.add_argument("action", choices=["list", "show", "verify", "rollback"])
    p.add_argument("version", nargs="?", help="a version (default: current; rollback: previous)")

    p = add("serve", cmd_serve, "serve the current artifact over HTTP", config=True)
    p.add_argument("--artifacts", metavar="DIR")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)

    p = add("users", cmd_users, "console users: add one (viewer or editor), or list them")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    users_add = actions.add_parser("add", help="create a user (the password is asked for)")
    users_add.add_argument("name", metavar="NAME")
    users_add.add_argument("--role", default="viewer", metavar="{viewer,editor}",
                           help="viewers browse and export; editors also decide "
                                "(default: viewer)")
    users_add.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin (scripts)")
    users_list = actions.add_parser("list", help="list the users and their roles")
    for leaf in (users_add, users_list):
        leaf.add_argument("--config", metavar="FILE", help=f"config file (default: "
                          f"{DEFAULT_CONFIG} if present, else built-in)")

    p = add("demo", cmd_demo, "generate the demo shop, run the pipeline and serve it", config=True)
    p.add_argument("--port", type=int)
    p.add_argument("--no-serve", action="store_true", help="stop after publishing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recsys.progress import set_quiet

    set_quiet(args.quiet)
    try:
        return int(args.func(args))
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`)
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 2, no traceback
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 2


def job_main(command: str, argv: Sequence[str]) -> int:
    """Run one command with the global flags (-q, --debug) accepted anywhere (jobs/ scripts)."""
    flags = [a for a in argv if a in ("-q", "--quiet", "--debug")]
    rest = [a for a in argv if a not in flags]
    return main([*flags, command, *rest])


if __name__ == "__main__":
    sys.exit(main())
