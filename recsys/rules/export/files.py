"""What every export writer shares: the rules as one flat text table, and writing to a
temporary sibling file renamed into place (a failed export never leaves half a file)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.errors import InputError
from recsys.rules.query import SIDES, check_rules, string_lists

__all__ = ["JOIN", "flat_rules", "target", "writing"]

#: Text between the items of one side of a rule in flat exports: "85123A + 21232".
JOIN = " + "
_LIST_COLUMNS = tuple(f"{side}{suffix}" for side in SIDES
                      for suffix in ("s", "_names", "_categories"))


def target(path: Path | str) -> Path:
    """The file to write, checked: its folder must exist and it must not be a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name inside it")
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist; "
                         "create it first or choose another path")
    return path


@contextmanager
def writing(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write to; rename it into place on success."""
    final = target(path)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _join(lists: pa.ListArray) -> pa.Array:
    """Each list as one string, items joined by `` + `` (missing items as empty text)."""
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    values = pc.fill_null(lists.flatten(), "")
    return pc.binary_join(pa.ListArray.from_arrays(offsets, values), JOIN)


def flat_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """One row per rule with its list columns as text ("85123A + 21232"), ids beside names,
    then every other column (counts and measures) unchanged."""
    check_rules(rules)
    present = [c for c in _LIST_COLUMNS if c in rules.columns]
    rest = [c for c in rules.columns if c not in present]
    out = pd.DataFrame(index=rules.index)
    for column in present:
        out[column] = pd.Series(pd.arrays.ArrowExtensionArray(_join(string_lists(rules[column]))),
                                index=rules.index)
    for column in rest:
        out[column] = rules[column]
    return out.reset_index(drop=True)
