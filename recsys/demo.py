"""Demo shop generator: a plausible online shop whose patterns are planted and known.

``generate_demo(out_dir, DemoSpec())`` writes four files into ``out_dir``:

- ``catalog.csv``  product_id, name, category, price, in_stock, margin, brand, is_active,
  durable
- ``orders.csv``   order_id, product_id, customer_id, ordered_at, quantity, unit_price
  (one row per order line)
- ``events.csv``   product_id, event_type, occurred_at, session_id, customer_id
- ``planted.json`` the planted truth below, so that tests and demos can check what the
  engine recovers.

Column names are the canonical ones of :mod:`recsys.contract`; timestamps are ISO
``2025-03-04T10:22:31`` (naive, shop-local); an empty id means "none" (guest checkout,
anonymous session). The same spec (seed included) gives byte-identical files.

The shop
    Five departments (Home, Electronics, Pets, Garden, Sports) and 41 leaf categories
    ("Home > Kitchen > Kettles"). Prices are log-normal per leaf; product popularity is
    Zipf-like (weight ``1 / (rank + 5)``). Customers have a tenure window inside the date
    range (about a third are one-off buyers active for under two weeks), a log-normal
    order frequency, and a favourite department that 40% of their basket lines come
    from. Every customer orders at least once where the order count allows; 10% of
    orders are guest checkouts (empty customer_id). Basket sizes are geometric with mean
    ``mean_lines``; 12% of lines have quantity > 1 and 8% are discounted by 10-30%.
    Order days follow a seasonal curve (weekend and November/December peaks), hours a
    daily curve (evening peak).

What is planted (and listed in ``planted.json``)
    complements
        ``[[a, b], ...]``, up to 20 pairs of products in different but related leaves
        (espresso machine -> descaler, smartphone -> case, bike -> helmet). Whenever ``a``
        is in an order, ``b`` is added with probability 0.4-0.6 (drawn per pair), so
        lift(a, b) is high and count(a, b) far above chance. Planted products get
        popularity ranks near the top (but not the very top), so each appears in well
        over 100 orders of the default demo.
    substitutes
        ``[[a, b], ...]``, up to 15 pairs of similar products in the same leaf (same
        product type, similar price). A session that views one views the other with
        probability 0.6, but no order contains both, so they are often co-viewed and
        never co-bought.
    consumables
        ``{product_id: cycle_days}``: every product in the consumable leaves (coffee beans,
        filters, detergent, batteries, ink, pet food, cat litter, plant food, protein),
        about 10% of the catalog, with a repurchase cycle of 14, 30 or 60 days set by its
        pack size. Subscribing customers re-buy it every ``cycle * (1 + N(0, 0.1))`` days
        (7% of cycles skipped) while they are active; these replenishment orders are at
        most a quarter of all orders. Consumables are otherwise drawn at 0.3x weight.
    out_of_stock, inactive
        About 5% of products have ``in_stock=false`` and 1% (at least two)
        ``is_active=false``; none of them is a planted complement or substitute.
    dirty_rows
        ``{"orders": {kind: count}, "events": {kind: count}}``: about 0.1% extra order
        lines and 0.05% extra events (at least one of each kind) that the ingest must
        quarantine. Each is a copy of a real row with one field broken; dropping them
        leaves the clean data. Order kinds: ``empty_product_id``, ``unparseable_date``
        (e.g. ``31/02/2025 25:61``), ``zero_quantity``, ``negative_unit_price``. Event
        kinds: ``empty_product_id``, ``unparseable_date``, ``no_session_or_customer``.

Sessions
    About half of the registered customers' orders come with a session: it views each
    ordered product (plus the substitute partner of an ordered substitute, plus a few
    same-leaf products), adds each to the cart, and has one ``purchase`` event per order
    line at exactly the order's ``ordered_at``, under the order's customer_id. The other
    sessions only browse: a few views from one or two leaves (35% logged in), and 8% of
    views lead to an abandoned ``add_to_cart``.

Scale
    Orders and events are generated and appended in chunks of 100,000 orders, so large
    shops (``DemoSpec(orders=3_000_000, products=50_000, mean_lines=10)``) run in bounded
    memory; only per-order and per-session headers (a few ints each) are held in full.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm import tqdm

from recsys.errors import ConfigError

__all__ = [
    "DemoSpec",
    "DemoSummary",
    "PlantedTruth",
    "generate_demo",
    "ORDER_COLUMNS",
    "EVENT_COLUMNS",
    "CATALOG_COLUMNS",
]

ORDER_COLUMNS = ("order_id", "product_id", "customer_id", "ordered_at", "quantity", "unit_price")
EVENT_COLUMNS = ("product_id", "event_type", "occurred_at", "session_id", "customer_id")
CATALOG_COLUMNS = (
    "product_id", "name", "category", "price", "in_stock", "margin", "brand", "is_active",
    "durable",
)

ORDER_DIRTY_KINDS = ("empty_product_id", "unparseable_date", "zero_quantity",
                     "negative_unit_price")
EVENT_DIRTY_KINDS = ("empty_product_id", "unparseable_date", "no_session_or_customer")
BAD_DATES = ("31/02/2025 25:61", "2025-13-45T99:99:99", "yesterday")
_O_NO_PRODUCT, _O_BAD_DATE, _O_ZERO_QTY, _O_NEG_PRICE = range(len(ORDER_DIRTY_KINDS))
_E_NO_PRODUCT, _E_BAD_DATE, _E_NO_SESSION = range(len(EVENT_DIRTY_KINDS))

_CHUNK_ORDERS = 100_000
_ZIPF_OFFSET = 5.0  # Zipf-Mandelbrot: weight = 1 / (rank + offset)
_GUEST_SHARE = 0.10
_FAVOURITE_DEPT_SHARE = 0.4
_CONSUMABLE_BASE_WEIGHT = 0.3
_CONSUMABLE_SHARE = 0.10
_REPLENISH_MAX_SHARE = 0.25
_PURCHASE_SESSION_SHARE = 0.5
_SUBSTITUTE_COVIEW = 0.6
_DIRTY_ORDER_RATE = 0.001
_DIRTY_EVENT_RATE = 0.0005


# --------------------------------------------------------------------------- taxonomy

_COLOURS = ("Black", "White", "Grey", "Blue", "Red", "Green", "Navy", "Sand")


@dataclass(frozen=True)
class _Leaf:
    """A leaf category: path, product nouns and variants, median price, catalog share."""

    path: str
    nouns: tuple[str, ...]
    variants: tuple[str, ...]
    price: float
    share: float = 1.0
    joiner: str = " - "
    cycles: tuple[int, ...] = ()  # consumables: repurchase days per variant (pack size)


_TAXONOMY: tuple[_Leaf, ...] = (
    # Home
    _Leaf("Home > Kitchen > Mugs", ("Ceramic Mug", "Travel Mug", "Espresso Cup", "Latte Mug"),
          _COLOURS, 12),
    _Leaf("Home > Kitchen > Kettles", ("Electric Kettle", "Glass Kettle", "Gooseneck Kettle"),
          ("1.0L", "1.5L", "1.7L"), 45, joiner=" "),
    _Leaf("Home > Kitchen > Coffee Machines",
          ("Espresso Machine", "Filter Coffee Maker", "Bean-to-Cup Machine", "Pod Machine"),
          ("Black", "Silver", "White"), 180),
    _Leaf("Home > Kitchen > Coffee Grinders", ("Burr Grinder", "Blade Grinder", "Hand Grinder"),
          ("Black", "Steel"), 60),
    _Leaf("Home > Pantry > Coffee Beans",
          ("Espresso Beans", "Filter Roast Beans", "Decaf Beans", "Single Origin Beans"),
          ("250g", "500g", "1kg"), 9, 0.9, " ", (14, 30, 60)),
    _Leaf("Home > Pantry > Coffee Filters", ("Paper Filters", "Cone Filters"),
          ("100 pack", "200 pack"), 4, 0.5, " ", (30, 60)),
    _Leaf("Home > Cleaning > Detergent",
          ("Laundry Detergent", "Dishwasher Tablets", "Washing-Up Liquid"),
          ("1L", "2L"), 7, 0.8, " ", (30, 60)),
    _Leaf("Home > Cleaning > Descalers", ("Descaler", "Descaling Tablets", "Kettle Descaler"),
          ("250ml", "500ml"), 9, joiner=" "),
    # Electronics
    _Leaf("Electronics > Phones > Smartphones", ("Nova Smartphone", "Pixelate Phone", "Orbit Phone"),
          ("64GB", "128GB", "256GB"), 450, joiner=" "),
    _Leaf("Electronics > Phones > Phone Cases",
          ("Silicone Case", "Leather Case", "Clear Case", "Rugged Case"), _COLOURS, 18),
    _Leaf("Electronics > Phones > Chargers", ("USB-C Charger", "Wireless Charger", "Car Charger"),
          ("20W", "30W", "65W"), 25, joiner=" "),
    _Leaf("Electronics > Audio > Headphones",
          ("Over-Ear Headphones", "Wireless Earbuds", "Noise-Cancelling Headphones"),
          ("Black", "White", "Blue"), 90),
    _Leaf("Electronics > Audio > Speakers", ("Bluetooth Speaker", "Smart Speaker", "Soundbar"),
          ("Black", "White", "Grey"), 80),
    _Leaf("Electronics > Computers > Laptops", ("Ultrabook", "Laptop", "Gaming Laptop"),
          ("13-inch", "14-inch", "15.6-inch"), 900, joiner=" "),
    _Leaf("Electronics > Computers > Laptop Bags",
          ("Laptop Sleeve", "Laptop Backpack", "Messenger Bag"), _COLOURS, 35),
    _Leaf("Electronics > Computers > Mice & Keyboards",
          ("Wireless Mouse", "Mechanical Keyboard", "Ergonomic Mouse", "Keyboard Combo"),
          ("Black", "White"), 30),
    _Leaf("Electronics > Computers > Printer Ink",
          ("Black Ink Cartridge", "Colour Ink Cartridge", "Toner Cartridge"),
          ("Standard", "XL"), 22, 0.7, " ", (30, 60)),
    _Leaf("Electronics > Accessories > Batteries", ("AA Batteries", "AAA Batteries"),
          ("4 pack", "12 pack"), 6, 0.5, " ", (30, 60)),
    # Pets
    _Leaf("Pets > Dogs > Dog Food", ("Adult Dog Food", "Puppy Food", "Grain-Free Dog Food"),
          ("2kg", "6kg", "12kg"), 14, 1.0, " ", (14, 30, 60)),
    _Leaf("Pets > Dogs > Leashes & Collars", ("Dog Leash", "Dog Collar", "Dog Harness"),
          _COLOURS, 20),
    _Leaf("Pets > Dogs > Dog Beds", ("Dog Bed", "Orthopedic Dog Bed", "Dog Cushion"),
          ("S", "M", "L"), 50, joiner=" "),
    _Leaf("Pets > Dogs > Dog Toys", ("Chew Toy", "Rope Toy", "Squeaky Ball"), _COLOURS, 9),
    _Leaf("Pets > Cats > Cat Food", ("Dry Cat Food", "Wet Cat Food Pouches", "Senior Cat Food"),
          ("1kg", "3kg", "7kg"), 10, 1.0, " ", (14, 30, 60)),
    _Leaf("Pets > Cats > Cat Litter", ("Clumping Litter", "Silica Litter", "Wood Litter"),
          ("5L", "10L", "20L"), 8, 0.8, " ", (14, 30, 60)),
    _Leaf("Pets > Cats > Litter Boxes", ("Litter Box", "Hooded Litter Box", "Corner Litter Box"),
          ("Grey", "White"), 35),
    _Leaf("Pets > Cats > Litter Accessories", ("Litter Mat", "Litter Scoop", "Litter Liners"),
          ("Grey", "Black"), 10),
    # Garden
    _Leaf("Garden > Tools > Lawn Mowers",
          ("Cordless Lawn Mower", "Petrol Lawn Mower", "Robot Mower"), ("32cm", "37cm", "42cm"),
          300, 0.8, " "),
    _Leaf("Garden > Tools > Mower Accessories", ("Replacement Blade", "Grass Catcher", "Mower Cover"),
          ("32cm", "37cm", "42cm"), 25, joiner=" "),
    _Leaf("Garden > Watering > Hoses", ("Garden Hose", "Expandable Hose", "Soaker Hose"),
          ("15m", "25m", "50m"), 30, joiner=" "),
    _Leaf("Garden > Watering > Hose Fittings", ("Spray Nozzle", "Hose Connector Set", "Hose Reel"),
          ("Green", "Black"), 12),
    _Leaf("Garden > Plants > Plant Food",
          ("Liquid Plant Feed", "Slow-Release Fertiliser", "Tomato Feed"), ("500ml", "1L"), 7,
          0.7, " ", (30, 60)),
    _Leaf("Garden > Outdoor Living > Barbecues", ("Charcoal Grill", "Gas Grill", "Kettle Barbecue"),
          ("Black", "Red"), 200, 0.8),
    _Leaf("Garden > Outdoor Living > Barbecue Tools",
          ("Grill Tool Set", "Grill Brush", "Meat Thermometer"), ("Steel", "Black"), 20),
    # Sports
    _Leaf("Sports > Fitness > Yoga Mats", ("Yoga Mat", "Travel Yoga Mat", "Thick Exercise Mat"),
          _COLOURS, 30),
    _Leaf("Sports > Fitness > Yoga Accessories", ("Yoga Block", "Yoga Strap", "Mat Bag"),
          _COLOURS, 12),
    _Leaf("Sports > Nutrition > Protein", ("Whey Protein", "Vegan Protein", "Protein Bars"),
          ("500g", "1kg", "2kg"), 18, 0.9, " ", (14, 30, 60)),
    _Leaf("Sports > Cycling > Bikes", ("Road Bike", "Mountain Bike", "City Bike", "E-Bike"),
          ("S", "M", "L"), 700, joiner=" "),
    _Leaf("Sports > Cycling > Helmets", ("Bike Helmet", "MTB Helmet"), ("S", "M", "L"), 60,
          joiner=" "),
    _Leaf("Sports > Cycling > Bike Lights", ("Bike Light Set", "Rear Light", "Front Light"),
          ("USB", "Battery"), 25, joiner=" "),
    _Leaf("Sports > Running > Running Shoes", ("Running Shoes", "Trail Running Shoes"),
          ("EU 40", "EU 42", "EU 44", "EU 46"), 110, joiner=" "),
    _Leaf("Sports > Running > Running Socks", ("Running Socks", "Compression Socks"),
          ("S", "M", "L"), 12, joiner=" "),
)

_BRANDS: dict[str, tuple[str, ...]] = {
    "Home": ("Nordhaus", "Casa Verde", "Brewline", "Kitchenly", "Hearth & Co", "Purelle"),
    "Electronics": ("Voltix", "Nimbus", "Quanta", "Orbitron", "Lumen", "Arcwave"),
    "Pets": ("Pawsome", "Whisker & Tail", "Barkley", "Furrendo", "Happy Paws", "Purrfect"),
    "Garden": ("Greenfield", "Rootwell", "Terra", "Bloomgard", "Yardline", "Verdant"),
    "Sports": ("Stridex", "Peakform", "Velotrek", "Zenflow", "Apexa", "Trailborn"),
}

# (leaf of a, leaf of b): b completes a; planted pairs cycle through this list.
_COMPLEMENT_LEAVES: tuple[tuple[str, str], ...] = (
    ("Coffee Machines", "Descalers"),
    ("Smartphones", "Phone Cases"),
    ("Laptops", "Laptop Bags"),
    ("Bikes", "Helmets"),
    ("Lawn Mowers", "Mower Accessories"),
    ("Hoses", "Hose Fittings"),
    ("Barbecues", "Barbecue Tools"),
    ("Yoga Mats", "Yoga Accessories"),
    ("Running Shoes", "Running Socks"),
    ("Litter Boxes", "Litter Accessories"),
    ("Kettles", "Descalers"),
    ("Smartphones", "Chargers"),
    ("Laptops", "Mice & Keyboards"),
    ("Bikes", "Bike Lights"),
    ("Dog Beds", "Dog Toys"),
    ("Coffee Machines", "Coffee Grinders"),
    ("Coffee Machines", "Mugs"),
    ("Headphones", "Chargers"),
    ("Leashes & Collars", "Dog Toys"),
    ("Kettles", "Mugs"),
)

_SUBSTITUTE_LEAVES: tuple[str, ...] = (
    "Kettles", "Headphones", "Speakers", "Coffee Machines", "Dog Beds", "Running Shoes",
    "Smartphones", "Coffee Grinders", "Yoga Mats", "Phone Cases", "Barbecues", "Laptop Bags",
    "Laptops", "Leashes & Collars", "Mugs",
)

_HOUR_WEIGHTS = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 1.0, 1.5, 1.8, 2.0, 2.2,
                          2.6, 2.5, 2.2, 2.1, 2.2, 2.5, 3.0, 3.5, 3.7, 3.2, 2.2, 1.2])
_WEEKDAY_WEIGHTS = np.array([1.0, 0.97, 0.97, 1.0, 1.05, 1.15, 1.2])  # Monday first
_MONTH_WEIGHTS = np.array([0.9, 0.85, 0.95, 0.95, 1.0, 0.95, 0.9, 0.9, 1.0, 1.05, 1.3, 1.45])


# --------------------------------------------------------------------------- public types

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

    def to_dict(self) -> dict[str, object]:
        return {
            "complements": [list(p) for p in self.complements],
            "substitutes": [list(p) for p in self.substitutes],
            "consumables": dict(self.consumables),
            "out_of_stock": list(self.out_of_stock),
            "inactive": list(self.inactive),
            "dirty_rows": {k: dict(v) for k, v in self.dirty_rows.items()},
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


# --------------------------------------------------------------------------- internals

class _Sampler:
    """Draws indices by weight within contiguous index segments ``[starts[s], ends[s])``."""

    def __init__(self, weights: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.cum = np.cumsum(weights, dtype=np.float64)
        c0 = np.concatenate([[0.0], self.cum])
        self.lo, self.hi = c0[starts], c0[ends]
        self.starts, self.ends = starts, ends

    def draw(self, rng: np.random.Generator, segments: np.ndarray) -> np.ndarray:
        x = self.lo[segments] + rng.random(len(segments)) * (self.hi[segments] - self.lo[segments])
        idx = np.searchsorted(self.cum, x, side="right")
        return np.clip(idx, self.starts[segments], self.ends[segments] - 1)


@dataclass
class _Shop:
    """The catalog as arrays over internal product index (products sorted by leaf)."""

    n: int
    leaf: np.ndarray  # (n,) leaf index
    pid: pa.Array  # (n,) product_id strings
    price_cents: np.ndarray
    cycle: np.ndarray  # (n,) repurchase days, 0 = not a consumable
    comp_partner: np.ndarray  # (n,) b for a planted a, else -1
    comp_prob: np.ndarray  # (n,) P(add b | a)
    sub_pair: np.ndarray  # (n,) substitute pair id or -1
    sub_side: np.ndarray  # (n,) 0 or 1 within its pair
    sub_partner: np.ndarray  # (n,) the other product of the pair or -1
    n_sub: int
    line_sampler: _Sampler  # segments: 0 = all, 1 + d = department d
    view_sampler: _Sampler  # segments: 0 = all, 1 + d = department, 1 + D + l = leaf l
    cons_sampler: _Sampler  # segment 0 = consumables (sqrt popularity)
    n_dept: int
    catalog: pa.Table
    planted: PlantedTruth  # dirty_rows still empty


@dataclass
class _Customers:
    """Customer arrays: active window (inclusive days), activity weight, favourite department."""

    n: int
    first: np.ndarray
    last: np.ndarray
    cum_weight: np.ndarray
    fav_dept: np.ndarray
    cid: pa.Array


def _allocate(total: int, shares: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` into integer parts >= minimum, proportional to shares (largest remainder)."""
    spare = total - minimum * len(shares)
    exact = spare * shares / shares.sum()
    parts = np.floor(exact).astype(np.int64)
    left = spare - parts.sum()
    parts[np.argsort(-(exact - parts), kind="stable")[:left]] += 1
    return parts + minimum


