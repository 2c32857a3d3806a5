"""Vocabulary: external ids (strings) <-> contiguous integer codes 0..n-1, vectorised.

Codes follow the order of first appearance given to ``from_ids`` (or sorted, on request), are
stable once built, and are saved with every artifact as a one-column Parquet file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.errors import ArtifactError, UnknownIdError

__all__ = ["Vocabulary", "UnknownPolicy", "IdLookup"]

UnknownPolicy = Literal["error", "mask", "drop"]
"""What ``lookup`` does with ids the vocabulary lacks: raise UnknownIdError naming them;
return -1 in their place ("mask"); or leave them out ("drop", with ``return_mask``)."""


class Vocabulary:
    """An immutable mapping between external string ids and codes ``0..len-1``."""

    __slots__ = ("_index",)

    def __init__(self, ids: Iterable[str] | pd.Index) -> None:
        index = pd.Index(pd.array(list(ids) if not isinstance(ids, pd.Index) else ids,
                                  dtype="string"), dtype="string")
        if index.hasnans:
            raise ValueError("a vocabulary cannot hold missing ids")
        if not index.is_unique:
            dupes = index[index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"a vocabulary needs unique ids; duplicated: {dupes}")
        self._index = index

    @classmethod
    def from_ids(cls, ids: Iterable[str] | pd.Series, *, sort: bool = False) -> Vocabulary:
        """Build from ids with repeats (first appearance order, or sorted)."""
        series = pd.Series(ids, dtype="string").dropna()
        unique = pd.Index(series.unique(), dtype="string")
        return cls(unique.sort_values() if sort else unique)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __hash__(self) -> int:
        return hash(tuple(self._index))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    @property
    def ids(self) -> np.ndarray:
        """All ids as an object array of str, position = code."""
        return self._index.to_numpy(dtype=object)

    def lookup(self, ids: Iterable[str] | pd.Series | str, *,
               on_unknown: UnknownPolicy = "error") -> np.ndarray:
        """Codes (int64) for external ids, vectorised. See UnknownPolicy.

        The query is factorised first and only its distinct ids are looked up: order lines
        repeat few products, and hashing Arrow strings one by one is the slow part."""
        if isinstance(ids, str):
            ids = [ids]
        query = pd.Index(pd.array(list(ids) if not isinstance(ids, pd.Series) else ids,
                                  dtype="string"), dtype="string")
        positions, distinct = pd.factorize(query)  # missing ids: -1
        found = self._index.get_indexer(pd.Index(distinct, dtype="string")).astype(np.int64)
        codes = np.append(found, -1)[positions]
        unknown = codes < 0
        if unknown.any():
            if on_unknown == "error":
                missing = query[unknown].unique()
                shown = ", ".join(repr(x) for x in missing[:5].tolist())
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise UnknownIdError(f"{len(missing)} unknown id(s): {shown}{more}")
            if on_unknown == "drop":
                return codes[~unknown]
        return codes

    def decode(self, codes: np.ndarray | Iterable[int]) -> np.ndarray:
        """External ids (object array of str) for codes; raises IndexError for bad codes."""
        arr = np.asarray(codes, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise IndexError(f"codes must be in 0..{len(self) - 1}")
        return self.ids[arr]

    def save(self, path: Path | str) -> None:
        """Write as a one-column Parquet file (``id``), row position = code."""
        pq.write_table(pa.table({"id": pa.array(self.ids, type=pa.string())}), path)

    @classmethod
    def load(cls, path: Path | str) -> Vocabulary:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ArtifactError(f"{path}: cannot read vocabulary ({exc})") from None
        if table.column_names != ["id"]:
            raise ArtifactError(f"{path}: a vocabulary file has one column 'id'")
        return cls(pd.Index(table.column("id").to_pandas(), dtype="string"))


class IdLookup(Mapping[str, int]):
    """Distinct string ids -> their positions, held compactly: the UTF-8 bytes of each id in
    one sorted fixed-width array with the positions and byte lengths (a few bytes per id,
    found by binary search). A server keeps hundreds of thousands of customer ids this way,
    not as a dict (about 100 bytes and a Python object per id, private to every worker).

    Ids longer than ``max_width`` bytes (rare; they would widen every row) go to a dict."""

    __slots__ = ("_keys", "_codes", "_lengths", "_long")

    def __init__(self, ids: Iterable[str] | pd.Series | np.ndarray, *,
                 max_width: int = 64) -> None:
        utf8 = pa.array(ids if isinstance(ids, np.ndarray | pd.Series) else list(ids),
                        type=pa.string()).cast(pa.large_binary())
        if isinstance(utf8, pa.ChunkedArray):  # a pandas column read from a large Parquet file
            utf8 = utf8.combine_chunks()
        if utf8.null_count:
            raise ValueError("an id lookup cannot hold missing ids")
        _, offset_buffer, buffer = utf8.buffers()
        offsets = np.frombuffer(offset_buffer, np.int64)[utf8.offset:utf8.offset + len(utf8) + 1]
        lengths = np.diff(offsets)
        short = lengths <= max_width
        self._long = {utf8[i].as_py().decode(): i for i in np.flatnonzero(~short).tolist()}
        rows = np.flatnonzero(short)
        lens = lengths[rows]
        data = np.frombuffer(buffer, np.uint8) if buffer is not None else np.zeros(0, np.uint8)
        # byte j of kept id r sits at offsets[r] + j; laid out as one row per id, NUL padded
        row_of_byte = np.repeat(np.arange(len(rows)), lens)
        column = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        width = max(int(lens.max()) if len(lens) else 0, 1)
        matrix = np.zeros((len(rows), width), np.uint8)
        matrix[row_of_byte, column] = data[np.repeat(offsets[rows], lens) + column]
        keys = matrix.view(f"S{width}").ravel()
        order = np.lexsort((lens, keys))
        self._keys = keys[order]
        self._codes = rows[order].astype(np.int64 if len(utf8) >= 2**31 else np.int32)
        self._lengths = lens[order].astype(np.uint16 if max_width < 2**16 else np.int64)
        same = (self._keys[1:] == self._keys[:-1]) & (self._lengths[1:] == self._lengths[:-1])
        if same.any() or len(self._long) != int((~short).sum()):
            raise ValueError("an id lookup needs distinct ids")

    def get(self, key: object, default: int | None = None) -> int | None:  # type: ignore[override]
        if not isinstance(key, str):
            return default
        raw = key.encode("utf-8", "surrogatepass")
        if len(raw) > self._keys.itemsize:
            return self._long.get(key, default)
        stripped = raw.rstrip(b"\0")  # what a fixed-width bytes array hands back
        i = int(np.searchsorted(self._keys, stripped))
        while i < len(self._keys) and self._keys[i] == stripped:
            if self._lengths[i] == len(raw):
                return int(self._codes[i])
            i += 1
        return default

    def __getitem__(self, key: str) -> int:
        code = self.get(key)
        if code is None:
            raise KeyError(key)
        return code

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._keys) + len(self._long)

    def __iter__(self) -> Iterator[str]:
        for key, length in zip(self._keys.tolist(), self._lengths.tolist(), strict=True):
            yield key.ljust(length, b"\0").decode("utf-8", "surrogatepass")
        yield from self._long

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (the long ids' dict not counted)."""
        return self._keys.nbytes + self._codes.nbytes + self._lengths.nbytes
