"""Column-mapping files: how one data source's columns and values map onto the data contract.

A mapping file is TOML with one optional section per table (``[orders]``, ``[events]``,
``[catalog]``). Each section may set reader options (encoding, delimiter, compression, table,
query), ``[TABLE.columns]`` (canonical name = source column) and value rules. Canonical columns
that are not mapped are looked up under their own name. ``[catalog_from_orders]`` derives the
catalog (names, prices, categories) from the order lines of an export that carries them
(:mod:`recsys.derive_catalog`). See ``configs/mappings/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from recsys.contract import KNOWN_EVENT_TYPES, TABLES
from recsys.errors import ConfigError, InputError
from recsys.tomlfile import load_toml_model

__all__ = ["TableMapping", "CatalogFromOrders", "SourceMapping", "load_mapping", "resolve_columns"]


class TableMapping(BaseModel):
    """How one table of a source is read and mapped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # reader options
    format: Literal["auto", "csv", "parquet", "sql"] = "auto"
    encoding: str = "utf-8"
    delimiter: str | None = None
    compression: Literal["gzip", "bz2", "xz", "zip"] | None = None
    table: str | None = None
    query: str | None = None
    # canonical column -> source column
    columns: dict[str, str] = {}
    # value rules
    cancellation_prefix: str | None = None
    non_product_codes: list[str] = []
    non_product_pattern: str | None = None
    date_format: str | None = None
    date_unit: Literal["s", "ms", "us", "ns"] | None = None
    event_types: dict[str, str] = {}
    # orders: the unit_price column holds the line's total (unit price x quantity), as in
    # exports with a "sales value" per line; the unit price is that total / quantity
    price_is_line_total: bool = False

    @field_validator("non_product_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("event_types")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value.values()) - set(KNOWN_EVENT_TYPES))
        if unknown:
            raise ValueError(
                f"maps to unknown event type(s) {unknown}; known: {list(KNOWN_EVENT_TYPES)}"
            )
        return {str(k).strip().lower(): v for k, v in value.items()}


class CatalogFromOrders(BaseModel):
    """Which order-line columns describe the product: the catalog derived from the orders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # orders source column; the product's most frequent value wins
    category: str | None = None  # orders source column; most frequent value, a path allowed
    price: Literal["latest", "median", "none"] = "median"  # of the accepted unit prices

    def source_columns(self) -> dict[str, str]:
        """Catalog column -> orders source column, for the text columns that are set."""
        return {k: v for k, v in (("name", self.name), ("category", self.category)) if v}


class SourceMapping(BaseModel):
    """A whole mapping file: one optional TableMapping per canonical table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    orders: TableMapping = TableMapping()
    events: TableMapping = TableMapping()
    catalog: TableMapping = TableMapping()
    catalog_from_orders: CatalogFromOrders | None = None

    def for_table(self, table: str) -> TableMapping:
        mapping: TableMapping = getattr(self, table)
        return mapping


def load_mapping(path: Path | str | None) -> SourceMapping:
    """Load and check a mapping file; None gives the identity mapping."""
    if path is None:
        return SourceMapping()
    path = Path(path)
    mapping = load_toml_model(path, SourceMapping, "mapping file", describe=_describe)
    for table in TABLES:
        unknown = sorted(set(mapping.for_table(table).columns) - set(TABLES[table].columns))
        if unknown:
            raise ConfigError(
                f"{path}: [{table}.columns] names unknown canonical column(s) {unknown}; "
                f"known: {list(TABLES[table].columns)}"
            )
    return mapping


def resolve_columns(table: str, mapping: TableMapping, available: list[str],
                    label: str) -> dict[str, str]:
    """Canonical column -> source column for the columns this source has.

    Raises InputError naming the file and column when a mapped column is absent or a required
    canonical column cannot be found.
    """
    spec = TABLES[table]
    present = set(available)
    resolved: dict[str, str] = {}
    for canonical in spec.columns:
        if canonical in mapping.columns:
            source = mapping.columns[canonical]
            if source not in present:
                raise InputError(
                    f"{label}: mapped column {source!r} (for {table}.{canonical}) is not in the "
                    f"file; its columns are {sorted(present)}"
                )
            resolved[canonical] = source
        elif canonical in present:
            resolved[canonical] = canonical
    missing = [c for c in spec.required if c not in resolved]
    if missing:
        raise InputError(
            f"{label}: required column(s) {missing} for {table} not found; the file has "
            f"{sorted(present)}. Map them in a mapping file ([{table}.columns] {missing[0]} = "
            "\"Your column\")"
        )
    if table == "events" and not ({"session_id", "customer_id"} & set(resolved)):
        raise InputError(
            f"{label}: events need a session_id or a customer_id column; the file has "
            f"{sorted(present)}"
        )
    return resolved


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
