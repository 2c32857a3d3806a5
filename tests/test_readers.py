"""Tests for the readers: CSV delimiter/compression/encoding detection, Parquet, SQLite."""

from __future__ import annotations

import bz2
import gzip
import lzma
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pytest

from recsys.errors import InputError
from recsys.readers import SourceSpec, is_sql_url, read_columns, read_source

ROWS = [["1001", "A1", "2.50"], ["1002", "B2", "3"], ["1003", "A1", "0.5"]]


def _csv_text(delimiter: str) -> str:
    lines = [delimiter.join(["order_id", "product_id", "unit_price"])]
    lines += [delimiter.join(r) for r in ROWS]
    return "\n".join(lines) + "\n"


def _assert_rows(spec: SourceSpec) -> None:
    raw = read_source(spec)
    assert list(raw.frame.columns) == ["order_id", "product_id", "unit_price"]
    assert raw.frame.to_numpy().tolist() == ROWS
    assert raw.source_row.tolist() == [1, 2, 3]
    assert read_columns(spec) == ["order_id", "product_id", "unit_price"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "orders.txt"
    path.write_text(_csv_text(delimiter), encoding="utf-8")
    _assert_rows(SourceSpec(str(path)))


def test_configured_delimiter_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id;product_id,unit_price\n1;A,2\n2;B,3\n", encoding="utf-8")
    by_comma = read_source(SourceSpec(str(path), delimiter=","))
    assert list(by_comma.frame.columns) == ["order_id;product_id", "unit_price"]
    by_semicolon = read_source(SourceSpec(str(path), delimiter=";"))
    assert list(by_semicolon.frame.columns) == ["order_id", "product_id,unit_price"]
    assert by_semicolon.frame["product_id,unit_price"].tolist() == ["A,2", "B,3"]


def _zip(data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("orders.csv", data)
    return buf.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress, "zip": _zip}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_compression_is_detected_from_content(tmp_path: Path, compression: str) -> None:
    # No telling file extension: detection must come from the magic bytes.
    path = tmp_path / "orders.data"
    path.write_bytes(COMPRESSORS[compression](_csv_text(";").encode("utf-8")))
    _assert_rows(SourceSpec(str(path)))


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_configured_compression(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"orders.{compression}"
    path.write_bytes(COMPRESSORS[compression](_csv_text("\t").encode("utf-8")))
    _assert_rows(SourceSpec(str(path), compression=compression, delimiter="\t"))


def test_zip_with_two_members_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", _csv_text(","))
        zf.writestr("b.csv", _csv_text(","))
    with pytest.raises(InputError, match=r"two\.zip.*exactly one CSV, found 2"):
        read_columns(SourceSpec(str(path)))


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(_csv_text(",").encode())[:20])
    with pytest.raises(InputError, match=r"broken\.csv\.gz: cannot read the file"):
        read_columns(SourceSpec(str(path)))


def test_latin1_bytes_read_as_utf8_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("order_id,product_id,name\n1,A,tea\n2,B,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: line 3 is not valid utf-8 \(byte 0xe9\)"):
        read_columns(SourceSpec(str(path)))
    with pytest.raises(InputError, match="line 3"):
        read_source(SourceSpec(str(path)))
    # With the right encoding configured it reads.
    raw = read_source(SourceSpec(str(path), encoding="latin-1"))
    assert raw.frame["name"].tolist() == ["tea", "café"]


def test_unknown_encoding_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(_csv_text(","))
    with pytest.raises(InputError, match="unknown encoding 'no-such-codec'"):
        read_columns(SourceSpec(str(path), encoding="no-such-codec"))


def test_utf8_bom_is_stripped_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv_text(",").encode())
    assert read_columns(SourceSpec(str(path)))[0] == "order_id"


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        read_columns(SourceSpec(str(path)))
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        read_source(SourceSpec(str(path)))


