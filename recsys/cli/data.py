"""Commands that turn sources into data and rules: generate-demo, ingest, run, mine-rules,
export-rules."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from recsys.cli.common import AddCommand, load_config_arg
from recsys.errors import ConfigError, RecsysError
from recsys.tomlfile import format_validation_error

__all__ = ["register"]


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


def cmd_run(args: argparse.Namespace) -> int:
    from recsys.pipeline import run_pipeline

    config = load_config_arg(args)
    if args.engine == "spark":
        from recsys.spark.pipeline import run_on_spark

        report, manifest = run_on_spark(config, show_progress=not args.quiet)
    else:
        report, manifest = run_pipeline(config, show_progress=not args.quiet)
    print(report.summary())
    print(f"published artifact version {manifest.version} in {config.artifacts.root}")
    return 0


def cmd_mine_rules(args: argparse.Namespace) -> int:
    from recsys.ingest import load_table
    from recsys.rules.job import run_rules_job
    from recsys.rules.settings import CLI_OVERRIDES, FULL_SET, RulesConfig

    config = load_config_arg(args)
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
    from recsys import layout

    written = (layout.RULES, layout.ITEMSETS, layout.CATEGORY_RULES, layout.BUNDLES,
               layout.SUBSTITUTES, layout.RULES_REPORT)
    print(f"written to {args.out}: {', '.join(f.name for f in written)}")
    return 0


def cmd_export_rules(args: argparse.Namespace) -> int:
    from recsys import layout
    from recsys.artifacts import ArtifactStore, load_parquet
    from recsys.rules.export import export_rules
    from recsys.rules.query import select_rules

    store = ArtifactStore(args.root or load_config_arg(args).artifacts.root)
    manifest = store.manifest(args.version)
    path = layout.RULES.at(store.path(manifest.version))
    if not path.exists():
        raise RecsysError(f"artifact version {manifest.version} has no {layout.RULES.path}; "
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


def register(add: AddCommand) -> None:
    """Declare this module's commands."""
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

    p = add("run", cmd_run, "the whole offline pipeline: ingest, every job, publish", config=True)
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local (this process) or spark (Apache Spark, [spark] in the config)")

    p = add("mine-rules", cmd_mine_rules,
            "mine association rules, bundles and substitutes from a data directory", config=True)
    p.add_argument("--data", required=True, metavar="DATA_DIR", help="output of recsys ingest")
    p.add_argument("--out", required=True, metavar="DIR")
    from recsys.rules.settings import CLI_OVERRIDES, RulesConfig

    for name in CLI_OVERRIDES:  # type and help from the [rules] field itself
        field = RulesConfig.model_fields[name]
        kind = int if field.annotation is int else float  # every override is a plain number
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, help=field.description)
    p.add_argument("--all-rules", action="store_true",
                   help="no pruning, floors or per-antecedent cap")

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
