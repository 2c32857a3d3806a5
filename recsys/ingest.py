"""Ingest: read each source, map it onto the contract, validate, and write a data directory.

Output (``DATA_DIR``): ``orders.parquet`` / ``events.parquet`` / ``catalog.parquet`` (canonical,
typed), ``quarantine/<table>.csv`` (exactly the rejected rows, with source, row, reason and
column first, then the raw values) and ``report.json``. Every source's header is checked against
the mapping before any data is read or written. With ``[catalog_from_orders]`` in the mapping,
``catalog.parquet`` also holds the products derived from the accepted order lines
(:mod:`recsys.derive_catalog`), noted in the report as ``derived_catalog``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.contract import TABLES
from recsys.derive_catalog import derive_catalog, merge_catalogs
from recsys.errors import InputError
from recsys.filemodes import private_dir, private_file
from recsys.mapping import CatalogFromOrders, SourceMapping, resolve_columns
from recsys.progress import progress_bar
from recsys.readers import SourceSpec, read_columns, read_source
from recsys.validate import validate_table

__all__ = ["IngestReport", "TableReport", "ingest", "check_sources", "source_spec", "load_table",
           "table_file",
           "write_outputs"]

log = logging.getLogger(__name__)


@dataclass
class TableReport:
    """Counts for one table: rows_read == rows_accepted + rows_rejected; ``rows_empty``: blank
    CSV lines skipped besides (not data rows, but counted)."""

    source: str
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    output_file: str
    quarantine_file: str
    columns: list[str]
    rows_empty: int = 0


@dataclass
class IngestReport:
    """The whole ingest: per-table reports, totals and cross-table warnings."""

    tables: dict[str, TableReport]
    warnings: list[str] = field(default_factory=list)
    derived_catalog: dict[str, Any] | None = None  # what [catalog_from_orders] derived
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        merged: dict[str, int] = {}
        for rep in self.tables.values():
            for reason, count in rep.rejected_by_reason.items():
                merged[reason] = merged.get(reason, 0) + count
        return {
            "created_at": self.created_at,
            "rows_read": sum(t.rows_read for t in self.tables.values()),
            "rows_accepted": sum(t.rows_accepted for t in self.tables.values()),
            "rows_rejected": sum(t.rows_rejected for t in self.tables.values()),
            "rows_empty": sum(t.rows_empty for t in self.tables.values()),
            "rejected_by_reason": dict(sorted(merged.items())),
            "tables": {name: vars(rep) for name, rep in self.tables.items()},
            "derived_catalog": self.derived_catalog,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        """The console summary: the same figures as report.json."""
        lines = []
        for name, rep in self.tables.items():
            empty = f", {rep.rows_empty:,} empty lines skipped" if rep.rows_empty else ""
            lines.append(f"{name}: {rep.rows_read:,} read, {rep.rows_accepted:,} accepted, "
                         f"{rep.rows_rejected:,} rejected{empty}  ({rep.source})")
            for reason, count in rep.rejected_by_reason.items():
                lines.append(f"    {reason}: {count:,}")
            if rep.rows_rejected:
                lines.append(f"    quarantine: {rep.quarantine_file}")
        if self.derived_catalog is not None:
            lines.append(_derived_summary(self.derived_catalog))
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def source_spec(location: str, table: str, mapping: SourceMapping) -> SourceSpec:
    """A reader spec for ``table`` at ``location`` with the mapping's reader options."""
    m = mapping.for_table(table)
    return SourceSpec(location=str(location), format=m.format, delimiter=m.delimiter,
                      encoding=m.encoding, compression=m.compression, table=m.table, query=m.query)


def check_sources(sources: dict[str, str], mapping: SourceMapping) -> tuple[
        dict[str, SourceSpec], dict[str, list[str]], dict[str, dict[str, str]]]:
    """Every source's spec, header and mapped columns, checked before anything is read or
    written (unknown tables, no orders, a mapped column the file lacks: InputError)."""
    unknown = sorted(set(sources) - set(TABLES))
    if unknown:
        raise InputError(f"unknown table(s) {unknown}; expected {list(TABLES)}")
    if "orders" not in sources:
        raise InputError("orders are required (--orders PATH_OR_URL)")
    specs = {t: source_spec(loc, t, mapping) for t, loc in sources.items()}
    headers = {t: read_columns(s) for t, s in specs.items()}
    resolved = {t: resolve_columns(t, mapping.for_table(t), headers[t], s.label)
                for t, s in specs.items()}
    return specs, headers, resolved