def _group_offsets(counts: np.ndarray) -> np.ndarray:
    """Position of each element within its group, for groups laid out by ``counts``."""
    starts = np.cumsum(counts) - counts
    return np.arange(counts.sum()) - np.repeat(starts, counts)


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal (sorted) keys starts."""
    return np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, e.g. O0000001."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width,
                          padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _money(cents: np.ndarray) -> pa.Array:
    """Integer cents -> "12.99" strings (sign kept)."""
    a = np.abs(cents)
    whole = pc.cast(pa.array(a // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(a % 100), pa.string()), width=2, padding="0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    if (cents < 0).any():
        text = pc.if_else(pa.array(cents < 0), pc.binary_join_element_wise("-", text, ""), text)
    return text


def _take(strings: pa.Array, idx: np.ndarray) -> pa.Array:
    """``strings[idx]`` with null (written as empty) where idx < 0."""
    return strings.take(pa.array(np.maximum(idx, 0), mask=idx < 0))


def _null_where(strings: pa.Array, mask: np.ndarray) -> pa.Array:
    """``strings`` with null (written as empty) where mask is true."""
    if not mask.any():
        return strings
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), strings)


def _break_dates(rng: np.random.Generator, when: pa.Array, mask: np.ndarray) -> pa.Array:
    """Replace the timestamps under ``mask`` with unparseable ones (dirty rows)."""
    if not mask.any():
        return when
    bad = pa.array(BAD_DATES).take(pa.array(rng.integers(0, len(BAD_DATES), int(mask.sum()))))
    return pc.replace_with_mask(when, pa.array(mask), bad)


class _Clock:
    """Seasonal day sampling and fast ISO formatting of second offsets from the start date."""

    _PAD = 2  # days of margin before/after the range (sessions cross midnight)

    def __init__(self, start: str, days: int) -> None:
        d0 = np.datetime64(start, "D")
        day = d0 + np.arange(days)
        weekday = (day.astype(np.int64) + 3) % 7
        month = day.astype("datetime64[M]").astype(np.int64) % 12
        w = _WEEKDAY_WEIGHTS[weekday] * _MONTH_WEIGHTS[month]
        self.cdf = np.concatenate([[0.0], np.cumsum(w)])
        self.days = days
        table = d0 + np.arange(-self._PAD, days + self._PAD)
        self.dates = pa.array(np.datetime_as_string(table, unit="D"))
        tod = np.datetime64("1970-01-01T00:00:00") + np.arange(86_400)
        self.times = pc.utf8_slice_codeunits(pa.array(np.datetime_as_string(tod, unit="s")), 10)
        self.hour_p = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

    def days_in(self, rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """One seasonal day per window ``[first, last]`` (inclusive day offsets)."""
        lo, hi = self.cdf[first], self.cdf[last + 1]
        x = lo + rng.random(len(first)) * (hi - lo)
        return np.clip(np.searchsorted(self.cdf, x, side="right") - 1, first, last)

    def seconds(self, rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
        """Second offsets for the given days, at shop-like hours."""
        hour = rng.choice(24, size=len(days), p=self.hour_p)
        return days.astype(np.int64) * 86_400 + hour * 3600 + rng.integers(0, 3600, len(days))

    def iso(self, seconds: np.ndarray) -> pa.Array:
        day, tod = np.divmod(seconds, 86_400)
        return pc.binary_join_element_wise(self.dates.take(pa.array(day + self._PAD)),
                                           self.times.take(pa.array(tod)), "")


def _build_shop(rng: np.random.Generator, spec: DemoSpec) -> _Shop:
    """Catalog, popularity and planted pairs; internal index is sorted by leaf."""
    n = spec.products
    leaves = _TAXONOMY
    n_leaf = len(leaves)
    depts = list(dict.fromkeys(lf.path.split(" > ")[0] for lf in leaves))
    leaf_dept = np.array([depts.index(lf.path.split(" > ")[0]) for lf in leaves])
    is_cons_leaf = np.array([bool(lf.cycles) for lf in leaves])
    shares = np.array([lf.share for lf in leaves])
    n_cons = max(2 * is_cons_leaf.sum(), round(_CONSUMABLE_SHARE * n))
    counts = np.zeros(n_leaf, np.int64)
    counts[is_cons_leaf] = _allocate(n_cons, shares[is_cons_leaf], minimum=2)
    counts[~is_cons_leaf] = _allocate(n - n_cons, shares[~is_cons_leaf], minimum=2)
    leaf = np.repeat(np.arange(n_leaf), counts)
    leaf_start = np.cumsum(counts) - counts
    leaf_end = leaf_start + counts
    dept = leaf_dept[leaf]

    # names: cycle through a leaf's (noun, variant) combinations before repeating one
    combo = np.empty(n, np.int64)
    for li, lf in enumerate(leaves):  # ~40 leaves
        n_combo = len(lf.nouns) * len(lf.variants)
        combo[leaf_start[li]:leaf_end[li]] = np.resize(rng.permutation(n_combo), counts[li])
    n_var = np.array([len(lf.variants) for lf in leaves])[leaf]
    noun_i, var_i = np.divmod(combo, n_var)
    series = _group_offsets(counts) // (np.array([len(lf.nouns) for lf in leaves])[leaf] * n_var)

    # prices: log-normal around the leaf median; packs scale it; consumables get a cycle
    median = np.array([lf.price for lf in leaves], dtype=np.float64)[leaf]
    pack = np.where(is_cons_leaf[leaf], 1.0 + 0.8 * var_i, 1.0)
    price = median * pack * np.exp(0.35 * rng.standard_normal(n))
    cycle = np.zeros(n, np.int64)
    for li in np.flatnonzero(is_cons_leaf).tolist():
        sl = slice(leaf_start[li], leaf_end[li])
        cycle[sl] = np.asarray(leaves[li].cycles)[var_i[sl]]

    # planted pairs (products disjoint, none consumable)
    leaf_by_name = {lf.path.split(" > ")[-1]: i for i, lf in enumerate(leaves)}
    used = np.zeros(n, bool)

    def pick(li: int) -> int:
        free = np.flatnonzero(~used[leaf_start[li]:leaf_end[li]]) + leaf_start[li]
        if len(free) == 0:
            return -1
        p = int(rng.choice(free))
        used[p] = True
        return p

    n_comp = min(len(_COMPLEMENT_LEAVES), n // 15)
    comps: list[tuple[int, int]] = []
    for la, lb in _COMPLEMENT_LEAVES[:n_comp]:
        a, b = pick(leaf_by_name[la]), pick(leaf_by_name[lb])
        if a >= 0 and b >= 0:
            comps.append((a, b))
    n_sub_target = min(len(_SUBSTITUTE_LEAVES), n // 20)
    subs: list[tuple[int, int]] = []
    for name in _SUBSTITUTE_LEAVES:
        if len(subs) == n_sub_target:
            break
        li = leaf_by_name[name]
        if (~used[leaf_start[li]:leaf_end[li]]).sum() >= 2:
            subs.append((pick(li), pick(li)))

    comp_partner = np.full(n, -1, np.int64)
    comp_prob = np.zeros(n)
    if comps:
        ca, cb = np.array(comps).T
        comp_partner[ca] = cb
        comp_prob[ca] = rng.uniform(0.4, 0.6, len(ca))
    sub_pair = np.full(n, -1, np.int64)
    sub_side = np.zeros(n, np.int64)
    sub_partner = np.full(n, -1, np.int64)
    if subs:
        sa, sb = np.array(subs).T
        sub_pair[sa] = sub_pair[sb] = np.arange(len(subs))
        sub_side[sb] = 1
        sub_partner[sa], sub_partner[sb] = sb, sa
        # similar products: same noun, a price within 15%
        noun_i[sb] = noun_i[sa]
        var_i[sb] = (var_i[sa] + 1) % n_var[sa]
        series[sb] = series[sa]
        price[sb] = price[sa] * rng.uniform(0.85, 1.15, len(sb))

    # popularity: Zipf over ranks; planted products take ranks just below the very top
    planted = np.flatnonzero(used)
    rank = np.empty(n, np.int64)
    head = np.arange(2, min(n, 2 + int(1.15 * len(planted)) + 1))
    planted_ranks = rng.choice(head, size=len(planted), replace=False)
    rank[planted] = planted_ranks
    rest = np.setdiff1d(np.arange(n), planted_ranks)
    rank[np.flatnonzero(~used)] = rng.permutation(rest)
    pop = 1.0 / (rank + _ZIPF_OFFSET)

    # availability, margins, brands, ids
    free = np.flatnonzero(~used)
    n_oos, n_inactive = round(0.05 * n), max(2, round(0.01 * n))
    chosen = rng.choice(free, size=n_oos + n_inactive, replace=False)
    in_stock = np.ones(n, bool)
    in_stock[chosen[:n_oos]] = False
    active = np.ones(n, bool)
    active[chosen[n_oos:]] = False
    margin = np.clip(rng.normal(0.22 + 0.25 * is_cons_leaf[leaf], 0.08), 0.10, 0.60)
    brand_table = pa.array([b for d in depts for b in _BRANDS[d]])
    n_brands = np.array([len(_BRANDS[d]) for d in depts])
    brand_i = np.cumsum(n_brands)[dept] - n_brands[dept] + rng.integers(0, n_brands[dept])

    pid_num = rng.permutation(n) + 1
    pid = _ids("P", pid_num, max(5, len(str(n))))
    cents = np.where(price >= 10, np.ceil(price) * 100 - 1, np.ceil(price * 10) * 10 - 1)
    cents = cents.astype(np.int64)

    noun_off = np.cumsum([len(lf.nouns) for lf in leaves]) - [len(lf.nouns) for lf in leaves]
    var_off = np.cumsum([len(lf.variants) for lf in leaves]) - [len(lf.variants) for lf in leaves]
    nouns = pa.array([w for lf in leaves for w in lf.nouns])
    variants = pa.array([w for lf in leaves for w in lf.variants])
    joiners = pa.array([lf.joiner for lf in leaves])
    suffixes = pa.array([""] + [f" Series {k + 1}" for k in range(1, int(series.max()) + 1)])
    name = pc.binary_join_element_wise(
        nouns.take(pa.array(noun_off[leaf] + noun_i)), joiners.take(pa.array(leaf)),
        variants.take(pa.array(var_off[leaf] + var_i)), suffixes.take(pa.array(series)), "")
    order = np.argsort(pid_num)
    catalog = pa.table({
        "product_id": pid.take(pa.array(order)),
        "name": name.take(pa.array(order)),
        "category": pa.array([lf.path for lf in leaves]).take(pa.array(leaf[order])),
        "price": _money(cents[order]),
        "in_stock": pa.array(in_stock[order]),
        "margin": _money(np.round(margin[order] * 100).astype(np.int64)),
        "brand": brand_table.take(pa.array(brand_i[order])),
        "is_active": pa.array(active[order]),
        "durable": pa.array(cycle[order] == 0),  # every product but the consumables lasts
    })

    # samplers: order lines (consumables damped), views, subscriptions
    n_dept = len(depts)
    dept_start = np.array([leaf_start[leaf_dept == d].min() for d in range(n_dept)])
    dept_end = np.array([leaf_end[leaf_dept == d].max() for d in range(n_dept)])
    starts = np.concatenate([[0], dept_start, leaf_start])
    ends = np.concatenate([[n], dept_end, leaf_end])
    line_w = pop * np.where(cycle > 0, _CONSUMABLE_BASE_WEIGHT, 1.0)
    cons = np.flatnonzero(cycle > 0)
    cons_w = np.zeros(n)
    cons_w[cons] = np.sqrt(pop[cons])
    cons_lo, cons_hi = np.array([cons.min()]), np.array([cons.max() + 1])

    pid_list = np.asarray(pid.to_pylist(), dtype=object)
    truth = PlantedTruth(
        complements=tuple((pid_list[a], pid_list[b]) for a, b in comps),
        substitutes=tuple((pid_list[a], pid_list[b]) for a, b in subs),
        consumables={pid_list[i]: int(cycle[i]) for i in cons[np.argsort(pid_num[cons])]},
        out_of_stock=tuple(sorted(pid_list[~in_stock])),
        inactive=tuple(sorted(pid_list[~active])),
        dirty_rows={},
    )
    return _Shop(
        n=n, leaf=leaf, pid=pid, price_cents=cents, cycle=cycle,
        comp_partner=comp_partner, comp_prob=comp_prob, sub_pair=sub_pair, sub_side=sub_side,
        sub_partner=sub_partner, n_sub=len(subs),
        line_sampler=_Sampler(line_w, starts, ends),
        view_sampler=_Sampler(pop, starts, ends),
        cons_sampler=_Sampler(cons_w, cons_lo, cons_hi),
        n_dept=n_dept, catalog=catalog, planted=truth,
    )


def _build_customers(rng: np.random.Generator, spec: DemoSpec, shop: _Shop) -> _Customers:
    """Tenure windows (a third one-off), log-normal frequency, favourite department."""
    n, days = spec.n_customers, spec.days
    one_off = rng.random(n) < 0.35
    tenure = np.where(one_off, rng.integers(1, 15, n), rng.integers(min(30, days), days + 1, n))
    # windows may start before or end after the range and are clipped: flat coverage
    first = np.floor(rng.random(n) * (days + tenure - 1)).astype(np.int64) - tenure + 1
    last = np.minimum(first + tenure - 1, days - 1)
    first = np.maximum(first, 0)
    weight = rng.lognormal(0.0, 0.8, n) * (last - first + 1)
    dept_mass = shop.view_sampler.hi[1:1 + shop.n_dept] - shop.view_sampler.lo[1:1 + shop.n_dept]
    fav = rng.choice(shop.n_dept, size=n, p=dept_mass / dept_mass.sum())
    return _Customers(n=n, first=first, last=last, cum_weight=np.cumsum(weight),
                      fav_dept=fav, cid=_ids("C", np.arange(1, n + 1), max(6, len(str(n)))))


def _draw_customers(rng: np.random.Generator, cust: _Customers, size: int) -> np.ndarray:
    """``size`` customer indices drawn by activity weight."""
    x = rng.random(size) * cust.cum_weight[-1]
    return np.minimum(np.searchsorted(cust.cum_weight, x, side="right"), cust.n - 1)


def _replenishments(rng: np.random.Generator, spec: DemoSpec, shop: _Shop,
                    cust: _Customers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consumable re-buys: (customer, day, product) per replenishment order, capped in number."""
    tenure = cust.last - cust.first + 1
    k = rng.poisson(0.7, cust.n) * (tenure >= 28)
    sc = np.repeat(np.arange(cust.n), k)
    sp = shop.cons_sampler.draw(rng, np.zeros(len(sc), np.int64))
    cyc = shop.cycle[sp].astype(np.float64)
    t0 = cust.first[sc] + np.floor(rng.random(len(sc)) * tenure[sc] * 0.5).astype(np.int64)
    kmax = (cust.last[sc] - t0) // np.floor(0.7 * cyc).astype(np.int64) + 1
    row = np.repeat(np.arange(len(sc)), kmax)
    gap = cyc[row] * (1.0 + 0.1 * rng.standard_normal(len(row)))
    gap = np.maximum(gap, 0.7 * cyc[row]) * np.where(rng.random(len(row)) < 0.07, 2.0, 1.0)
    pos = _group_offsets(kmax)
    gap[pos == 0] = 0.0
    csum = np.cumsum(gap)
    day = t0[row] + np.round(csum - np.repeat(csum[pos == 0], kmax)).astype(np.int64)
    keep = day <= cust.last[sc[row]]
    per_sub = np.bincount(row[keep], minlength=len(sc))
    cap = round(_REPLENISH_MAX_SHARE * spec.orders)
    perm = rng.permutation(len(sc))
    chosen = np.zeros(len(sc), bool)
    chosen[perm[np.cumsum(per_sub[perm]) <= cap]] = True
    keep &= chosen[row]
    return sc[row[keep]], day[keep], sp[row[keep]]


