"""Ingest on Spark: the sources are read by Spark, and validated by the local validation
(``recsys.validate.validate_table``) on each partition (``mapInArrow``), so the reasons, the
counts and the typed output are those of ``recsys ingest``.

The data directory is the local ingest's: ``<table>.parquet`` (assembled in file order from the
executors' parts, ``chunk_rows`` at a time), ``quarantine/<table>.csv`` and ``report.json``.
Rows are numbered as in the file: data row n is line n + 1 (blank lines keep their numbers and
are counted as ``rows_empty``). The catalog (one row per product) is validated on the driver:
its duplicate check spans the whole table.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.contract import TABLES
from recsys.errors import InputError
from recsys.ingest import IngestReport, TableReport, check_sources
from recsys.mapping import SourceMapping, TableMapping
from recsys.readers import RawTable, SourceSpec, is_sql_url, read_source
from recsys.validate import validate_table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["ingest_on_spark", "read_raw", "row_numbers", "jdbc_url", "to_spark_pandas"]

_EMPTY = "\0empty"  # internal reason of an all-blank row: counted as rows_empty, never output
_POSITION_BITS = 33  # monotonically_increasing_id: partition index << 33 | position in it
# SQLAlchemy backend -> (JDBC scheme, driver class)
_JDBC_DRIVERS = {"postgresql": ("postgresql", "org.postgresql.Driver"),
                 "mysql": ("mysql", "com.mysql.cj.jdbc.Driver"),
                 "mariadb": ("mariadb", "org.mariadb.jdbc.Driver"),
                 "mssql": ("sqlserver", "com.microsoft.sqlserver.jdbc.SQLServerDriver"),
                 "sqlite": ("sqlite", "org.sqlite.JDBC")}
_SPARK_CODECS = {"gzip": (".gz", ".gzip"), "bz2": (".bz2",)}


def ingest_on_spark(spark: SparkSession, sources: dict[str, str], mapping: SourceMapping,
                    out_dir: Path | str, *, chunk_rows: int = 1_000_000,
                    show_progress: bool = True) -> IngestReport:
    """Ingest ``sources`` ({table: path or URL}; orders required) into ``out_dir`` on Spark."""
    del show_progress  # Spark's own progress is in its UI
    if mapping.catalog_from_orders is not None:
        raise InputError("[catalog_from_orders] is not supported by the Spark engine yet: give "
                         "a catalog file, or run recsys ingest (local) for the derived catalog")
    out = Path(out_dir)
    specs, names, resolved = check_sources(sources, mapping)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quarantine").mkdir(exist_ok=True)
    tables: dict[str, TableReport] = {}
    catalog_ids: pd.Series | None = None
    if "catalog" in specs:
        tables["catalog"], catalog_ids = _ingest_on_driver(
            "catalog", specs["catalog"], resolved["catalog"], mapping.for_table("catalog"), out)
    warnings: list[str] = []
    for table in (t for t in ("orders", "events") if t in specs):
        tables[table], accepted = _ingest_on_spark(
            spark, table, specs[table], names[table], resolved[table], mapping.for_table(table),
            out, chunk_rows)
        if catalog_ids is not None:
            warnings.extend(_unknown_products(spark, table, accepted, catalog_ids))
        accepted.unpersist()
    for table in TABLES:  # a table not given this time must not linger from an earlier ingest
        if table not in sources:
            for stale in (out / f"{table}.parquet", out / "quarantine" / f"{table}.csv"):
                stale.unlink(missing_ok=True)
    ordered = {t: tables[t] for t in specs}  # the report lists tables as the local ingest does
    report = IngestReport(tables=ordered, warnings=warnings)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out / "report.json")
    return report


def jdbc_url(location: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL (``postgresql+psycopg://user:pw@host:5432/db``) as a JDBC URL and its
    user/password properties, for Spark's JDBC reader."""
    from sqlalchemy.engine import make_url

    url = make_url(location.split("#", 1)[0])
    backend = url.get_backend_name()
    if backend not in _JDBC_DRIVERS:
        raise InputError(f"{url.render_as_string(hide_password=True)}: no JDBC form known for "
                         f"{backend!r} (known: {', '.join(sorted(_JDBC_DRIVERS))})")
    scheme, driver = _JDBC_DRIVERS[backend]
    props = {k: v for k, v in (("user", url.username), ("password", url.password)) if v}
    props["driver"] = driver  # the driver's jar comes with spark.jars (or --jars)
    if scheme == "sqlite":
        return f"jdbc:sqlite:{url.database}", props
    port = f":{url.port}" if url.port else ""
    return f"jdbc:{scheme}://{url.host or 'localhost'}{port}/{url.database or ''}", props


