"""Campaign exports (`recsys export-customers`): one row per customer with segment, lifecycle
stage, historical and predicted CLV, P(alive), next order due, churn risk and the top-k
recommendations (ids and names), to CSV, Parquet or a SQL table, for email and CRM tools.

Reads the customer_value job's tables (``customers.parquet``, ``lifecycle.parquet`` and
``recommendations.parquet``, written in one row order and in row groups of 100,000) in chunks
of ``chunk_rows`` in lockstep, so memory stays bounded whatever the number of customers. Dates
are exported as dates (YYYY-MM-DD). Products excluded since the job ran (``exclude``: out of
stock or inactive in the served catalogue overlay, blocked by a merchandiser) leave each
customer's recommendations, the later ones moving up. Files are written to a temporary name
and renamed when complete; a SQL export runs in one transaction (COPY on PostgreSQL), so a
failure leaves nothing half written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from recsys import layout
from recsys.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["COLUMNS", "DEFAULT_COLUMNS", "RECOMMENDATIONS", "ExportRequest", "export_customers",
           "write_tables", "product_names",
           "destination_problems"]

#: Exportable columns -> the job's table holding them.
COLUMNS: dict[str, str] = {
    "customer_id": "customers", "segment": "customers", "stage": "lifecycle",
    "orders": "customers", "revenue": "customers", "first_order": "customers",
    "last_order": "customers", "recency_days": "customers", "historical_clv": "customers",
    "predicted_clv": "customers", "p_alive": "customers", "expected_purchases": "customers",
    "next_order_due": "customers", "churn_risk": "customers",
}
#: Expands to rec_1_id, rec_1_name, ..., rec_k_id, rec_k_name.
RECOMMENDATIONS = "recommendations"
DEFAULT_COLUMNS = ("customer_id", "segment", "stage", "historical_clv", "predicted_clv",
                   "p_alive", "next_order_due", "churn_risk", RECOMMENDATIONS)
_DATES = ("first_order", "last_order", "next_order_due")
_FILES = {"customers": layout.CLV_CUSTOMERS.name, "lifecycle": layout.LIFECYCLE.name,
          "recommendations": layout.CUSTOMER_RECOMMENDATIONS.name}
Format = Literal["csv", "parquet", "sql"]
#: The action lists `--list` exports (recsys.analytics.actions writes them).
ACTION_LISTS = ("replenishment", "winback", "high_value", "lifecycle_flows")


@dataclass(frozen=True)
class ExportRequest:
    """What to export: filters, columns, how many recommendations, where and how."""

    out: str  # a file path, or a SQLAlchemy URL with #table for sql
    format: Format
    segments: tuple[str, ...] = ()  # empty = every segment
    stages: tuple[str, ...] = ()  # empty = every stage
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    top_k: int = 5
    if_exists: Literal["fail", "replace", "append"] = "fail"  # sql only; files are replaced
    chunk_rows: int = 100_000
    exclude: frozenset[str] = frozenset()  # products not to recommend (unavailable, blocked)


def _check(request: ExportRequest, kept: int) -> None:
    """Every problem of a request, before anything is read or written."""
    from recsys.analytics.lifecycle import STAGES
    from recsys.analytics.rfm import SEGMENTS

    problems = []
    unknown = [c for c in request.columns if c not in COLUMNS and c != RECOMMENDATIONS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}; choose from "
                        f"{', '.join([*COLUMNS, RECOMMENDATIONS])}")
    if not request.columns:
        problems.append("no columns asked for")
    if len(set(request.columns)) != len(request.columns):
        problems.append("a column is asked for twice")
    for what, given, valid in (("segment", request.segments, SEGMENTS),
                               ("stage", request.stages, STAGES)):
        bad = [v for v in given if v not in valid]
        if bad:
            problems.append(f"unknown {what}(s) {', '.join(bad)}; choose from {', '.join(valid)}")
    if RECOMMENDATIONS in request.columns and not 1 <= request.top_k <= kept:
        problems.append(f"--top-k must be 1..{kept} (the job keeps {kept} recommendations per "
                        "customer; raise [analytics.actions] recommendations for more)")
    if request.chunk_rows < 1:
        problems.append("chunk_rows must be at least 1")
    problems += destination_problems(request.out, request.format)
    if problems:
        raise InputError("export-customers: " + "; ".join(problems))


def destination_problems(out: str, fmt: str) -> list[str]:
    """What is wrong with ``--out`` for ``--format`` (nothing: an empty list)."""
    is_url = "://" in out
    if fmt == "sql" and (not is_url or "#" not in out or not out.split("#", 1)[1]):
        return [f"--format sql needs --out URL#table (a SQLAlchemy URL and a table name), "
                f"got {out!r}"]
    if fmt != "sql" and is_url:
        return [f"--out {out!r} is a URL: use --format sql for a database"]
    return []


def _exact(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Re-cut record batches into tables of exactly ``size`` rows (the last may be shorter)."""
    import pyarrow as pa

    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, size)
            rest = table.slice(size)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held)


