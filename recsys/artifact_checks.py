"""Structural checks of an artifact version: what its checksums cannot tell.

A version whose files were replaced and re-hashed (or written by a buggy job) passes
``ArtifactStore.verify`` yet can crash a compiled kernel that trusts its arrays. These checks
read every file the server reads and compare it with the artifact layout: readable Parquet and
JSON, the columns the server uses, array shapes and dtypes, codes within the vocabulary
(``items.parquet``: n products; ``customers.parquet``: m customers) and finite scores.
``recsys artifacts verify`` and ``rollback`` run them; the server's loader calls them too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.artifacts import load_npz
from recsys.errors import ArtifactError

__all__ = ["NEIGHBOUR_TABLES", "check_version", "check_loads"]

NEIGHBOUR_TABLES = ("also_viewed", "bought_together", "bought_together_knn")
# the columns the server reads from each table (a missing optional table is no problem)
_COLUMNS = {
    "popular.parquet": ("scope", "product_id", "orders"),
    "catalog.parquet": ("product_id",),
    "rules.parquet": ("antecedents", "consequents", "confidence", "lift", "count"),
    "bundles.parquet": ("products", "count", "expected_gain", "anchor", "anchor_confidence"),
    "substitutes.parquet": ("product_a", "product_b"),
    "repurchase.parquet": ("product_id", "cycle_days"),
    "analytics/customer_segments.parquet": ("customer_id", "segment"),
}
_FINITE = {"catalog.parquet": ("price", "margin"), "rules.parquet": ("confidence", "lift"),
           "bundles.parquet": ("expected_gain", "anchor_confidence")}


class _Problems(list[str]):
    def need(self, ok: bool, message: str) -> bool:
        if not ok:
            self.append(message)
        return ok


def check_version(folder: Path) -> None:
    """Raise ArtifactError naming every structural problem of the version in ``folder``."""
    problems = _Problems()
    tables = {rel: _table(folder, rel, problems) for rel in _parquet_files(folder)}
    for rel in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json")):
        try:
            json.loads((folder / rel).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{rel}: not valid JSON ({exc})")
    n_items = _vocabulary_size(tables, "items.parquet", problems, required=True)
    n_customers = _vocabulary_size(tables, "customers.parquet", problems, required=False)
    for rel, columns in _COLUMNS.items():
        table = tables.get(rel)
        if table is not None:
            missing = [c for c in columns if c not in table.column_names]
            problems.need(not missing, f"{rel}: lacks column(s) {', '.join(missing)}")
            for column in _FINITE.get(rel, ()):
                if column in table.column_names:
                    _finite(rel, column, table.column(column), problems)
    _check_ranking(folder / "ranking.json", problems)
    if n_items is not None:
        for name in NEIGHBOUR_TABLES:
            if (folder / name).exists():
                _check_neighbours(folder / name, name, n_items, problems)
        _check_customer_model(folder, n_items, n_customers, problems)
    if problems:
        raise ArtifactError(f"artifact version at {folder} fails the structural checks: "
                            + "; ".join(problems))


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


def _parquet_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet"))


def _table(folder: Path, rel: str, problems: _Problems) -> pa.Table | None:
    try:
        return pq.read_table(folder / rel)
    except (OSError, pa.ArrowException) as exc:
        problems.append(f"{rel}: not readable Parquet ({exc})")
        return None


def _vocabulary_size(tables: dict[str, pa.Table | None], rel: str, problems: _Problems, *,
                     required: bool) -> int | None:
    if rel not in tables:
        problems.need(not required, f"{rel}: missing")
        return None
    table = tables[rel]
    if table is None:
        return None
    if not problems.need(table.column_names == ["id"] and pa.types.is_string(
            table.schema.field("id").type), f"{rel}: a vocabulary has one string column 'id'"):
        return None
    ids = table.column("id")
    problems.need(ids.null_count == 0, f"{rel}: {ids.null_count} empty ids")
    problems.need(len(pa.compute.unique(ids)) == len(ids), f"{rel}: ids are not unique")
    return len(ids)


def _finite(rel: str, column: str, values: pa.ChunkedArray, problems: _Problems) -> None:
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        problems.append(f"{rel}: column {column} is {values.type}, not numeric")
        return
    array = values.to_numpy(zero_copy_only=False).astype(float)  # nulls become NaN
    bad = int(np.isinf(array).sum()) + int(np.isnan(array).sum()) - values.null_count
    problems.need(bad == 0, f"{rel}: column {column} has {bad} infinite or NaN values")


def _check_ranking(path: Path, problems: _Problems) -> None:
    if not path.exists():
        return
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return  # named above
    ok = isinstance(weights, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        for v in weights.values())
    problems.need(ok, "ranking.json: must be an object of finite numbers")


def _array(check: Callable[[], Any], where: str, problems: _Problems) -> Any:
    try:
        return check()
    except (OSError, ValueError, ArtifactError) as exc:
        problems.append(f"{where}: cannot read ({exc})")
        return None


def _check_neighbours(folder: Path, name: str, n_items: int, problems: _Problems) -> None:
    def load(part: str) -> Callable[[], Any]:
        return lambda: np.load(folder / f"{part}.npy", mmap_mode="r", allow_pickle=False)

    arrays = {part: _array(load(part), f"{name}/{part}.npy", problems)
              for part in ("ids", "scores", "support")}
    ids, scores, support = arrays["ids"], arrays["scores"], arrays["support"]
    if ids is None or scores is None or support is None:
        return
    where = f"{name}/ids.npy"
    if not problems.need(ids.dtype == np.int32 and ids.ndim == 2 and ids.shape[0] == n_items,
                         f"{where}: {ids.dtype} {ids.shape}, expected int32 ({n_items}, k) "
                         f"for {n_items} products"):
        return
    problems.need(scores.dtype == np.float32 and scores.shape == ids.shape,
                  f"{name}/scores.npy: {scores.dtype} {scores.shape}, expected float32 "
                  f"{ids.shape}")
    problems.need(support.dtype.kind in "iu" and support.shape == ids.shape,
                  f"{name}/support.npy: {support.dtype} {support.shape}, expected integers "
                  f"{ids.shape}")
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        problems.need(low >= -1 and high < n_items,
                      f"{where}: codes {low}..{high} outside -1..{n_items - 1}")
    if scores.shape == ids.shape and scores.dtype.kind == "f":
        bad = int((~np.isfinite(scores)).sum())
        problems.need(bad == 0, f"{name}/scores.npy: {bad} infinite or NaN scores")


def _check_customer_model(folder: Path, n_items: int, n_customers: int | None,
                          problems: _Problems) -> None:
    present = [(folder / f).exists() for f in ("als.npz", "purchases.npz", "customers.parquet")]
    if not any(present):
        return
    if not problems.need(all(present), "als.npz, purchases.npz and customers.parquet go together"):
        return
    als = _array(lambda: load_npz(folder / "als.npz"), "als.npz", problems)
    bought = _array(lambda: load_npz(folder / "purchases.npz"), "purchases.npz", problems)
    if als is None or bought is None or n_customers is None:
        return
    missing = {"user_factors", "item_factors", "regularization", "alpha"} - set(als)
    missing |= {"indptr", "indices", "last_day"} - set(bought)
    if not problems.need(not missing, f"customer model lacks {', '.join(sorted(missing))}"):
        return
    users, items = als["user_factors"], als["item_factors"]
    problems.need(users.ndim == 2 and items.ndim == 2 and users.shape[0] == n_customers
                  and items.shape[0] == n_items and users.shape[1] == items.shape[1]
                  and users.dtype.kind == "f" and items.dtype.kind == "f",
                  f"als.npz: factors {users.shape} and {items.shape}, expected "
                  f"({n_customers}, f) and ({n_items}, f) floats")
    finite = all(np.isfinite(np.asarray(als[k], dtype=float)).all() for k in als)
    problems.need(finite, "als.npz: infinite or NaN values")
    indptr, indices, day = bought["indptr"], bought["indices"], bought["last_day"]
    ok = (indptr.ndim == 1 and len(indptr) == n_customers + 1 and indptr.dtype.kind in "iu"
          and indices.dtype.kind in "iu" and day.dtype.kind in "iu"
          and len(indptr) > 0 and indptr[0] == 0 and indptr[-1] == len(indices) == len(day)
          and bool((np.diff(indptr) >= 0).all()))
    if problems.need(ok, f"purchases.npz: indptr/indices/last_day do not form a "
                         f"{n_customers}-row CSR matrix"):
        problems.need(not len(indices) or (int(indices.min()) >= 0
                                           and int(indices.max()) < n_items),
                      f"purchases.npz: product codes outside 0..{n_items - 1}")
    for name, length in (("orders", len(indices)), ("durable", n_items)):
        if name in bought:
            problems.need(bought[name].shape == (length,),
                          f"purchases.npz: {name} has shape {bought[name].shape}, "
                          f"expected ({length},)")
