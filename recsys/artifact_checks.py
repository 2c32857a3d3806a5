"""Structural checks of an artifact version: what its checksums cannot tell.

A version whose files were replaced and re-hashed (or written by a buggy job) passes
``ArtifactStore.verify`` yet can crash a compiled kernel that trusts its arrays. The declared
structure comes from ``recsys.layout`` (every file, its columns, dtypes and shapes, sizes that
must agree across files: ``items`` is the product vocabulary's length everywhere); these checks
add what a declaration cannot say: unique vocabularies, codes within the vocabulary, finite
scores, a well-formed purchase CSR. ``recsys artifacts verify`` and ``rollback`` run them; the
server's loader calls them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys import layout
from recsys.artifact_io import load_npz
from recsys.atomic_fs import LOCK_NAME
from recsys.errors import ArtifactError
from recsys.manifest import MANIFEST_NAME
from recsys.models.settings import DEFAULT_COLD_START_PRIOR_SCOPE, PriorScope

__all__ = ["check_version", "check_loads", "version_files"]

# numeric columns the server computes with: no NaN or infinity
_FINITE = ((layout.CATALOG, ("price", "margin")), (layout.RULES, ("confidence", "lift")),
           (layout.BUNDLES, ("expected_gain", "anchor_confidence")))


class _Problems(list[str]):
    def need(self, ok: bool, message: str) -> bool:
        if not ok:
            self.append(message)
        return ok


def version_files(folder: Path) -> list[str]:
    """The files of a version folder, relative POSIX paths, without manifest and lock."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name not in (MANIFEST_NAME, LOCK_NAME))


def check_version(folder: Path | str) -> None:
    """Raise ArtifactError naming every structural problem of the version in ``folder``."""
    folder = Path(folder)
    problems = _Problems(layout.check_version(folder, version_files(folder)))
    broken = {p.split(":", 1)[0] for p in problems}
    usable = {f.path for f in layout.FILES if f.at(folder).exists() and f.path not in broken}
    n_items = _vocabulary_size(folder, layout.ITEMS, usable, problems)
    n_customers = _vocabulary_size(folder, layout.CUSTOMERS, usable, problems)
    for entry, columns in _FINITE:
        if entry.path in usable:
            present = set(pq.read_schema(entry.at(folder)).names)
            table = pq.read_table(entry.at(folder), columns=[c for c in columns if c in present])
            for column in columns:
                if column in table.column_names:
                    _finite(entry.path, column, table.column(column), problems)
    for entry, numbers in ((layout.RANKING, layout.RANKING.keys),
                           (layout.COLD_START, ("cold_start_neighbours", "cold_start_prior"))):
        if entry.path not in usable:
            continue
        found = json.loads(entry.at(folder).read_text(encoding="utf-8"))
        weights = {k: v for k, v in found.items() if k in numbers}
        problems.need(all(isinstance(v, int | float) and not isinstance(v, bool)
                          and np.isfinite(v) and v >= 0 for v in weights.values()),
                      f"{entry.path}: the blend weights must be finite numbers, not below 0")
        if entry is layout.COLD_START:
            scope = found.get("cold_start_prior_scope", DEFAULT_COLD_START_PRIOR_SCOPE)
            problems.need(scope in get_args(PriorScope), f"{entry.path}: "
                          f"cold_start_prior_scope must be one of {get_args(PriorScope)}, not "
                          f"{scope!r}")
    if layout.SESSION_WEIGHTS.path in usable:
        _check_session_weights(folder, problems)
    if n_items is not None:
        for table in layout.NEIGHBOUR_TABLES:
            _check_neighbours(folder, table, n_items, usable, problems)
        _check_customer_model(folder, n_items, n_customers, usable, problems)
    if problems:
        raise ArtifactError(f"artifact version at {folder} fails the structural checks: "
                            + "; ".join(problems))


