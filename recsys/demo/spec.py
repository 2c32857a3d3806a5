"""What a demo shop is asked for (``DemoSpec``), what it plants (``PlantedTruth``) and
what was written (``DemoSummary``); the file columns are the data contract's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from recsys.contract import TABLES
from recsys.errors import ConfigError

__all__ = ["ORDER_COLUMNS", "EVENT_COLUMNS", "CATALOG_COLUMNS", "ORDER_DIRTY_KINDS", "EVENT_DIRTY_KINDS", "BAD_DATES", "O_NO_PRODUCT", "O_BAD_DATE", "O_ZERO_QTY", "O_NEG_PRICE", "E_NO_PRODUCT", "E_BAD_DATE", "E_NO_SESSION", "CHUNK_ORDERS", "ZIPF_OFFSET", "GUEST_SHARE", "FAVOURITE_DEPT_SHARE", "CONSUMABLE_BASE_WEIGHT", "CONSUMABLE_SHARE", "REPLENISH_MAX_SHARE", "PURCHASE_SESSION_SHARE", "SUBSTITUTE_COVIEW", "UPGRADES_PER_PRODUCT", "UPGRADE_BAND", "UPGRADE_VIEW", "UPGRADE_STREAM", "DIRTY_ORDER_RATE", "DIRTY_EVENT_RATE", "DemoSpec", "PlantedTruth", "DemoSummary"]


# the demo's orders carry no discounts (list_price, discount are optional)
ORDER_COLUMNS = tuple(c for c in TABLES["orders"].columns if c not in ("list_price", "discount"))
# the demo's events answer no recommendation response, so they carry no request_id
EVENT_COLUMNS = tuple(c for c in TABLES["events"].columns if c != "request_id")
CATALOG_COLUMNS = tuple(TABLES["catalog"].columns)


ORDER_DIRTY_KINDS = ("empty_product_id", "unparseable_date", "zero_quantity",
                     "negative_unit_price")


EVENT_DIRTY_KINDS = ("empty_product_id", "unparseable_date", "no_session_or_customer")


BAD_DATES = ("31/02/2025 25:61", "2025-13-45T99:99:99", "yesterday")


O_NO_PRODUCT, O_BAD_DATE, O_ZERO_QTY, O_NEG_PRICE = range(len(ORDER_DIRTY_KINDS))


E_NO_PRODUCT, E_BAD_DATE, E_NO_SESSION = range(len(EVENT_DIRTY_KINDS))


CHUNK_ORDERS = 100_000


ZIPF_OFFSET = 5.0  # Zipf-Mandelbrot: weight = 1 / (rank + offset)


GUEST_SHARE = 0.10


FAVOURITE_DEPT_SHARE = 0.4


CONSUMABLE_BASE_WEIGHT = 0.3


CONSUMABLE_SHARE = 0.10


REPLENISH_MAX_SHARE = 0.25


PURCHASE_SESSION_SHARE = 0.5


SUBSTITUTE_COVIEW = 0.6


UPGRADES_PER_PRODUCT = 3  # a product's planted upgrades (fewer where its leaf has fewer)


UPGRADE_BAND = (1.1, 2.0)  # an upgrade costs this many times the product's price


UPGRADE_STREAM = 15  # the upgrades draw from their own random stream (seed, this): the
# rest of the shop is what the same seed gave before they were planted

UPGRADE_VIEW = 0.35  # the median upgrade: P(its purchase session viewed a product it upgrades)


DIRTY_ORDER_RATE = 0.001


DIRTY_EVENT_RATE = 0.0005


@dataclass(frozen=True)
class DemoSpec:
    """Size and shape of a demo shop; the defaults give the standard demo (a few seconds)."""

    orders: int = 20_000
    products: int = 300
    customers: int | None = None  # default: orders // 4 (repeat customers)
    seed: int = 42
    start: str = "2025-01-01"  # order dates span start .. start + days
    days: int = 365
    sessions: int | None = None  # view sessions; default orders * 1.5
    dirty_rows: bool = True  # a few counted bad rows the ingest must quarantine
    mean_lines: float = 2.5  # mean order lines per order (geometric)

    def __post_init__(self) -> None:
        problems = []
        if self.orders < 100:
            problems.append(f"orders={self.orders} (needs >= 100)")
        if self.products < 100:
            problems.append(f"products={self.products} (needs >= 100: two per leaf category "
                            "and room for the planted pairs)")
        if self.customers is not None and self.customers < 1:
            problems.append(f"customers={self.customers} (needs >= 1 or None)")
        if self.days < 28:
            problems.append(f"days={self.days} (needs >= 28)")
        if self.sessions is not None and self.sessions < 0:
            problems.append(f"sessions={self.sessions} (needs >= 0 or None)")
        if not 1.0 <= self.mean_lines <= 100.0:
            problems.append(f"mean_lines={self.mean_lines} (needs 1..100)")
        try:
            date.fromisoformat(self.start)
        except ValueError:
            problems.append(f"start={self.start!r} (needs an ISO date like 2025-01-01)")
        if problems:
            raise ConfigError("bad demo spec: " + "; ".join(problems))

    @property
    def n_customers(self) -> int:
        return self.customers if self.customers is not None else max(1, self.orders // 4)

    @property
    def n_sessions(self) -> int:
        return self.sessions if self.sessions is not None else round(self.orders * 1.5)


@dataclass(frozen=True)
class PlantedTruth:
    """What the generator planted; ``to_dict`` is the content of ``planted.json``."""

    complements: tuple[tuple[str, str], ...]
    substitutes: tuple[tuple[str, str], ...]
    consumables: dict[str, int]  # product_id -> repurchase cycle in days
    out_of_stock: tuple[str, ...]
    inactive: tuple[str, ...]
    dirty_rows: dict[str, dict[str, int]]  # file -> kind -> rows
    upgrades: dict[str, dict[str, float]]  # product_id -> its upgrades -> P(chosen)

    def to_dict(self) -> dict[str, object]:
        return {
            "complements": [list(p) for p in self.complements],
            "substitutes": [list(p) for p in self.substitutes],
            "consumables": dict(self.consumables),
            "out_of_stock": list(self.out_of_stock),
            "inactive": list(self.inactive),
            "dirty_rows": {k: dict(v) for k, v in self.dirty_rows.items()},
            "upgrades": {k: dict(v) for k, v in self.upgrades.items()},
        }

    @classmethod
    def load(cls, path: Path) -> PlantedTruth:
        """Read a ``planted.json`` written by :func:`generate_demo`."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            complements=tuple((a, b) for a, b in raw["complements"]),
            substitutes=tuple((a, b) for a, b in raw["substitutes"]),
            consumables={k: int(v) for k, v in raw["consumables"].items()},
            out_of_stock=tuple(raw["out_of_stock"]),
            inactive=tuple(raw["inactive"]),
            dirty_rows={k: {kk: int(vv) for kk, vv in v.items()}
                        for k, v in raw["dirty_rows"].items()},
            upgrades={k: {kk: float(vv) for kk, vv in v.items()}
                      for k, v in raw["upgrades"].items()},
        )


@dataclass(frozen=True)
class DemoSummary:
    """Where the demo files are, how many data rows each has (header excluded), the truth."""

    out_dir: Path
    paths: dict[str, Path]  # orders, events, catalog, planted
    rows: dict[str, int]  # orders (lines, dirty included), events, catalog
    orders: int  # distinct orders
    sessions: int
    customers: int
    planted: PlantedTruth