def read_raw(spark: SparkSession, spec: SourceSpec, columns: list[str],
             ) -> tuple[DataFrame, np.ndarray]:
    """The source as a Spark frame of its raw columns plus ``_mid`` (Spark's id of a record:
    scan partition << 33 | position in it), and the data-row numbers of the blank lines
    Spark's CSV reader skipped (CSV only). ``row_numbers`` turns ``_mid`` into row numbers."""
    from pyspark.sql import functions as F

    fmt = spec.format
    if fmt == "auto":
        fmt = ("sql" if is_sql_url(spec.location) else
               "parquet" if spec.location.lower().endswith((".parquet", ".pq")) else "csv")
    blanks = np.zeros(0, dtype=np.int64)
    if fmt == "sql":
        url, props = jdbc_url(spec.location)
        sql = spec.query or f"SELECT * FROM {spec._sql_table()}"
        frame = spark.read.jdbc(url, f"({sql}) recsys_source", properties=props)
    elif fmt == "parquet":
        frame = spark.read.parquet(spec.location)
    else:
        _check_spark_codec(spec)
        frame = (spark.read.option("header", True).option("inferSchema", False)
                 .option("sep", _delimiter(spec)).option("encoding", spec.encoding)
                 .option("mode", "PERMISSIVE").csv(spec.location))
        blanks = _blank_lines(spark, spec.location)
    frame = frame.toDF(*columns)  # the header as the local reader cleans it (strip, BOM)
    return frame.withColumn("_mid", F.monotonically_increasing_id()), blanks


def row_numbers(sizes: dict[int, int], blanks: np.ndarray) -> Column:
    """The local reader's row number of each record, from ``_mid``, the records per scan
    partition (``sizes``) and the blank lines: data row n is line n + 1 of the file."""
    from pyspark.sql import functions as F

    offsets = _offsets(sizes)
    # record k (0-based, in file order) is data row k + 1 + (blank lines before it); a blank
    # line at data row p has p - i records before it (i = its 1-based rank among blank lines)
    skipped_before = blanks - np.arange(1, len(blanks) + 1)
    pos = F.col("_mid").bitwiseAND(F.lit((1 << _POSITION_BITS) - 1))
    part = F.shiftright(F.col("_mid"), _POSITION_BITS).cast("int")
    offset = F.element_at(F.array(*[F.lit(int(o)) for o in offsets]) if offsets else
                          F.array(F.lit(0)), part + 1)
    record = offset + pos + 1
    if len(skipped_before):
        before = F.array(*[F.lit(int(b)) for b in skipped_before])
        record = record + F.size(F.filter(before, lambda b: b < record))
    return record.cast("long")


# -- the two paths -----------------------------------------------------------------------------


def _ingest_on_driver(table: str, spec: SourceSpec, columns: dict[str, str],
                      mapping: TableMapping, out: Path) -> tuple[TableReport, pd.Series]:
    raw = read_source(spec)
    if raw.frame.empty:
        raise InputError(f"{raw.label}: the file has a header but no data rows")
    result = validate_table(table, raw, columns, mapping)
    tmp = out / f"{table}.parquet.tmp"
    result.accepted.to_parquet(tmp, index=False)
    os.replace(tmp, out / f"{table}.parquet")
    result.quarantine.to_csv(out / "quarantine" / f"{table}.csv", index=False)
    report = TableReport(source=raw.label, rows_read=len(raw.frame),
                         rows_accepted=len(result.accepted), rows_rejected=len(result.quarantine),
                         rejected_by_reason=result.rejected_by_reason,
                         output_file=f"{table}.parquet", quarantine_file=f"quarantine/{table}.csv",
                         columns=list(result.accepted.columns), rows_empty=raw.empty_rows)
    return report, result.accepted["product_id"]


