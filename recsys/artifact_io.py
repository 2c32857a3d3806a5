"""Artifact file formats: plain Parquet tables and ``.npz`` arrays (never pickle), and the
checksums a manifest records."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import ArtifactError, InputError

__all__ = ["sha256_file", "fingerprint_files", "save_npz", "load_npz", "map_npz",
           "save_parquet", "load_parquet"]

_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks. OSError propagates (e.g. missing file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(paths: Iterable[Path | str]) -> dict[str, dict[str, Any]]:
    """Fingerprint input files: {file name: {"sha256": hex, "bytes": size}} for a manifest."""
    out: dict[str, dict[str, Any]] = {}
    for raw in paths:
        path = Path(raw)
        if path.name in out:
            raise InputError(
                f"two input files are both named {path.name!r} ({path}); "
                "fingerprints are keyed by file name, so give them distinct names"
            )
        try:
            out[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        except OSError as exc:
            raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    return out


def save_npz(path: Path | str, **arrays: Any) -> None:
    """Write arrays to an uncompressed ``.npz`` at exactly ``path``; object arrays are refused."""
    converted: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ArtifactError(
                f"cannot save array {name!r} to {path}: dtype {arr.dtype} holds Python objects, "
                "which need pickle; convert it first (e.g. ids with .astype(str))"
            )
        converted[name] = arr
    # An open file keeps numpy from appending ".npz"; no object arrays reach it, so no pickle.
    with open(path, "wb") as f:
        np.savez(f, **converted)  # type: ignore[arg-type]


def save_parquet(frame: pd.DataFrame, path: Path | str, *,
                 row_group_size: int | None = None) -> None:
    """Write a table as plain Parquet (no pandas metadata, so list columns read back anywhere);
    small row groups let a reader stream a big table in bounded memory."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path, row_group_size=row_group_size)


def load_parquet(path: Path | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a table written by ``save_parquet``; list columns come back Arrow-backed.
    ``columns``: only these, of those the file has."""
    try:
        table = pq.read_table(path, columns=None if columns is None else [
            c for c in columns if c in pq.read_schema(path).names])
    except FileNotFoundError as exc:
        raise ArtifactError(f"table file {path} does not exist") from exc
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"table file {path} is not readable Parquet: {exc}") from exc
    nested = {f.type for f in table.schema if pa.types.is_list(f.type)}
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if t in nested else None)


def load_npz(path: Path | str, *, mmap: bool = False) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` with ``allow_pickle=False``: into memory, or with
    ``mmap`` memory-mapped read-only where the member is stored uncompressed (as ``save_npz``
    writes it), so that server workers share one copy of it."""
    if mmap:
        mapped = map_npz(path)
        if mapped is not None:
            return mapped
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ArtifactError(f"array file {path} does not exist") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"array file {path} is not a readable .npz archive: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ArtifactError(f"{path} holds a single .npy array, not an .npz archive")
    out: dict[str, np.ndarray] = {}
    with data:
        for key in data.files:
            try:
                out[key] = data[key]
            except ValueError as exc:
                raise ArtifactError(
                    f"array {key!r} in {path} cannot be loaded without pickle ({exc}); "
                    "artifacts hold plain numeric/string arrays only, re-create the file"
                ) from exc
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ArtifactError(f"array {key!r} in {path} is corrupt: {exc}") from exc
    return out


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra field length
_SMALL = 1 << 16  # members under this size are read, not mapped (a page table entry each)


def map_npz(path: Path | str) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` memory-mapped read-only; None when a member cannot be
    mapped (compressed, or a ``.npy`` format this reader does not know): read it instead."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
        out: dict[str, np.ndarray] = {}
        with path.open("rb") as fh:
            for info in members:
                if not info.filename.endswith(".npy") or info.compress_type != zipfile.ZIP_STORED:
                    return None
                fh.seek(info.header_offset)
                signature, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(30))
                if signature != b"PK\x03\x04":
                    return None
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    return None
                if dtype.hasobject:
                    raise ArtifactError(f"array {info.filename[:-4]!r} in {path} holds Python "
                                        "objects (needs pickle); re-create the file")
                order: Literal["C", "F"] = "F" if fortran else "C"
                size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if size < _SMALL:
                    arr = np.frombuffer(fh.read(size), dtype=dtype).reshape(shape, order=order)
                else:
                    arr = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                    order=order).view(np.ndarray)
                out[info.filename[:-4]] = arr
        return out
    except FileNotFoundError as exc:
        raise ArtifactError(f"array file {path} does not exist") from exc
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"array file {path} is not a readable .npz archive: {exc}") from exc