def _check_session_weights(folder: Path, problems: _Problems) -> None:
    """The session weights the API would apply: a weight a finite number not below 0, a
    decay in (0, 1], or null (not chosen)."""
    found = json.loads(layout.SESSION_WEIGHTS.at(folder).read_text(encoding="utf-8"))
    for placement, key, is_decay in (("bought_together", "session_weight", False),
                                     ("bought_together", "session_decay", True),
                                     ("cart", "line_decay", True)):
        chosen = found.get(placement)
        if not problems.need(isinstance(chosen, dict), f"{layout.SESSION_WEIGHTS.path}: "
                             f"{placement} must be an object, not {chosen!r}"):
            continue
        value = chosen.get(key)
        number = (isinstance(value, int | float) and not isinstance(value, bool)
                  and bool(np.isfinite(value)))
        problems.need(value is None or (number and (0 < value <= 1 if is_decay else value >= 0)),
                      f"{layout.SESSION_WEIGHTS.path}: {placement}.{key} must be "
                      f"{'in (0, 1]' if is_decay else 'a finite number not below 0'} or null, "
                      f"not {value!r}")


def check_loads(store_root: Path | str, version: str) -> None:
    """Checksums, structural checks, then the server's own loader: whatever fails is an
    ArtifactError with the reason (a version that does not load is no rollback target)."""
    from recsys.artifacts import ArtifactStore
    from recsys.serving.index import load_index

    store = ArtifactStore(store_root)
    store.verify(version)
    check_version(store.path(version))
    try:
        load_index(store_root, version)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - any load failure means: does not load
        raise ArtifactError(f"artifact version {version} does not load: "
                            f"{type(exc).__name__}: {exc}") from exc


def _vocabulary_size(folder: Path, entry: layout.ArtifactFile, usable: set[str],
                     problems: _Problems) -> int | None:
    if entry.path not in usable:
        return None
    ids = pq.read_table(entry.at(folder)).column("id")
    problems.need(ids.null_count == 0, f"{entry.path}: {ids.null_count} empty ids")
    problems.need(len(pc.unique(ids)) == len(ids), f"{entry.path}: ids are not unique")
    return len(ids)


def _finite(rel: str, column: str, values: pa.ChunkedArray, problems: _Problems) -> None:
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        return  # the layout names a wrong column type
    array = values.to_numpy(zero_copy_only=False).astype(float)  # nulls become NaN
    bad = int(np.isinf(array).sum()) + int(np.isnan(array).sum()) - values.null_count
    problems.need(bad == 0, f"{rel}: column {column} has {bad} infinite or NaN values")


def _check_neighbours(folder: Path, table: layout.NeighbourTable, n_items: int,
                      usable: set[str], problems: _Problems) -> None:
    files = {f.arrays[0].name: f for f in table.files}
    if not all(f.path in usable for f in files.values()):
        return
    ids = np.load(files["ids"].at(folder), mmap_mode="r", allow_pickle=False)
    scores = np.load(files["scores"].at(folder), mmap_mode="r", allow_pickle=False)
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        problems.need(low >= -1 and high < n_items,
                      f"{files['ids'].path}: codes {low}..{high} outside -1..{n_items - 1}")
    bad = int((~np.isfinite(scores)).sum())
    problems.need(bad == 0, f"{files['scores'].path}: {bad} infinite or NaN scores")


def _check_customer_model(folder: Path, n_items: int, n_customers: int | None,
                          usable: set[str], problems: _Problems) -> None:
    model = (layout.ALS, layout.PURCHASES, layout.CUSTOMERS)
    present = [f.at(folder).exists() for f in model]
    if not any(present):
        return
    if not problems.need(all(present), ", ".join(f.path for f in model) + " go together"):
        return
    if not all(f.path in usable for f in model) or n_customers is None:
        return
    # memory-mapped: a check reads the arrays once, without a private copy of each
    als = load_npz(layout.ALS.at(folder), mmap=True)
    problems.need(all(np.isfinite(v).all() for v in als.values() if v.dtype.kind in "fc"),
                  f"{layout.ALS.path}: infinite or NaN values")
    bought = load_npz(layout.PURCHASES.at(folder), mmap=True)
    indptr, indices = bought["indptr"], bought["indices"]
    ok = (len(indptr) > 0 and indptr[0] == 0 and indptr[-1] == len(indices)
          and bool((np.diff(indptr) >= 0).all()))
    if problems.need(ok, f"{layout.PURCHASES.path}: indptr does not delimit the "
                         f"{n_customers} customers' rows of indices"):
        problems.need(not len(indices) or (int(indices.min()) >= 0
                                           and int(indices.max()) < n_items),
                      f"{layout.PURCHASES.path}: product codes outside 0..{n_items - 1}")