def _chunks(folder: Path, needed: dict[str, list[str]], size: int) -> Iterator[pa.Table]:
    """The needed columns of the job's tables, ``size`` rows at a time, side by side."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    readers = {}
    for table, columns in needed.items():
        path = folder / _FILES[table]
        if not path.exists():
            raise InputError(f"{path} not found: export-customers needs the customer_value "
                             "job's tables (run `recsys run`, or `recsys clv --out DIR`)")
        want = ["customer_id", *[c for c in columns if c != "customer_id"]]
        # pre_buffer would read every row group's columns up front: memory would grow with
        # the customers; without it, one row group (recsys.analytics.actions.ROW_GROUP_ROWS)
        batches = pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=size,
                                                                      columns=want)
        readers[table] = _exact(batches, size)
    names = list(readers)
    while True:
        parts = [next(readers[n], None) for n in names]
        if all(p is None for p in parts):
            return
        ids = [None if p is None else p.column("customer_id").cast(pa.string()) for p in parts]
        if any(i is None for i in ids) or any(not i.equals(ids[0]) for i in ids[1:]):  # type: ignore[union-attr]
            raise InputError(f"{folder}: {', '.join(_FILES[n] for n in names)} do not list "
                             "the same customers in the same order (written by different "
                             "runs?); rerun the customer_value job")
        side_by_side: dict[str, pa.ChunkedArray] = {}
        for part in parts:
            assert part is not None
            for column in part.column_names:
                side_by_side.setdefault(column, part.column(column))
        yield pa.table(side_by_side)


def _rec_columns(folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    from recsys.analytics.actions import REC_PREFIX

    path = folder / _FILES["recommendations"]
    if not path.exists():
        return []
    return [c for c in pq.read_schema(path).names if c.startswith(REC_PREFIX)]


def product_names(catalog: Path | None) -> tuple[pa.Array, pa.Array] | None:
    """Product ids and names from a catalog Parquet file (None without one or its names)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if catalog is None or not catalog.exists():
        return None
    if "name" not in pq.read_schema(catalog).names:
        return None
    table = pq.read_table(catalog, columns=["product_id", "name"])
    return (table.column("product_id").combine_chunks().cast(pa.string()),
            table.column("name").combine_chunks().cast(pa.string()))


