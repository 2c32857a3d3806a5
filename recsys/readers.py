"""Readers: CSV (delimiter, compression and encoding checked up front), Parquet and SQL.

Every reader returns the source's raw columns as a DataFrame plus a ``source_row`` Series
(1-based data row number in the file, or row position in a query result) so that validation
can say exactly where a bad row came from. Nothing here interprets values.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import lzma
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from recsys.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["SourceSpec", "RawTable", "read_source", "read_columns", "is_sql_url"]

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ": "xz", b"PK\x03\x04": "zip"}
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class SourceSpec:
    """Where one table comes from: a file path or a SQLAlchemy URL (with a table or a query)."""

    location: str
    format: str = "auto"  # auto | csv | parquet | sql
    delimiter: str | None = None  # CSV: None = detect
    encoding: str = "utf-8"
    compression: str | None = None  # CSV: None = detect from content
    table: str | None = None  # SQL
    query: str | None = None  # SQL

    @property
    def label(self) -> str:
        """A human name for messages (the URL's password is never shown)."""
        if is_sql_url(self.location):
            from sqlalchemy.engine import make_url

            url = make_url(self.location.split("#", 1)[0]).render_as_string(hide_password=True)
            what = self.query if self.query else self._sql_table()
            return f"{url} ({what})"
        return self.location

    def _sql_table(self) -> str | None:
        if self.table:
            return self.table
        if "#" in self.location:
            return self.location.split("#", 1)[1] or None
        return None


@dataclass
class RawTable:
    """Raw columns of a source, and each row's position in it (for error messages)."""

    frame: pd.DataFrame
    source_row: pd.Series
    label: str
    empty_rows: int = 0  # blank lines (or lines of delimiters only) skipped, CSV only


def is_sql_url(location: str) -> bool:
    """True for SQLAlchemy URLs like ``postgresql+psycopg://user@host/db`` or ``sqlite:///x.db``."""
    head = location.split("://", 1)[0]
    return "://" in location and head.lower() not in {"file", "http", "https", "s3"} and len(head) > 1


def _format(spec: SourceSpec) -> str:
    if spec.format != "auto":
        return spec.format
    if is_sql_url(spec.location):
        return "sql"
    if spec.location.lower().endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def _existing_file(spec: SourceSpec) -> Path:
    path = Path(spec.location)
    if not path.exists():
        raise InputError(f"{spec.location}: file not found")
    if path.is_dir():
        raise InputError(f"{spec.location}: is a folder, expected a file")
    return path


def read_columns(spec: SourceSpec) -> list[str]:
    """The source's column names, checking that it can be read (and decoded) at all and that it
    has at least one data row (a header-only source fails here, before any output is written)."""
    fmt = _format(spec)
    if fmt == "sql":
        first = _read_sql(spec, limit=1)
        if first.frame.empty:
            raise InputError(f"{spec.label}: the table or query returned no rows")
        return list(first.frame.columns)
    path = _existing_file(spec)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names, rows = list(pq.read_schema(path).names), pq.read_metadata(path).num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        if rows == 0:
            raise InputError(f"{path}: the file has a header but no data rows")
        return names
    first = _read_csv(path, spec, nrows=1).frame
    if first.empty:
        raise InputError(f"{path}: the file has a header but no data rows")
    return list(first.columns)


def read_source(spec: SourceSpec) -> RawTable:
    """Read a whole source. Raises InputError naming the source on any read problem."""
    fmt = _format(spec)
    if fmt == "sql":
        return _read_sql(spec)
    path = _existing_file(spec)
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "csv":
        return _read_csv(path, spec)
    raise InputError(f"{spec.location}: unknown format {fmt!r} (use csv, parquet or sql)")


# -- CSV ---------------------------------------------------------------------------------------


def _detect_compression(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


@contextmanager
def _open_binary(path: Path, compression: str | None) -> Iterator[IO[bytes]]:
    if compression is None:
        with path.open("rb") as fh:
            yield fh
    elif compression == "gzip":
        with gzip.open(path, "rb") as gz:
            yield gz  # type: ignore[misc]
    elif compression == "bz2":
        with bz2.open(path, "rb") as fh:
            yield fh
    elif compression == "xz":
        with lzma.open(path, "rb") as fh:
            yield fh
    elif compression == "zip":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise InputError(f"{path}: a zip file must hold exactly one CSV, found {len(names)}")
            with zf.open(names[0]) as fh:
                yield fh
    else:
        raise InputError(f"{path}: compression {compression!r} is not supported "
                         "(use none, gzip, bz2, xz or zip)")


def _check_encoding(path: Path, compression: str | None, encoding: str) -> bytes:
    """Decode the whole file once; on failure name the line. Returns the first bytes for sniffing."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        raise InputError(f"{path}: unknown encoding {encoding!r}") from None
    head = b""
    line = 1
    try:
        with _open_binary(path, compression) as fh:
            while chunk := fh.read(1 << 20):
                if len(head) < _SNIFF_BYTES:
                    head += chunk[: _SNIFF_BYTES - len(head)]
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line += chunk[: exc.start].count(b"\n")
                    raise InputError(
                        f"{path}: line {line} is not valid {encoding} (byte 0x{chunk[exc.start]:02x});"
                        " set the source's encoding (for example encoding = \"latin-1\") in the "
                        "mapping file"
                    ) from None
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise InputError(f"{path}: cannot read the file ({exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the file ends in the middle of a {encoding} character") from None
    return head


def _read_csv(path: Path, spec: SourceSpec, nrows: int | None = None) -> RawTable:
    compression = spec.compression or _detect_compression(path)
    head = _check_encoding(path, compression, spec.encoding)
    if not head.strip():
        raise InputError(f"{path}: the file is empty (expected a header row and data rows)")
    text = head.decode(spec.encoding, errors="ignore")
    delimiter = spec.delimiter
    if delimiter is None:
        first_lines = "\n".join(text.splitlines()[:50])
        try:
            delimiter = csv.Sniffer().sniff(first_lines, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        with _open_binary(path, compression) as fh:
            frame = pd.read_csv(
                fh,
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=spec.encoding,
                nrows=nrows,
                skip_blank_lines=False,  # counted below, so that row numbers match the file
            )
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty (expected a header row and data rows)") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: not a well-formed CSV with delimiter {delimiter!r}: {exc}") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    # Data row n is file line n + 1 (after the header) when no field holds a line break.
    source_row = pd.Series(pd.RangeIndex(1, len(frame) + 1), index=frame.index)
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        frame, source_row = frame[~empty], source_row[~empty]
    return RawTable(frame=frame, source_row=source_row, label=str(path),
                    empty_rows=int(empty.sum()))


# -- Parquet -----------------------------------------------------------------------------------


def _read_parquet(path: Path) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    frame = table.to_pandas()
    source_row = pd.Series(pd.RangeIndex(1, len(frame) + 1), index=frame.index)
    return RawTable(frame=frame, source_row=source_row, label=str(path))


# -- SQL ---------------------------------------------------------------------------------------


def _read_sql(spec: SourceSpec, limit: int | None = None) -> RawTable:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    url = spec.location.split("#", 1)[0]
    table = spec._sql_table()
    if not spec.query and not table:
        raise InputError(
            f"{spec.label}: a SQL source needs a table (URL#table, or table = ... in the mapping) "
            "or a query"
        )
    if table and not spec.query and not all(part.isidentifier() for part in table.split(".")):
        raise InputError(f"{spec.label}: {table!r} is not a plain table name; use a query instead")
    # A query is always a subquery (one SELECT: no second statement, no data-modifying WITH)
    # and runs in a read-only transaction, so a mapping file cannot write to the shop's database.
    sql = spec.query.strip().rstrip(";") if spec.query else f"SELECT * FROM {table}"
    sql = f"SELECT * FROM ({sql}) AS recsys_source"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InputError(f"{spec.label}: not a usable SQLAlchemy URL ({exc})") from None
    try:
        with engine.connect() as conn:
            _read_only(conn, spec.label)
            frame = pd.read_sql(text(sql), conn)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:  # pandas wraps execution errors
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
        reason = str(getattr(cause, "orig", None) or cause or exc).strip().splitlines()[0]
        raise InputError(f"{spec.label}: the database refused the read: {reason}") from None
    finally:
        engine.dispose()
    source_row = pd.Series(pd.RangeIndex(1, len(frame) + 1), index=frame.index)
    return RawTable(frame=frame, source_row=source_row, label=spec.label)


def _read_only(conn: Connection, label: str) -> None:
    """Make the connection's transaction read-only (PostgreSQL, MySQL/MariaDB, SQLite)."""
    from sqlalchemy import text

    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SET TRANSACTION READ ONLY"))
    elif dialect == "sqlite":
        conn.execute(text("PRAGMA query_only = ON"))
    elif dialect in ("mysql", "mariadb"):
        conn.execute(text("SET SESSION TRANSACTION READ ONLY"))
    else:
        raise InputError(f"{label}: reading from {dialect} is not supported: recsys reads only "
                         "in read-only transactions (PostgreSQL, MySQL/MariaDB, SQLite); "
                         "export the table to CSV or Parquet instead")