def _ingest_on_spark(spark: SparkSession, table: str, spec: SourceSpec, raw_names: list[str],
                     columns: dict[str, str], mapping: TableMapping, out: Path, chunk_rows: int,
                     ) -> tuple[TableReport, DataFrame]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    frame, blanks = read_raw(spark, spec, raw_names)
    accepted_schema, arrow_schema = _accepted_schema(table, raw_names, columns, mapping)
    raw_fields = [f for f in frame.schema.fields if f.name != "_mid"]
    wide_schema = _wide_schema(accepted_schema, raw_fields)
    validate = _partition_validator(table, columns, mapping, spec.label, raw_names,
                                    to_arrow_schema(wide_schema, timezone="UTC"))
    # every validated line, read three times below: kept on the executors' disks, not in
    # their heap (cached in memory, 10M orders' lines overflowed a 4 GB local JVM)
    wide = frame.mapInArrow(validate, wide_schema).persist(StorageLevel.DISK_ONLY)
    # one pass over the validated rows (one out per record read): the counts per reason and
    # the records per scan partition, which number the rows
    counts: dict[str | None, int] = {}
    sizes: dict[int, int] = {}
    part = F.shiftright(F.col("_mid"), _POSITION_BITS).cast("int").alias("p")
    for r in wide.groupBy(part, "_reason").count().collect():
        counts[r["_reason"]] = counts.get(r["_reason"], 0) + int(r["count"])
        sizes[r["p"]] = sizes.get(r["p"], 0) + int(r["count"])
    if not any(k != _EMPTY for k in counts):
        raise InputError(f"{spec.label}: the file has a header but no data rows")
    accepted = wide.filter(F.col("_reason").isNull()).select(*accepted_schema.names)
    with tempfile.TemporaryDirectory(prefix=f"recsys-spark-{table}-", dir=out) as tmp:
        accepted.write.mode("overwrite").parquet(f"{tmp}/accepted")
        _assemble_parquet(Path(tmp) / "accepted", out / f"{table}.parquet", arrow_schema,
                          chunk_rows)
        rejected = wide.filter(F.col("_reason").isNotNull() & (F.col("_reason") != _EMPTY))
        rejected.select(row_numbers(sizes, blanks).alias("_row"), "_reason", "_column", *[f"_raw{i}" for i in range(len(raw_fields))]
                        ).write.mode("overwrite").parquet(f"{tmp}/rejected")
        _assemble_quarantine(Path(tmp) / "rejected", out / "quarantine" / f"{table}.csv",
                             spec.label, raw_names, chunk_rows)
    accepted_out = spark.read.parquet(str(out / f"{table}.parquet"))
    wide.unpersist()
    rejected_by_reason = {k: v for k, v in sorted((k, v) for k, v in counts.items() if k)
                          if k != _EMPTY}
    n_accepted = counts.get(None, 0)
    report = TableReport(
        source=spec.label, rows_read=n_accepted + sum(rejected_by_reason.values()),
        rows_accepted=n_accepted, rows_rejected=sum(rejected_by_reason.values()),
        rejected_by_reason=rejected_by_reason, output_file=f"{table}.parquet",
        quarantine_file=f"quarantine/{table}.csv", columns=list(accepted_schema.names),
        rows_empty=len(blanks) + counts.get(_EMPTY, 0))
    return report, accepted_out