def ingest(sources: dict[str, str], mapping: SourceMapping, out_dir: Path | str, *,
           show_progress: bool = True) -> IngestReport:
    """Ingest ``sources`` ({table: path or URL}; orders required) into ``out_dir``."""
    out = Path(out_dir)
    specs, headers, resolved = check_sources(sources, mapping)
    derive = mapping.catalog_from_orders
    if derive is not None:
        _check_derivable(derive, headers["orders"], resolved["orders"], specs["orders"].label)
    private_dir(out / "quarantine")  # customer data: owner-only folders and files
    private_dir(out)
    tables: dict[str, TableReport] = {}
    accepted: dict[str, pd.DataFrame] = {}
    order_text = pd.DataFrame()
    for table in progress_bar(list(specs), desc="ingest", unit="table", enabled=show_progress):
        raw = read_source(specs[table])
        if raw.frame.empty:
            raise InputError(f"{raw.label}: the file has a header but no data rows")
        result = validate_table(table, raw, resolved[table], mapping.for_table(table))
        _write_parquet(result.accepted, table_file(out, table))
        qfile = out / "quarantine" / f"{table}.csv"
        result.quarantine.to_csv(qfile, index=False)
        private_file(qfile)
        accepted[table] = result.accepted
        if table == "orders" and derive is not None:
            order_text = raw.frame.loc[result.accepted_rows,
                                       list(derive.source_columns().values())]
            order_text = order_text.reset_index(drop=True)
        tables[table] = TableReport(
            source=raw.label,
            rows_read=len(raw.frame),
            rows_accepted=len(result.accepted),
            rows_rejected=len(result.quarantine),
            rejected_by_reason=result.rejected_by_reason,
            output_file=f"{table}.parquet",
            quarantine_file=f"quarantine/{table}.csv",
            columns=list(result.accepted.columns),
            rows_empty=raw.empty_rows,
        )
    for table in TABLES:  # a table not given this time must not linger from an earlier ingest
        if table not in sources:
            for stale in (table_file(out, table), out / "quarantine" / f"{table}.csv"):
                stale.unlink(missing_ok=True)
    note = None
    if derive is not None:
        explicit = accepted.get("catalog")
        derived = derive_catalog(accepted["orders"], order_text, derive,
                                 price_source=resolved["orders"].get("unit_price"),
                                 known=None if explicit is None else explicit["product_id"])
        accepted["catalog"] = merge_catalogs(explicit, derived)
        _write_parquet(accepted["catalog"], table_file(out, "catalog"))
        note = derived.note
    report = IngestReport(tables=tables, warnings=_cross_checks(accepted), derived_catalog=note)
    _write_json(report.to_dict(), out / "report.json")
    return report


def table_file(data_dir: Path | str, table: str) -> Path:
    """Where ingest keeps a table of the data contract in a data directory."""
    return Path(data_dir) / f"{table}.parquet"


def load_table(data_dir: Path | str, table: str, *, required: bool = True) -> pd.DataFrame | None:
    """Read a canonical table from a data directory (None when optional and absent)."""
    path = table_file(data_dir, table)
    if not path.exists():
        if required:
            raise InputError(f"{path}: not found; run `recsys ingest ... --out {data_dir}` first")
        return None
    return pd.read_parquet(path)


def _check_derivable(derive: CatalogFromOrders, header: list[str], resolved: dict[str, str],
                     label: str) -> None:
    """[catalog_from_orders] names columns the orders source has, and a price needs prices."""
    for column, source in derive.source_columns().items():
        if source not in header:
            raise InputError(f"{label}: [catalog_from_orders] {column} = {source!r} is not a "
                             f"column of the orders; its columns are {sorted(header)}")
    if derive.price != "none" and "unit_price" not in resolved:
        raise InputError(f"{label}: [catalog_from_orders] price = {derive.price!r} needs the "
                         "orders' unit_price column; map it in [orders.columns] or set "
                         "price = \"none\"")


def _derived_summary(note: dict[str, Any]) -> str:
    sources = ", ".join(f"{col} from {note[col]['from']!r} ({note[col]['rule']}, "
                        f"{note[col]['products_with_value']:,} products)"
                        for col in ("name", "category", "price") if col in note)
    kept = note.get("from_catalog_file", 0)
    wins = f"; {kept:,} products kept from the catalog file" if kept else ""
    return (f"catalog: {note['products']:,} products derived from the order lines: "
            f"{sources or 'ids only'}{wins}")


def write_outputs(data_dir: Path | str, tables: dict[str, pd.DataFrame],
                  quarantines: dict[str, pd.DataFrame], report: IngestReport) -> None:
    """(Re)write canonical tables, quarantine files and ``report.json`` of a data directory:
    for a source added after ``ingest`` (the server's stored events)."""
    out = Path(data_dir)
    for table, frame in tables.items():
        _write_parquet(frame, table_file(out, table))
    for name, frame in quarantines.items():
        qfile = out / "quarantine" / f"{name}.csv"
        frame.to_csv(qfile, index=False)
        private_file(qfile)
    _write_json(report.to_dict(), out / "report.json")


def _cross_checks(tables: dict[str, pd.DataFrame]) -> list[str]:
    warnings = []
    catalog = tables.get("catalog")
    if catalog is not None:
        known = pd.Index(catalog["product_id"])
        for table in ("orders", "events"):
            if table in tables:
                ids = tables[table]["product_id"]
                unknown = ~ids.isin(known)
                if unknown.any():
                    warnings.append(
                        f"{table}: {int(unknown.sum()):,} rows ({ids[unknown].nunique():,} "
                        "products) name products the catalog does not have; they are kept"
                    )
    return warnings


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(private_file(tmp), path)


def _write_json(payload: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(private_file(tmp), path)
