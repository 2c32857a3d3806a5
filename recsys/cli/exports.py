"""The export-customers command: campaign exports of the customer table or an action list
(the writers are in recsys.analytics.export and export_lists)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys import layout
from recsys.analytics.export import (
    ACTION_LISTS,
    COLUMNS,
    DEFAULT_COLUMNS,
    RECOMMENDATIONS,
    ExportRequest,
    export_customers,
)
from recsys.cli.common import AddCommand, load_config_arg
from recsys.errors import InputError

__all__ = ["register"]


def _list(value: str | None) -> tuple[str, ...]:
    """A comma-separated option as a tuple (blank entries dropped)."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `recsys export-customers`."""
    parser.add_argument("--format", required=True, choices=["csv", "parquet", "sql"])
    parser.add_argument("--out", required=True, metavar="PATH_OR_URL",
                        help="a file, or for sql a SQLAlchemy URL with #table")
    parser.add_argument("--segment", metavar="NAMES",
                        help="comma-separated RFM segments, e.g. at_risk,hibernating "
                             "(default: all)")
    parser.add_argument("--stage", metavar="NAMES",
                        help="comma-separated lifecycle stages, e.g. declining,at_risk "
                             "(default: all)")
    parser.add_argument("--columns", metavar="NAMES",
                        help=f"comma-separated, in this order (default: "
                             f"{','.join(DEFAULT_COLUMNS)}); '{RECOMMENDATIONS}' gives "
                             f"rec_1_id, rec_1_name, ... rec_k_name; all: "
                             f"{','.join(COLUMNS)}")
    parser.add_argument("--list", default="customers", choices=["customers", *ACTION_LISTS],
                        help="what to export: the customer table (default), or one of the "
                             "job's action lists (its columns; --segment / --stage filter "
                             "the lists that have them)")
    parser.add_argument("--top-k", type=int, metavar="N",
                        help="recommendations per customer (default: 5; customers only)")
    parser.add_argument("--if-exists", choices=["fail", "replace", "append"], default="fail",
                        help="sql: when the table exists (default: fail)")
    parser.add_argument("--root", metavar="DIR", help="artifact store (default: from the config)")
    parser.add_argument("--version", help="artifact version (default: current)")
    parser.add_argument("--analytics", metavar="DIR",
                        help="read the output of `recsys clv --out DIR` instead of an artifact "
                             "(recommendation names are then empty)")


def cmd_export_customers(args: argparse.Namespace) -> int:
    """`recsys export-customers`: export and say how many customers went where."""
    from recsys.analytics.export_lists import export_list
    from recsys.artifacts import ArtifactStore

    artifacts_root = load_config_arg(args).artifacts.root
    catalog: Path | None = None
    if args.analytics:
        folder = Path(args.analytics)
    else:
        version = ArtifactStore(args.root or artifacts_root).path(args.version)
        folder, catalog = layout.CLV_REPORT.at(version).parent, layout.CATALOG.at(version)
    if args.list != "customers":
        if args.top_k is not None:
            raise InputError("export-customers: --top-k is for --list customers only")
        blocked = _excluded(args) if args.list in ("replenishment", "winback") else frozenset()
        rows = export_list(folder, args.list, args.out, args.format,
                           columns=_list(args.columns) or None, segments=_list(args.segment),
                           stages=_list(args.stage), if_exists=args.if_exists, catalog=catalog,
                           blocked=blocked)
        print(f"exported {rows:,} rows of the {args.list} list to "
              f"{_where(args.out, args.format)}")
        return 0
    request = ExportRequest(out=args.out, format=args.format, segments=_list(args.segment),
                            stages=_list(args.stage),
                            columns=_list(args.columns) or DEFAULT_COLUMNS,
                            top_k=5 if args.top_k is None else args.top_k,
                            if_exists=args.if_exists, exclude=_excluded(args))
    rows = export_customers(folder, request, catalog=catalog)
    print(f"exported {rows:,} customers to {_where(args.out, args.format)}")
    return 0


def _excluded(args: argparse.Namespace) -> frozenset[str]:
    """The products the server would not recommend now that the job could not know: blocked
    by a merchandiser (the server's database, ``[serving] database_url``; none, with a warning,
    when it cannot be read) or made out of stock / inactive by the watched catalogue file
    (``[serving] catalog_watch``, the overlay every server worker applies). Rows posted to one
    worker's ``POST /admin/catalog`` live in that worker's memory: an export cannot see them."""
    from recsys.serving.catalog_overlay import CatalogOverlay
    from recsys.serving.catalog_watch import CatalogWatch
    from recsys.serving.store import ServingStore

    settings = load_config_arg(args).serving_settings()
    overlay = CatalogOverlay()
    if settings.catalog_watch:
        rows = CatalogWatch(settings.catalog_watch).changed_rows()
        if rows is None:
            print(f"warning: the watched catalogue {settings.catalog_watch} cannot be read: "
                  "stock changes since the job ran are not applied", file=sys.stderr)
        overlay.update(rows or [])
    store = ServingStore(settings.database_url, refresh_seconds=0)
    try:
        if not store.database_ok:
            print("warning: the server's database is unreachable: products blocked since the "
                  "job ran stay in the export", file=sys.stderr)
        return store.decisions().blocked_products | overlay.unavailable()
    finally:
        store.dispose()


def _where(out: str, fmt: str) -> str:
    return f"table {out.split('#', 1)[1]}" if fmt == "sql" else out


def register(add: AddCommand) -> None:
    """Declare this module's command."""
    _add_arguments(add("export-customers", cmd_export_customers, "campaign export: one row per "
                       "customer with segment, stage, CLV and recommendations", config=True))