def _partition_validator(table: str, columns: dict[str, str], mapping: TableMapping,
                         label: str, raw_names: list[str], schema: pa.Schema,
                         ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each partition runs: local validation of its rows (numbered by ``_mid``),
    one wide batch out (accepted columns, then ``_mid``/``_reason``/``_column``, then the raw
    values), Arrow in and out: no conversion through Python objects."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for record in batches:
            batch = record.to_pandas()
            rows = batch["_mid"]
            raw = batch[raw_names]
            text = raw.select_dtypes(include=["object", "string"]).columns
            raw[text] = raw[text].mask(raw[text] == "")  # a quoted "" is missing, as in pandas
            empty = raw.isna().all(axis=1).to_numpy()
            keep = RawTable(frame=raw[~empty], source_row=rows[~empty], label=label)
            result = validate_table(table, keep, columns, mapping)
            is_ok = result.accepted_rows
            good = result.accepted.copy()
            good["_mid"] = keep.source_row.to_numpy()[is_ok]
            bad_rows = raw[~empty].reset_index(drop=True)[~is_ok]
            bad = pd.DataFrame({"_mid": result.quarantine["row"].to_numpy(),
                                "_reason": result.quarantine["reason"].to_numpy(),
                                "_column": result.quarantine["column"].to_numpy()})
            blank = pd.DataFrame({"_mid": rows[empty].to_numpy(), "_reason": _EMPTY})
            for i, name in enumerate(raw_names):
                bad[f"_raw{i}"] = bad_rows[name].to_numpy()
            parts = [p for p in (good, bad, blank) if len(p)]
            if parts:
                yield from _to_arrow(pd.concat(parts, ignore_index=True), schema).to_batches()

    return run


def _to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame`` as a table of ``schema``; a column it lacks or holds only missing values in
    (the raw values of a batch without rejects, the reason of accepted rows) is all null."""
    arrays = [pa.nulls(len(frame), field.type)
              if field.name not in frame or frame[field.name].isna().all() else
              pa.array(frame[field.name], type=field.type, from_pandas=True)
              for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def to_spark_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas 3 text columns (Arrow-backed, chunked) and all-missing columns as plain objects
    with None: pyspark 4's Arrow conversion cannot take chunked arrays."""
    out = frame.copy()
    for name in out.columns:
        if out[name].isna().all():  # e.g. raw columns of a batch without rejects: float NaN
            out[name] = pd.Series([None] * len(out), index=out.index, dtype=object)
        elif pd.api.types.is_string_dtype(out[name].dtype) and out[name].dtype != object:
            values = out[name].astype(object)
            out[name] = values.where(values.notna(), None)
    return out


# -- schemas -----------------------------------------------------------------------------------


def _accepted_schema(table: str, raw_names: list[str], columns: dict[str, str],
                     mapping: TableMapping) -> tuple[Any, pa.Schema]:
    """The typed columns the local validation outputs for these raw columns (from a one-row
    dry run), as a Spark schema and as the Arrow schema (with pandas' metadata) that the local
    ingest writes."""
    from pyspark.sql import types as T

    kinds = {"id": T.StringType(), "text": T.StringType(), "event_type": T.StringType(),
             "timestamp": T.TimestampNTZType(), "number": T.DoubleType(),
             "bool": T.BooleanType()}
    probe = pd.DataFrame({c: pd.Series([None], dtype="string") for c in raw_names})
    dry = validate_table(table, RawTable(probe, pd.Series([1]), "probe"), columns, mapping)
    names = list(dry.accepted.columns)
    spark_schema = T.StructType([T.StructField(c, kinds[TABLES[table].columns[c]], True)
                                 for c in names])
    return spark_schema, pa.Schema.from_pandas(dry.accepted, preserve_index=False)


def _wide_schema(accepted: Any, raw_fields: list[Any]) -> Any:
    from pyspark.sql import types as T

    fields = [*accepted.fields, T.StructField("_mid", T.LongType(), False),
              T.StructField("_reason", T.StringType(), True),
              T.StructField("_column", T.StringType(), True)]
    fields += [T.StructField(f"_raw{i}", f.dataType, True) for i, f in enumerate(raw_fields)]
    return T.StructType(fields)


# -- reading helpers ---------------------------------------------------------------------------


def _check_spark_codec(spec: SourceSpec) -> None:
    from recsys.readers import _detect_compression

    path = Path(spec.location)
    codec = spec.compression or _detect_compression(path)
    if codec is None:
        return
    if not path.name.lower().endswith(_SPARK_CODECS.get(codec, ())):
        raise InputError(f"{spec.location}: {codec} compressed; Spark reads only gzip (.gz) and "
                         "bz2 (.bz2) files, by their name: rename or decompress it, or use "
                         "--engine local")


def _delimiter(spec: SourceSpec) -> str:
    """The delimiter the local reader would use (given, or sniffed from the first lines)."""
    import csv

    if spec.delimiter is not None:
        return spec.delimiter
    from recsys.readers import _SNIFF_BYTES, _detect_compression, _open_binary

    with _open_binary(Path(spec.location), spec.compression or
                      _detect_compression(Path(spec.location))) as fh:
        head = fh.read(_SNIFF_BYTES)
    first_lines = "\n".join(head.decode(spec.encoding, errors="ignore").splitlines()[:50])
    try:
        return csv.Sniffer().sniff(first_lines, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _blank_lines(spark: SparkSession, location: str) -> np.ndarray:
    """Data-row numbers of the empty lines Spark's CSV reader skips (line n + 1 = row n), from
    one pass over the lines: the lines per partition and the blank ones' positions."""
    from pyspark.sql import functions as F

    mid = F.monotonically_increasing_id()
    lines = spark.read.text(location).select(
        F.shiftright(mid, _POSITION_BITS).cast("int").alias("p"),
        mid.bitwiseAND(F.lit((1 << _POSITION_BITS) - 1)).alias("i"),
        (F.rtrim(F.col("value"), F.lit("\r")) == "").alias("blank"))
    parts = lines.groupBy("p").agg(F.count(F.lit(1)).alias("n"),
                                   F.collect_list(F.when(F.col("blank"), F.col("i"))).alias("hits")
                                   ).collect()
    offsets = _offsets({r["p"]: int(r["n"]) for r in parts})
    return np.sort(np.array([offsets[r["p"]] + i for r in parts for i in r["hits"]],
                            dtype=np.int64))


def _offsets(sizes: dict[int, int]) -> list[int]:
    """Records before each partition (in partition order), from the records per partition."""
    n = max(sizes, default=-1) + 1
    counts = np.array([sizes.get(i, 0) for i in range(n)], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist() if n else []


# -- assembling the executors' parts into the local ingest's files -----------------------------


def _part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _assemble_parquet(parts: Path, target: Path, schema: pa.Schema, chunk_rows: int) -> None:
    """One Parquet file from the parts, in order, ``chunk_rows`` rows in memory at a time, with
    the types and pandas metadata of the local ingest's file."""
    tmp = target.with_suffix(".parquet.tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for part in _part_files(parts):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=chunk_rows):
                writer.write_table(pa.Table.from_batches([batch]).select(schema.names)
                                   .cast(schema))
    os.replace(tmp, target)
    shutil.rmtree(parts, ignore_errors=True)


def _assemble_quarantine(parts: Path, target: Path, label: str, raw_names: list[str],
                         chunk_rows: int) -> None:
    """quarantine/<table>.csv as the local ingest writes it: source, row, reason, column, raw."""
    names = [f"raw_{c}" if c in ("source", "row", "reason", "column") else c for c in raw_names]
    tmp = target.with_suffix(".csv.tmp")
    header = True
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        for part in _part_files(parts):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=chunk_rows):
                chunk = batch.to_pandas()
                frame = pd.DataFrame({"source": label, "row": chunk["_row"],
                                      "reason": chunk["_reason"], "column": chunk["_column"]})
                for i, name in enumerate(names):
                    frame[name] = chunk[f"_raw{i}"]
                frame.to_csv(fh, index=False, header=header)
                header = False
        if header:
            fh.write(",".join(["source", "row", "reason", "column", *names]) + "\n")
    os.replace(tmp, target)


def _unknown_products(spark: SparkSession, table: str, accepted: DataFrame,
                      catalog_ids: pd.Series) -> list[str]:
    """The local ingest's cross-table warning: rows naming products the catalog lacks."""
    from pyspark.sql import functions as F

    known = spark.createDataFrame(pd.DataFrame({"product_id": catalog_ids.astype(object)}))
    unknown = accepted.join(F.broadcast(known), "product_id", "left_anti")
    row = unknown.agg(F.count(F.lit(1)).alias("rows"),
                      F.countDistinct("product_id").alias("products")).first()
    if not row or not row["rows"]:
        return []
    return [f"{table}: {int(row['rows']):,} rows ({int(row['products']):,} products) name "
            "products the catalog does not have; they are kept"]
