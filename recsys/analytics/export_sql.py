"""Writes export-customers chunks to a SQL table through SQLAlchemy, in one transaction: the
table is created from the Arrow column types, then filled with COPY on PostgreSQL (CSV made by
pyarrow, no per-row Python) and with batched inserts elsewhere."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from recsys.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection

__all__ = ["write_sql"]


def _sql_types(schema: pa.Schema) -> dict[str, Any]:
    import pyarrow as pa
    from sqlalchemy import BigInteger, Boolean, Date, Float, Text

    out: dict[str, Any] = {}
    for field in schema:
        kind = field.type
        out[field.name] = (Boolean() if pa.types.is_boolean(kind)
                           else BigInteger() if pa.types.is_integer(kind)
                           else Float() if pa.types.is_floating(kind)
                           else Date() if pa.types.is_date(kind) else Text())
    return out


def _create(conn: Connection, table: str, schema: pa.Schema, if_exists: str) -> None:
    from sqlalchemy import Column, MetaData, Table, inspect

    if inspect(conn).has_table(table):
        if if_exists == "fail":
            raise InputError(f"export-customers: table {table!r} already exists; pass "
                             "--if-exists replace (drop it first) or append")
        if if_exists == "append":
            return
        Table(table, MetaData(), autoload_with=conn).drop(conn)
    types = _sql_types(schema)
    Table(table, MetaData(), *[Column(name, kind) for name, kind in types.items()]).create(conn)


def _copy(conn: Connection, table: str, chunk: pa.Table) -> None:
    import psycopg
    import pyarrow.csv as pacsv

    quote = conn.dialect.identifier_preparer.quote
    buffer = io.BytesIO()
    pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=False))
    columns = ", ".join(quote(c) for c in chunk.column_names)
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        sql = f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT csv)"
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(buffer.getvalue())
    except psycopg.Error as exc:
        raise InputError(f"export-customers: COPY into {table!r} failed: {exc}") from exc


def write_sql(tables: Iterator[pa.Table], location: str, if_exists: str) -> int:
    """Write the chunks to ``URL#table`` (created, replaced or appended to as ``if_exists``
    says); returns the number of rows written."""
    from sqlalchemy import MetaData, Table, create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    url, table = location.split("#", 1)
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InputError(f"export-customers: bad database URL {url!r}: {exc}") from exc
    rows = 0
    try:
        with engine.begin() as conn:
            target = None
            for chunk in tables:
                if target is None:
                    _create(conn, table, chunk.schema, if_exists)
                    target = Table(table, MetaData(), autoload_with=conn)
                if not chunk.num_rows:
                    continue
                if conn.dialect.name == "postgresql":
                    _copy(conn, table, chunk)
                else:
                    conn.execute(target.insert(), chunk.to_pylist())
                rows += chunk.num_rows
    except SQLAlchemyError as exc:
        raise InputError(f"export-customers: writing table {table!r} failed: "
                         f"{str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    return rows