def _shape(chunk: pa.Table, request: ExportRequest, rec_columns: list[str],
           names: tuple[pa.Array, pa.Array] | None) -> pa.Table:
    """Filter the rows and build the asked columns, in the asked order, with fixed types."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = None
    for column, values in (("segment", request.segments), ("stage", request.stages)):
        if values:
            mask = pc.is_in(chunk.column(column).cast(pa.string()),
                            value_set=pa.array(values, pa.string()))
            keep = mask if keep is None else pc.and_(keep, mask)
    if keep is not None:
        chunk = chunk.filter(keep)
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    for column in request.columns:
        if column == RECOMMENDATIONS:
            for i, ids in enumerate(_recommended(chunk, rec_columns, request), start=1):
                out[f"rec_{i}_id"] = ids
                if names is None:
                    out[f"rec_{i}_name"] = pa.nulls(len(ids), pa.string())
                else:
                    at = pc.index_in(ids, value_set=names[0])
                    out[f"rec_{i}_name"] = pc.take(names[1], at)
        elif column in _DATES:
            out[column] = pc.cast(chunk.column(column), pa.date32())
        elif column in ("customer_id", "segment", "stage"):
            out[column] = chunk.column(column).cast(pa.string())
        else:
            out[column] = chunk.column(column)
    return pa.table(out)


def _recommended(chunk: pa.Table, rec_columns: list[str],
                 request: ExportRequest) -> list[pa.Array]:
    """The first ``top_k`` recommendation columns, each row's excluded products left out and
    the later ones moved up (the job keeps more than ``top_k``; a row short of them ends in
    nulls)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [chunk.column(c).combine_chunks().cast(pa.string()) for c in rec_columns]
    if not request.exclude or not columns:
        return columns[:request.top_k]
    rows = len(columns[0])
    # one dictionary for all the columns: the rows x kept matrix holds integer codes
    coded = pc.dictionary_encode(pa.concat_arrays(columns))
    codes = pc.fill_null(coded.indices, -1).to_numpy().reshape(len(columns), rows).T
    gone = pc.is_in(coded.dictionary, value_set=pa.array(sorted(request.exclude), pa.string()))
    drop = np.append(gone.to_numpy(zero_copy_only=False), True)[codes]  # -1: null, dropped too
    order = np.argsort(drop, axis=1, kind="stable")  # kept products first, in their order
    codes = np.take_along_axis(codes, order, axis=1)
    empty = np.take_along_axis(drop, order, axis=1)
    return [pa.DictionaryArray.from_arrays(pa.array(codes[:, i], mask=empty[:, i]),
                                           coded.dictionary).cast(pa.string())
            for i in range(min(request.top_k, len(columns)))]


def export_customers(analytics: Path | str, request: ExportRequest, *,
                     catalog: Path | str | None = None) -> int:
    """Export the customers of an analytics folder (the customer_value job's output) as the
    request says; ``catalog``: a catalog Parquet file for recommendation names (names are
    empty without one). Returns the number of customers written."""
    folder = Path(analytics)
    rec_columns = _rec_columns(folder)
    _check(request, len(rec_columns))
    needed: dict[str, list[str]] = {"customers": []}
    for column in request.columns:
        if column == RECOMMENDATIONS:  # all of them when some may be left out
            needed["recommendations"] = rec_columns[:None if request.exclude else request.top_k]
        else:
            needed.setdefault(COLUMNS[column], []).append(column)
    for column, values in (("segment", request.segments), ("stage", request.stages)):
        if values and column not in needed.setdefault(COLUMNS[column], []):
            needed[COLUMNS[column]].append(column)
    names = product_names(Path(catalog) if catalog is not None else None)
    used = rec_columns[:None if request.exclude else request.top_k]
    tables = (_shape(chunk, request, used, names)
              for chunk in _chunks(folder, needed, request.chunk_rows))
    return write_tables(tables, request.out, request.format, request.if_exists)


def write_tables(tables: Iterator[pa.Table], out: str, fmt: str, if_exists: str) -> int:
    """Write the chunks to a file (csv, parquet) or a SQL table (``URL#table``)."""
    if fmt == "sql":
        from recsys.analytics.export_sql import write_sql

        return write_sql(tables, out, if_exists)
    return _write_file(tables, Path(out), fmt)


def _write_file(tables: Iterator[pa.Table], path: Path, fmt: str) -> int:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rows = 0
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = (pacsv.CSVWriter(tmp, table.schema) if fmt == "csv"
                          else pq.ParquetWriter(tmp, table.schema))
            writer.write_table(table)
            rows += table.num_rows
        if writer is None:
            raise InputError(f"export-customers: no customers in the analytics tables; "
                             f"nothing written to {path}")
        writer.close()
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows
