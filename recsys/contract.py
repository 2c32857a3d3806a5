"""The data contract: the canonical tables (orders, events, catalog), their columns and types.

Every reader's output is mapped onto these names before validation; every job after ingest
reads only canonical tables from a data directory (``orders.parquet``, ``events.parquet``,
``catalog.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from recsys.errors import InputError

__all__ = [
    "TABLES",
    "TableName",
    "TableSpec",
    "KNOWN_EVENT_TYPES",
    "require_columns",
]

TableName = Literal["orders", "events", "catalog"]

ColumnKind = Literal["id", "timestamp", "number", "text", "bool", "event_type"]


@dataclass(frozen=True)
class TableSpec:
    """Columns of one canonical table: name -> kind, which are required, and defaults."""

    name: TableName
    columns: dict[str, ColumnKind]
    required: tuple[str, ...]
    defaults: dict[str, object]

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.required)


TABLES: dict[str, TableSpec] = {
    "orders": TableSpec(
        name="orders",
        columns={
            "order_id": "id",
            "product_id": "id",
            "customer_id": "id",
            "ordered_at": "timestamp",
            "quantity": "number",
            "unit_price": "number",
            "list_price": "number",  # the regular unit price, before any discount
            "discount": "number",  # the fraction of list_price taken off, 0..1
        },
        required=("order_id", "product_id"),
        defaults={"quantity": 1.0},
    ),
    "events": TableSpec(
        name="events",
        columns={
            "product_id": "id",
            "event_type": "event_type",
            "occurred_at": "timestamp",
            "session_id": "id",
            "customer_id": "id",
            "request_id": "id",
        },
        # session_id and/or customer_id: checked per row by validation.
        required=("product_id", "event_type", "occurred_at"),
        defaults={},
    ),
    "catalog": TableSpec(
        name="catalog",
        columns={
            "product_id": "id",
            "name": "text",
            "category": "text",
            "price": "number",
            "in_stock": "bool",
            "margin": "number",
            "brand": "text",
            "is_active": "bool",
            "durable": "bool",
        },
        required=("product_id",),
        defaults={"in_stock": True, "is_active": True},
    ),
}

KNOWN_EVENT_TYPES: tuple[str, ...] = (
    "view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "wishlist",
    "impression",
    "click",
)


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], *, table: str,
                    feature: str) -> None:
    """Fail clearly when ``feature`` needs optional ``columns`` that the ``table`` data lacks."""
    missing = [c for c in columns if c not in frame.columns or frame[c].isna().all()]
    if missing:
        raise InputError(
            f"{feature} needs column(s) {', '.join(missing)} in {table}, which the data does not "
            f"have; map them in the source's mapping file or turn {feature} off in the config"
        )