@dataclass
class _Headers:
    """Per-order and per-session headers (a few ints each), orders sorted by time."""

    o_cust: np.ndarray  # (orders,) customer index or -1 (guest)
    o_ts: np.ndarray  # (orders,) seconds from start
    o_sub: np.ndarray  # (orders,) replenished consumable or -1
    o_sess: np.ndarray  # (orders,) session number or -1
    b_no: np.ndarray  # browse sessions, sorted by start: session number
    b_cust: np.ndarray
    b_ts: np.ndarray
    b_dirty: np.ndarray  # (browse,) dirty event kind or -1
    o_dirty: np.ndarray  # (orders,) dirty order-line kind or -1
    n_sessions: int


def _build_headers(rng: np.random.Generator, spec: DemoSpec, shop: _Shop, cust: _Customers,
                   clock: _Clock) -> _Headers:
    """Who orders when (replenishments, registered, guests), sessions, and dirty-row picks."""
    n = spec.orders
    r_cust, r_day, r_prod = _replenishments(rng, spec, shop, cust)
    n_guest = round(_GUEST_SHARE * n)
    n_reg = n - n_guest - len(r_cust)
    if n_reg < 0:  # tiny specs: trim replenishments
        r_cust, r_day, r_prod = r_cust[:n - n_guest], r_day[:n - n_guest], r_prod[:n - n_guest]
        n_reg = 0
    everyone = np.arange(cust.n) if n_reg >= cust.n else np.empty(0, np.int64)
    b_cust = np.concatenate([everyone, _draw_customers(rng, cust, n_reg - len(everyone))])
    b_day = clock.days_in(rng, cust.first[b_cust], cust.last[b_cust])
    g_day = clock.days_in(rng, np.zeros(n_guest, np.int64), np.full(n_guest, spec.days - 1))
    o_cust = np.concatenate([r_cust, b_cust, np.full(n_guest, -1)])
    o_ts = clock.seconds(rng, np.concatenate([r_day, b_day, g_day]))
    o_sub = np.concatenate([r_prod, np.full(len(b_cust) + n_guest, -1)])
    order = np.argsort(o_ts, kind="stable")
    o_cust, o_ts, o_sub = o_cust[order], o_ts[order], o_sub[order]

    # sessions: purchase sessions for half the registered orders, the rest browse
    n_sess = spec.n_sessions
    registered = np.flatnonzero(o_cust >= 0)
    share = min(_PURCHASE_SESSION_SHARE, n_sess / max(1, len(registered)))
    with_sess = registered[rng.random(len(registered)) < share][:n_sess]
    n_browse = n_sess - len(with_sess)
    logged = rng.random(n_browse) < 0.35
    bc = np.where(logged, _draw_customers(rng, cust, n_browse), -1)
    first = np.where(logged, cust.first[np.maximum(bc, 0)], 0)
    last = np.where(logged, cust.last[np.maximum(bc, 0)], spec.days - 1)
    bts = clock.seconds(rng, clock.days_in(rng, first, last))
    anchor = np.concatenate([o_ts[with_sess], bts])
    number = np.empty(n_sess, np.int64)
    number[np.argsort(anchor, kind="stable")] = np.arange(n_sess)
    o_sess = np.full(n, -1, np.int64)
    o_sess[with_sess] = number[:len(with_sess)]
    b_order = np.argsort(bts, kind="stable")

    o_dirty = np.full(n, -1, np.int64)
    b_dirty = np.full(n_browse, -1, np.int64)
    if spec.dirty_rows:
        k = len(ORDER_DIRTY_KINDS)
        d = min(n, max(k, round(_DIRTY_ORDER_RATE * n * spec.mean_lines)))
        o_dirty[rng.choice(n, size=d, replace=False)] = rng.permutation(np.arange(d) % k)
        k = len(EVENT_DIRTY_KINDS)
        d = min(n_browse, max(k, round(_DIRTY_EVENT_RATE * n_sess * 5)))
        b_dirty[rng.choice(n_browse, size=d, replace=False)] = rng.permutation(np.arange(d) % k)
    return _Headers(o_cust=o_cust, o_ts=o_ts, o_sub=o_sub, o_sess=o_sess,
                    b_no=number[len(with_sess):][b_order], b_cust=bc[b_order], b_ts=bts[b_order],
                    b_dirty=b_dirty, o_dirty=o_dirty, n_sessions=n_sess)


