"""The rules browser's table: one artifact version's rules as numpy columns, so filtering,
sorting and paging 300,000 rules takes milliseconds.

Loaded once per served version (``RulesCache``), the lookups on first use. Products are coded
0..P-1 in id order; each side of a rule is a flat array of product codes with the row each
belongs to, so "rules with a product in this set" is one vectorised lookup. Sort orders are
computed once per metric.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys import layout
from recsys.artifacts import ArtifactStore, load_parquet
from recsys.rules.mining import RULE_COLUMNS
from recsys.rules.query import in_category, string_lists
from recsys.serving.index import ServingIndex

__all__ = ["Metric", "METRICS", "Status", "STATUSES", "RuleBrowserQuery", "RuleStatuses",
           "RuleBrowserTable", "RulesCache", "PAGE_SIZE"]

Metric = Literal["lift", "confidence", "support", "count", "leverage", "conviction",
                 "zhangs_metric", "jaccard", "kulczynski", "fisher_p", "antecedent_count",
                 "consequent_count"]
METRICS: tuple[str, ...] = get_args(Metric)
Status = Literal["new", "approved", "rejected", "pinned"]
STATUSES: tuple[str, ...] = get_args(Status)
PAGE_SIZE = 50
BROWSED = ("antecedents", "consequents")  # the rules file's columns a page needs, and METRICS
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


class RuleBrowserQuery(BaseModel):
    """What the browser shows: a search, thresholds, a status, the sort and the page.

    ``q`` matches product ids and names (case-insensitive substring) on either side;
    ``category`` keeps rules with a product in that category path or below it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    q: str = Field("", max_length=128)
    category: str = Field("", max_length=256)
    min_support: float | None = Field(None, ge=0, le=1)
    min_confidence: float | None = Field(None, ge=0, le=1)
    min_lift: float | None = Field(None, ge=0)
    status: Status | Literal[""] = ""
    sort: Metric = "lift"
    order: Literal["desc", "asc"] = "desc"
    page: int = Field(1, ge=1, le=1_000_000)

    @field_validator("min_support", "min_confidence", "min_lift", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("q", "category", mode="after")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def fields(self, **changes: Any) -> dict[str, str]:
        """The non-default fields as text (for links and hidden form fields)."""
        defaults = RuleBrowserQuery().model_dump()
        values = {**{k: getattr(self, k) for k in defaults}, **changes}
        return {k: str(v) for k, v in values.items() if v != defaults[k] and v is not None}

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with ``changes`` (e.g. another page)."""
        return urlencode(self.fields(**changes))


@dataclass(frozen=True)
class RuleStatuses:
    """The rule decisions in force: the latest approve or reject per rule key, and the pins."""

    decided: dict[str, tuple[Status, dict[str, Any]]] = field(default_factory=dict)
    pins: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_decisions(cls, rows: list[dict[str, Any]]) -> RuleStatuses:
        """From the active decisions in id order (the store's ``list_decisions``)."""
        decided: dict[str, tuple[Status, dict[str, Any]]] = {}
        pins = []
        for row in rows:  # a merchandiser's decisions: thousands at most
            if row["kind"] == "approve_rule":
                decided[row["rule_key"]] = ("approved", row)
            elif row["kind"] == "block_rule":
                decided[row["rule_key"]] = ("rejected", row)
            elif row["kind"] == "pin":
                pins.append(row)
        return cls(decided, pins)


def _joined(lists: pa.ListArray, codes: np.ndarray, rows: np.ndarray,
            products: np.ndarray) -> pa.Array:
    """Each list's ids sorted and joined by '+' (one side of a rule key)."""
    order = np.lexsort((codes, rows))
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    values = pa.array(products[codes[order]], type=pa.string())
    return pc.binary_join(pa.ListArray.from_arrays(offsets, values), "+")


class RuleBrowserTable:
    """One version's rules (the ``rules.parquet`` rows, in file order) with lookup arrays.

    Only the metrics are read at construction: the first page (sorted by a metric) needs no
    more. The product codes, rule keys and key index are built on first use (a search, a
    decision, an export), so that a merchandiser's first page comes fast after a new version
    (issue 16: 95,000 rules of a real shop)."""

    def __init__(self, rules: pd.DataFrame, version: str, names: Mapping[str, str],
                 categories: Mapping[str, str],
                 rest: Callable[[], pd.DataFrame] | None = None) -> None:
        """``rest``: the rules' other columns (names and categories for the exports), read
        when first exported; without it ``rules`` has them all."""
        self.version = version
        self.frame = rules.reset_index(drop=True)
        self._rest = rest
        self._names_of = names
        self._categories_of = categories
        self.metrics = {m: self.frame[m].to_numpy(np.float64) for m in METRICS
                        if m in self.frame}
        self._orders: dict[tuple[str, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    @cached_property
    def _sides(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                              pa.ListArray, pa.ListArray]:
        """Products (sorted ids), each side's flat product codes and rule rows, and the sides
        as Arrow lists."""
        ant, con = string_lists(self.frame["antecedents"]), string_lists(
            self.frame["consequents"])
        ant_ids = ant.flatten().to_numpy(zero_copy_only=False)
        con_ids = con.flatten().to_numpy(zero_copy_only=False)
        codes, uniques = pd.factorize(np.concatenate([ant_ids, con_ids]), sort=True)
        return (np.asarray(uniques, dtype=object), codes[: len(ant_ids)], codes[len(ant_ids):],
                pc.list_parent_indices(ant).to_numpy(), pc.list_parent_indices(con).to_numpy(),
                ant, con)

    @property
    def products(self) -> np.ndarray:
        return self._sides[0]

    @property
    def ant_code(self) -> np.ndarray:
        return self._sides[1]

    @property
    def con_code(self) -> np.ndarray:
        return self._sides[2]

    @property
    def ant_row(self) -> np.ndarray:
        return self._sides[3]

    @property
    def con_row(self) -> np.ndarray:
        return self._sides[4]

    @cached_property
    def keys(self) -> np.ndarray:
        """Each rule's key (``recsys.serving.served_rules.rule_key``), by row."""
        ant, con = self._sides[5], self._sides[6]
        keys = pc.binary_join_element_wise(
            _joined(ant, self.ant_code, self.ant_row, self.products),
            _joined(con, self.con_code, self.con_row, self.products), "->")
        out: np.ndarray = keys.to_numpy(zero_copy_only=False)
        return out

    @cached_property
    def row_of_key(self) -> dict[str, int]:
        return {key: row for row, key in enumerate(self.keys.tolist())}

    @cached_property
    def names(self) -> pd.Series:
        """Each product's name (its id where the catalog has none), by product code."""
        return pd.Series([self._names_of.get(p, p) for p in self.products], dtype=object)

    @cached_property
    def categories(self) -> pd.Series:
        return pd.Series([self._categories_of.get(p, "") for p in self.products], dtype=object)

    @cached_property
    def _ant_by_code(self) -> np.ndarray:
        return np.argsort(self.ant_code, kind="stable")

    @cached_property
    def _con_by_code(self) -> np.ndarray:
        return np.argsort(self.con_code, kind="stable")

    def __len__(self) -> int:
        return len(self.frame)

    # -- lookups -----------------------------------------------------------------------------

    def code(self, product_id: str) -> int | None:
        at = int(np.searchsorted(self.products, product_id))
        return at if at < len(self.products) and self.products[at] == product_id else None

    def rows_with(self, product_id: str, side: Literal["antecedent", "consequent"]) -> np.ndarray:
        """Rows holding the product on that side (sorted row numbers)."""
        code = self.code(product_id)
        if code is None:
            return np.empty(0, dtype=np.int64)
        codes, by_code, rows = ((self.ant_code, self._ant_by_code, self.ant_row)
                                if side == "antecedent" else
                                (self.con_code, self._con_by_code, self.con_row))
        lo, hi = np.searchsorted(codes[by_code], [code, code + 1])
        return np.sort(rows[by_code[lo:hi]])

    def _rows_with_any(self, wanted: np.ndarray) -> np.ndarray:
        """Boolean mask of rules with a product of ``wanted`` (mask over products) on a side."""
        mask = np.zeros(len(self), dtype=bool)
        mask[self.ant_row[wanted[self.ant_code]]] = True
        mask[self.con_row[wanted[self.con_code]]] = True
        return mask

    def matching_products(self, text: str) -> np.ndarray:
        """Mask over products whose id or name contains ``text`` (case-insensitive)."""
        ids = pd.Series(self.products, dtype=object)
        return (ids.str.contains(text, case=False, regex=False) |
                self.names.str.contains(text, case=False, regex=False)).to_numpy(bool)

    def products_in_category(self, category: str) -> np.ndarray:
        """Mask over products in the category subtree (``recsys.rules.query.in_category``)."""
        return in_category(self.categories, [category])

    def statuses(self, decided: RuleStatuses) -> np.ndarray:
        """Status code per rule (index into STATUSES); rejected beats pinned beats approved."""
        out = np.zeros(len(self), dtype=np.int8)
        if not decided.decided and not decided.pins:
            return out
        rejected = []
        for key, (status, _) in decided.decided.items():
            row = self.row_of_key.get(key)
            if row is None:
                continue
            if status == "approved":
                out[row] = _STATUS_CODE["approved"]
            else:
                rejected.append(row)
        for pin in decided.pins:
            rows = np.intersect1d(self.rows_with(pin["seed_id"], "antecedent"),
                                  self.rows_with(pin["product_id"], "consequent"))
            out[rows] = _STATUS_CODE["pinned"]
        out[rejected] = _STATUS_CODE["rejected"]
        return out

    # -- the browser ---------------------------------------------------------------------------

    def _sorted(self, metric: str, descending: bool) -> np.ndarray:
        """All rows sorted by a metric (stable: ties in file order; NaN last), cached."""
        with self._lock:
            order = self._orders.get((metric, descending))
            if order is None:
                values = self.metrics[metric]
                order = np.argsort(-values if descending else values, kind="stable")
                self._orders[(metric, descending)] = order
            return order

    def select(self, rule_filter: RuleBrowserQuery, statuses: np.ndarray) -> np.ndarray:
        """The rows the filter keeps, in its sort order (``statuses`` from ``statuses()``)."""
        keep = np.ones(len(self), dtype=bool)
        if rule_filter.q:
            keep &= self._rows_with_any(self.matching_products(rule_filter.q))
        if rule_filter.category:
            keep &= self._rows_with_any(self.products_in_category(rule_filter.category))
        for metric, threshold in (("support", rule_filter.min_support),
                                  ("confidence", rule_filter.min_confidence),
                                  ("lift", rule_filter.min_lift)):
            if threshold is not None:
                keep &= self.metrics[metric] >= threshold
        if rule_filter.status:
            keep &= statuses == _STATUS_CODE[rule_filter.status]
        order = self._sorted(rule_filter.sort, rule_filter.order == "desc")
        return order[keep[order]]

    def describe(self, rows: np.ndarray, statuses: np.ndarray,
                 decided: RuleStatuses) -> list[dict[str, Any]]:
        """Display rows: sides as (id, name) pairs, the metrics, status and its decision."""
        frame = self.frame.iloc[rows]
        sides = {side: string_lists(frame[f"{side}s"]).to_pylist()
                 for side in ("antecedent", "consequent")}
        names = self._names_of
        out = []
        for i, row in enumerate(rows.tolist()):  # one page: at most PAGE_SIZE rows
            ant, con = sides["antecedent"][i], sides["consequent"][i]
            key = "+".join(sorted(ant)) + "->" + "+".join(sorted(con))  # as ``keys``
            status = STATUSES[statuses[row]]
            decision = decided.decided.get(key, (None, None))[1] if status in (
                "approved", "rejected") else None
            out.append({
                "key": key, "status": status, "decision": decision,
                "antecedents": [(p, names.get(p, p)) for p in ant],
                "consequents": [(p, names.get(p, p)) for p in con],
                **{m: float(self.metrics[m][row]) for m in self.metrics}})
        return out

    @cached_property
    def _whole(self) -> pd.DataFrame:
        """Every column of the rules file (``frame`` and the ``rest``), in file order."""
        if self._rest is None:
            return self.frame
        rest = self._rest().reset_index(drop=True)
        return pd.concat([self.frame, rest[[c for c in rest if c not in self.frame]]], axis=1)

    def export_frame(self, rows: np.ndarray, statuses: np.ndarray) -> pd.DataFrame:
        """The selected rules as the exporters take them, with their key and status."""
        frame = self._whole.iloc[rows].reset_index(drop=True)
        frame["rule_key"] = pd.array(self.keys[rows], dtype="string")
        frame["status"] = pd.array(np.asarray(STATUSES, dtype=object)[statuses[rows]],
                                   dtype="string")
        return frame


def _no_rules() -> pd.DataFrame:
    """An empty rules table (a version mined without the rules job)."""
    lists = pd.Series(pd.arrays.ArrowExtensionArray(pa.array([], pa.list_(pa.string()))))
    return pd.DataFrame({c: lists if c in ("antecedents", "consequents") else
                         pd.Series(dtype=np.float64) for c in RULE_COLUMNS})


class RulesCache:
    """The rules table of the version being served, loaded once when the version changes."""

    def __init__(self, artifacts_root: Path | str) -> None:
        self._store = ArtifactStore(artifacts_root)
        self._table: RuleBrowserTable | None = None
        self._lock = threading.Lock()

    def get(self, index: ServingIndex) -> RuleBrowserTable:
        with self._lock:
            if self._table is None or self._table.version != index.version:
                path = layout.RULES.at(self._store.path(index.version))
                if path.exists():  # what a page shows now; names, categories when exported
                    shown = list(BROWSED + tuple(m for m in METRICS if m not in BROWSED))
                    rules = load_parquet(path, columns=shown)
                    self._table = RuleBrowserTable(rules, index.version, index.names,
                                                   index.categories,
                                                   rest=lambda: load_parquet(path))
                else:
                    self._table = RuleBrowserTable(_no_rules(), index.version, index.names,
                                                   index.categories)
            return self._table
