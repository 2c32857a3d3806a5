"""Exports of the job's action lists (replenishment, win-back, high-value, lifecycle flows)
through the same writers as the customer export: the list's columns (or those asked for),
timestamps as dates, and a ``<column>_name`` beside every product column (``product_id``,
``offer_1`` ...) when the catalog has names; ``--segment`` / ``--stage`` filter the lists that
have those columns. Products blocked by a merchandiser since the job ran (``blocked``) leave
the export: a row whose ``product_id`` is blocked is dropped, a blocked offer is emptied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.analytics.export import (
    ACTION_LISTS,
    destination_problems,
    product_names,
    write_tables,
)
from recsys.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["export_list"]


def _is_product(column: str) -> bool:
    return column == "product_id" or column.startswith("offer_") and column[6:].isdigit()


def export_list(analytics: Path | str, name: str, out: str, fmt: str, *,
                columns: tuple[str, ...] | None = None, segments: tuple[str, ...] = (),
                stages: tuple[str, ...] = (), if_exists: str = "fail",
                catalog: Path | str | None = None, chunk_rows: int = 100_000,
                blocked: frozenset[str] = frozenset()) -> int:
    """Write the action list ``name`` of an analytics folder; returns the rows written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if name not in ACTION_LISTS:
        raise InputError(f"export-customers: unknown list {name!r}; choose from "
                         f"{', '.join(ACTION_LISTS)}")
    path = Path(analytics) / f"{name}.parquet"
    if not path.exists():
        raise InputError(f"{path} not found: run the customer_value job (`recsys run`) first")
    available = pq.read_schema(path).names
    wanted = list(columns) if columns else available
    problems = destination_problems(out, fmt)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        problems.append(f"the {name} list has no column(s) {', '.join(unknown)}; it has "
                        f"{', '.join(available)}")
    filters = {c: v for c, v in (("segment", segments), ("stage", stages)) if v}
    missing = [c for c in filters if c not in available]
    if missing:
        problems.append(f"the {name} list has no {' or '.join(missing)} column to filter on")
    if problems:
        raise InputError("export-customers: " + "; ".join(problems))
    names = product_names(Path(catalog) if catalog is not None else None)
    dropping = "product_id" in available and bool(blocked)
    read = list(dict.fromkeys([*wanted, *filters, *(["product_id"] if dropping else [])]))
    gone = pa.array(sorted(blocked), pa.string())

    def shape(batch: pa.RecordBatch) -> pa.Table:
        table = pa.Table.from_batches([batch])
        for column, values in filters.items():
            table = table.filter(pc.is_in(table.column(column).cast(pa.string()),
                                          value_set=pa.array(values, pa.string())))
        if dropping:
            table = table.filter(pc.invert(pc.fill_null(pc.is_in(
                table.column("product_id").cast(pa.string()), value_set=gone), False)))
        shaped: dict[str, pa.ChunkedArray] = {}
        for column in wanted:
            data = table.column(column)
            if pa.types.is_timestamp(data.type):
                data = pc.cast(data, pa.date32())
            elif pa.types.is_large_string(data.type):
                data = data.cast(pa.string())
            if blocked and column != "product_id" and _is_product(column):  # an offer
                data = pc.if_else(pc.is_in(data.cast(pa.string()), value_set=gone),
                                  pa.scalar(None, data.type), data)
            shaped[column] = data
            if names is not None and _is_product(column):
                at = pc.index_in(data.cast(pa.string()), value_set=names[0])
                shaped[f"{column}_name"] = pc.take(names[1], at)
        return pa.table(shaped)

    source = pq.ParquetFile(path, pre_buffer=False)

    def chunks() -> Iterator[pa.Table]:
        empty = True
        for batch in source.iter_batches(batch_size=chunk_rows, columns=read):
            empty = False
            yield shape(batch)
        if empty:  # an empty list still gets its header (or its table)
            schema = pa.schema([source.schema_arrow.field(c) for c in read])
            yield shape(pa.RecordBatch.from_pylist([], schema=schema))

    return write_tables(chunks(), out, fmt, if_exists)