def _order_lines(rng: np.random.Generator, spec: DemoSpec, shop: _Shop, cust: _Customers,
                 o_cust: np.ndarray, o_sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lines (order index within the chunk, product) of a chunk of orders, in basket order."""
    m = len(o_cust)
    draws = rng.geometric(1.0 / spec.mean_lines, m) - (o_sub >= 0)
    order = np.repeat(np.arange(m), draws)
    seq = _group_offsets(draws).astype(np.float64)
    c = o_cust[order]
    fav = (c >= 0) & (rng.random(len(order)) < _FAVOURITE_DEPT_SHARE)
    seg = np.where(fav, 1 + cust.fav_dept[np.maximum(c, 0)], 0)
    product = shop.line_sampler.draw(rng, seg)
    rep = np.flatnonzero(o_sub >= 0)  # the replenished consumable leads its basket
    order = np.concatenate([order, rep])
    product = np.concatenate([product, o_sub[rep]])
    seq = np.concatenate([seq, np.full(len(rep), -1.0)])
    partner = shop.comp_partner[product]
    add = (partner >= 0) & (rng.random(len(product)) < shop.comp_prob[product])
    order = np.concatenate([order, order[add]])
    product = np.concatenate([product, partner[add]])
    seq = np.concatenate([seq, seq[add] + 0.5])

    idx = np.lexsort((seq, order))
    order, product = order[idx], product[idx]
    _, first = np.unique(order * shop.n + product, return_index=True)
    keep = np.zeros(len(order), bool)
    keep[first] = True
    pair = shop.sub_pair[product]
    key = np.where(pair >= 0, order * max(1, shop.n_sub) + pair, -1)
    uniq, inv, cnt = np.unique(np.where(keep, key, -1), return_inverse=True, return_counts=True)
    both = (uniq >= 0)[inv] & (cnt[inv] >= 2)
    keep &= ~(both & (shop.sub_side[product] == 1))  # never both substitutes in one order
    return order[keep], product[keep]


def _purchase_events(rng: np.random.Generator, shop: _Shop, order: np.ndarray,
                     product: np.ndarray, sess: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
    """Events of purchase sessions: views, carts and one purchase per line at the order time.

    ``order``/``product`` are the chunk's lines of orders with a session; ``sess``/``ts`` are
    per chunk order (session number, order time).
    """
    n_line = len(order)
    r = rng.random(n_line)
    is_sub = shop.sub_partner[product] >= 0
    cmp_ = is_sub & (rng.random(n_line) < _SUBSTITUTE_COVIEW)
    orders_u, first_line = np.unique(order, return_index=True)
    n_extra = rng.geometric(0.5, len(orders_u)) - 1
    extra_order = np.repeat(orders_u, n_extra)
    extra_leaf = shop.leaf[np.repeat(product[first_line], n_extra)]
    extra_prod = shop.view_sampler.draw(rng, 1 + shop.n_dept + extra_leaf)

    e_order = np.concatenate([order, order, order[cmp_], extra_order])
    e_prod = np.concatenate([product, product, shop.sub_partner[product[cmp_]], extra_prod])
    e_type = np.concatenate([np.zeros(n_line), np.ones(n_line), np.zeros(cmp_.sum()),
                             np.zeros(len(extra_order))]).astype(np.int64)
    e_key = np.concatenate([r, r + (1 - r) * rng.random(n_line), rng.random(cmp_.sum()),
                            rng.random(len(extra_order))])
    idx = np.lexsort((e_key, e_order))
    e_order, e_prod, e_type = e_order[idx], e_prod[idx], e_type[idx]
    gap = 10 + rng.exponential(60.0, len(e_order)).astype(np.int64)
    csum = np.cumsum(gap)
    first = np.flatnonzero(_run_starts(e_order))
    last = np.r_[first[1:], len(e_order)][: len(first)] - 1
    end = np.repeat(csum[last], last - first + 1)
    e_ts = ts[e_order] - (end - csum + gap)
    return {
        "order": np.concatenate([e_order, order]),
        "product": np.concatenate([e_prod, product]),
        "type": np.concatenate([e_type, np.full(n_line, 2)]),
        "ts": np.concatenate([e_ts, ts[order]]),
        "sess": sess[np.concatenate([e_order, order])],
    }


def _browse_events(rng: np.random.Generator, shop: _Shop,
                   ts: np.ndarray) -> dict[str, np.ndarray]:
    """Browse sessions starting at ``ts``: views from one or two leaves, substitute co-views,
    abandoned carts. ``sess`` in the result indexes ``ts``."""
    s = len(ts)
    n_view = rng.geometric(1 / 3.5, s)
    leaf1 = shop.leaf[shop.view_sampler.draw(rng, np.zeros(s, np.int64))]
    leaf2 = np.where(rng.random(s) < 0.3,
                     shop.leaf[shop.view_sampler.draw(rng, np.zeros(s, np.int64))], leaf1)
    sess = np.repeat(np.arange(s), n_view)
    leaf = np.where(rng.random(len(sess)) < 0.5, leaf1[sess], leaf2[sess])
    product = shop.view_sampler.draw(rng, 1 + shop.n_dept + leaf)
    key = _group_offsets(n_view).astype(np.float64)
    partner = shop.sub_partner[product]
    cov = (partner >= 0) & (rng.random(len(product)) < _SUBSTITUTE_COVIEW)
    cart = rng.random(len(product)) < 0.08
    e_sess = np.concatenate([sess, sess[cov], sess[cart]])
    e_prod = np.concatenate([product, partner[cov], product[cart]])
    e_type = np.concatenate([np.zeros(len(sess) + cov.sum(), np.int64),
                             np.ones(cart.sum(), np.int64)])
    e_key = np.concatenate([key, key[cov] + 0.5, key[cart] + 0.25])
    idx = np.lexsort((e_key, e_sess))
    e_sess, e_prod, e_type = e_sess[idx], e_prod[idx], e_type[idx]
    gap = 5 + rng.exponential(50.0, len(e_sess)).astype(np.int64)
    first = _run_starts(e_sess)
    gap[first] = 0
    csum = np.cumsum(gap)
    start = np.repeat(csum[first], np.diff(np.r_[np.flatnonzero(first), len(e_sess)]))
    return {"sess": e_sess, "product": e_prod, "type": e_type,
            "ts": ts[e_sess] + csum - start, "first": first}


class _CsvOut:
    """Appends Arrow tables to one CSV file: our own unquoted header, then unquoted rows."""

    def __init__(self, path: Path, columns: tuple[str, ...], schema: pa.Schema) -> None:
        self.sink = pa.OSFile(str(path), "wb")
        self.sink.write((",".join(columns) + "\n").encode())
        opts = pacsv.WriteOptions(include_header=False, quoting_style="none",
                                  batch_size=65_536)
        self.writer = pacsv.CSVWriter(self.sink, schema, write_options=opts)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


_ORDER_SCHEMA = pa.schema([(c, pa.int64() if c == "quantity" else pa.string())
                          for c in ORDER_COLUMNS])
_EVENT_SCHEMA = pa.schema([(c, pa.string()) for c in EVENT_COLUMNS])
_EVENT_TYPES = pa.array(["view", "add_to_cart", "purchase"])


def _write_chunk(rng: np.random.Generator, spec: DemoSpec, shop: _Shop, cust: _Customers,
                 hdr: _Headers, clock: _Clock, lo: int, hi: int, b_lo: int, b_hi: int,
                 orders_out: _CsvOut, events_out: _CsvOut, dirty: dict[str, np.ndarray]) -> None:
    """Generate and append orders [lo, hi) and the sessions anchored in their time window."""
    o_cust, o_ts = hdr.o_cust[lo:hi], hdr.o_ts[lo:hi]
    order, product = _order_lines(rng, spec, shop, cust, o_cust, hdr.o_sub[lo:hi])
    n_line = len(order)
    qty = 1 + (rng.random(n_line) < 0.12) * rng.geometric(0.55, n_line)
    cents = shop.price_cents[product]
    disc = np.where(rng.random(n_line) < 0.08, rng.choice([10, 15, 20, 25, 30], n_line), 0)
    cents = cents * (100 - disc) // 100

    # dirty order lines: a broken copy right after the first line of a chosen order
    src = np.flatnonzero(_run_starts(order) & (hdr.o_dirty[lo:hi][order] >= 0))
    kind = np.insert(np.full(n_line, -1), src + 1, hdr.o_dirty[lo:hi][order[src]])
    order, product, qty, cents = (np.insert(a, src + 1, a[src])
                                  for a in (order, product, qty, cents))
    np.add.at(dirty["orders"], kind[kind >= 0], 1)
    qty[kind == _O_ZERO_QTY] = 0
    cents[kind == _O_NEG_PRICE] = -np.maximum(cents[kind == _O_NEG_PRICE], 1)
    when = _break_dates(rng, clock.iso(o_ts[order]), kind == _O_BAD_DATE)
    width = max(7, len(str(spec.orders)))
    orders_out.write(pa.table({
        "order_id": _ids("O", lo + order + 1, width),
        "product_id": _take(shop.pid, np.where(kind == _O_NO_PRODUCT, -1, product)),
        "customer_id": _take(cust.cid, o_cust[order]),
        "ordered_at": when,
        "quantity": pa.array(qty.astype(np.int64)),
        "unit_price": _money(cents),
    }, schema=_ORDER_SCHEMA))

    # events: purchase sessions of these orders, then browse sessions of this window
    clean = kind < 0
    o_sess = hdr.o_sess[lo:hi]
    has = clean & (o_sess[order] >= 0)
    pe = _purchase_events(rng, shop, order[has], product[has], o_sess, o_ts)
    be = _browse_events(rng, shop, hdr.b_ts[b_lo:b_hi])
    # dirty events: a broken copy right after the first event of a chosen browse session
    b_dirty = hdr.b_dirty[b_lo:b_hi][be["sess"]]
    src = np.flatnonzero(be["first"] & (b_dirty >= 0))
    b_kind = np.insert(np.full(len(b_dirty), -1), src + 1, b_dirty[src])
    b_no, b_cust, b_prod, b_type, b_ts = (
        np.insert(a, src + 1, a[src])
        for a in (hdr.b_no[b_lo:b_hi][be["sess"]], hdr.b_cust[b_lo:b_hi][be["sess"]],
                  be["product"], be["type"], be["ts"]))
    sess = np.concatenate([pe["sess"], b_no])
    e_ts = np.concatenate([pe["ts"], b_ts])
    idx = np.lexsort((e_ts, sess))  # stable: a dirty copy stays right after its source
    e_prod = np.concatenate([pe["product"], b_prod])[idx]
    e_type = np.concatenate([pe["type"], b_type])[idx]
    e_cust = np.concatenate([o_cust[pe["order"]], b_cust])[idx]
    e_kind = np.concatenate([np.full(len(pe["sess"]), -1), b_kind])[idx]
    sess, e_ts = sess[idx], e_ts[idx]
    np.add.at(dirty["events"], e_kind[e_kind >= 0], 1)
    when = _break_dates(rng, clock.iso(e_ts), e_kind == _E_BAD_DATE)
    anonymous = e_kind == _E_NO_SESSION
    events_out.write(pa.table({
        "product_id": _take(shop.pid, np.where(e_kind == _E_NO_PRODUCT, -1, e_prod)),
        "event_type": _EVENT_TYPES.take(pa.array(e_type)),
        "occurred_at": when,
        "session_id": _null_where(_ids("S", sess + 1, max(7, len(str(hdr.n_sessions)))),
                                  anonymous),
        "customer_id": _take(cust.cid, np.where(anonymous, -1, e_cust)),
    }, schema=_EVENT_SCHEMA))


# --------------------------------------------------------------------------- entry point

def generate_demo(out_dir: Path, spec: DemoSpec, *, progress: bool = True) -> DemoSummary:
    """Write ``orders.csv``, ``events.csv``, ``catalog.csv`` and ``planted.json`` into out_dir.

    Deterministic: the same spec gives byte-identical files. Files are written under
    temporary names and renamed at the end, so a failed run leaves no partial demo.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    clock = _Clock(spec.start, spec.days)
    shop = _build_shop(rng, spec)
    cust = _build_customers(rng, spec, shop)
    hdr = _build_headers(rng, spec, shop, cust, clock)

    names = {"orders": "orders.csv", "events": "events.csv", "catalog": "catalog.csv",
             "planted": "planted.json"}
    paths = {k: out_dir / v for k, v in names.items()}
    tmp = {k: p.with_name(p.name + ".tmp") for k, p in paths.items()}
    dirty = {"orders": np.zeros(len(ORDER_DIRTY_KINDS), np.int64),
             "events": np.zeros(len(EVENT_DIRTY_KINDS), np.int64)}

    catalog_out = _CsvOut(tmp["catalog"], CATALOG_COLUMNS, shop.catalog.schema)
    catalog_out.write(shop.catalog)
    catalog_out.close()
    orders_out = _CsvOut(tmp["orders"], ORDER_COLUMNS, _ORDER_SCHEMA)
    events_out = _CsvOut(tmp["events"], EVENT_COLUMNS, _EVENT_SCHEMA)
    bounds = np.arange(0, spec.orders, _CHUNK_ORDERS)
    b_cut = np.searchsorted(hdr.b_ts, hdr.o_ts[bounds[1:]], side="left")
    b_lo = np.r_[0, b_cut]
    b_hi = np.r_[b_cut, len(hdr.b_ts)]
    try:
        with tqdm(total=len(bounds), desc="demo shop", unit="chunk", disable=not progress,
                  file=sys.stderr) as bar:
            for chunk, lo in enumerate(bounds.tolist()):  # a handful of chunks
                hi = min(lo + _CHUNK_ORDERS, spec.orders)
                _write_chunk(rng, spec, shop, cust, hdr, clock, int(lo), int(hi),
                             int(b_lo[chunk]), int(b_hi[chunk]), orders_out, events_out, dirty)
                bar.update(1)
    finally:
        orders_out.close()
        events_out.close()

    truth = replace(
        shop.planted,
        dirty_rows={
            "orders": {k: int(v) for k, v in zip(ORDER_DIRTY_KINDS, dirty["orders"], strict=True)
                       if v},
            "events": {k: int(v) for k, v in zip(EVENT_DIRTY_KINDS, dirty["events"], strict=True)
                       if v},
        },
    )
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in truth.to_dict().items())
    tmp["planted"].write_text("{\n" + body + "\n}\n", encoding="utf-8")  # one line per key
    for k in names:
        os.replace(tmp[k], paths[k])
    return DemoSummary(
        out_dir=out_dir, paths=paths,
        rows={"orders": orders_out.rows, "events": events_out.rows, "catalog": catalog_out.rows},
        orders=spec.orders, sessions=hdr.n_sessions, customers=cust.n, planted=truth,
    )