def test_header_only_file_is_rejected_up_front(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("order_id,product_id\n")
    with pytest.raises(InputError, match=r"header\.csv: the file has a header but no data rows"):
        read_columns(SourceSpec(str(path)))


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        read_columns(SourceSpec(str(tmp_path / "nope.csv")))
    with pytest.raises(InputError, match="is a folder"):
        read_source(SourceSpec(str(tmp_path)))


def test_unreadable_file_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root here, where chmod 000 does not stop reads: simulate the OS refusing.
    path = tmp_path / "locked.csv"
    path.write_text(_csv_text(","))
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> IO[Any]:
        if self.name == "locked.csv":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputError, match=r"locked\.csv: cannot read the file \(Permission denied\)"):
        read_columns(SourceSpec(str(path)))


def test_parquet_is_read_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    frame = pd.DataFrame({"order_id": [1, 2, 3], "product_id": ["A", "B", "C"],
                          "customer_id": [13085.0, None, 7.0]})
    frame.to_parquet(path, index=False)
    assert read_columns(SourceSpec(str(path))) == ["order_id", "product_id", "customer_id"]
    raw = read_source(SourceSpec(str(path)))
    assert raw.frame["order_id"].tolist() == [1, 2, 3]
    assert raw.source_row.tolist() == [1, 2, 3]
    assert raw.label == str(path)


def test_broken_and_empty_parquet(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        read_columns(SourceSpec(str(bad)))
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        read_source(SourceSpec(str(bad)))
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"order_id": pd.Series([], dtype="string"),
                  "product_id": pd.Series([], dtype="string")}).to_parquet(empty, index=False)
    with pytest.raises(InputError, match=r"empty\.parquet: the file has a header but no data rows"):
        read_columns(SourceSpec(str(empty)))


def _sqlite(tmp_path: Path) -> str:
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE orders (order_id INTEGER, product_id TEXT, unit_price REAL)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                    [(1, "A", 2.5), (None, "B", 1.0), (3, "C", -1.0)])
    con.execute("CREATE TABLE no_rows (order_id INTEGER, product_id TEXT)")
    con.commit()
    con.close()
    return f"sqlite:///{db}"


def test_sqlite_table_and_query(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    assert is_sql_url(url) and not is_sql_url(str(tmp_path / "x.csv"))
    raw = read_source(SourceSpec(f"{url}#orders"))
    assert raw.frame["product_id"].tolist() == ["A", "B", "C"]
    assert raw.source_row.tolist() == [1, 2, 3]
    assert raw.label.endswith("shop.db (orders)")
    assert read_columns(SourceSpec(f"{url}#orders")) == ["order_id", "product_id", "unit_price"]
    query = "SELECT product_id, unit_price FROM orders WHERE unit_price > 0 ORDER BY product_id"
    raw = read_source(SourceSpec(url, query=query))
    assert raw.frame.to_numpy().tolist() == [["A", 2.5], ["B", 1.0]]
    assert raw.label.endswith(f"({query})")


def test_sqlite_errors_are_input_errors(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    with pytest.raises(InputError, match=r"\(nope\): the database refused the read: no such table"):
        read_source(SourceSpec(f"{url}#nope"))
    with pytest.raises(InputError, match="no such table"):
        read_columns(SourceSpec(f"{url}#nope"))
    with pytest.raises(InputError, match="needs a table"):
        read_source(SourceSpec(url))
    with pytest.raises(InputError, match="not a plain table name"):
        read_source(SourceSpec(f"{url}#orders; DROP TABLE orders"))
    with pytest.raises(InputError, match="no rows"):
        read_columns(SourceSpec(f"{url}#no_rows"))
    with pytest.raises(InputError, match="not a usable SQLAlchemy URL"):
        read_source(SourceSpec("nosuchdialect://host/db#orders"))


def test_sql_label_hides_the_password() -> None:
    spec = SourceSpec("postgresql+psycopg://bob:s3cret@db.example/shop#orders")
    assert "s3cret" not in spec.label
    assert spec.label.endswith("(orders)")
