"""Demo shop generator: a plausible online shop whose patterns are planted and known.

``generate_demo(out_dir, DemoSpec())`` writes four files into ``out_dir``:

- ``catalog.csv``  product_id, name, category, price, in_stock, margin, brand, is_active,
  durable
- ``orders.csv``   order_id, product_id, customer_id, ordered_at, quantity, unit_price
  (one row per order line)
- ``events.csv``   product_id, event_type, occurred_at, session_id, customer_id
- ``planted.json`` the planted truth below, so that tests and demos can check what the
  engine recovers.

Column names and their order are the data contract's (:mod:`recsys.contract`); timestamps are ISO
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
    upgrades
        ``{a: {b: p, ...}, ...}``: each product's up to three upgrades, the better models
        a shopper who looked at ``a`` buys instead: products of ``a``'s leaf, in stock and
        active, priced 1.1x to 2x ``a``'s price, the same brand first, then the next price
        tiers (closest price above); ``p`` (a seeded Dirichlet draw, largest first) is how
        likely an upgrader from ``a`` picks ``b``. A purchase session that buys an upgrade
        ``b`` first viewed (and did not buy) a product it upgrades with probability 0.35,
        drawn by that product's popularity times its ``p`` for ``b``: so "viewed a, bought
        a pricier b instead" concentrates on ``a``'s upgrades, as in a real shop, and not
        just on the category's best sellers. The upgrades draw from their own random
        stream: orders, catalog and every other event are what the same seed gave before
        (the upgrade views are added rows).
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
    ordered product (plus the substitute partner of an ordered substitute, a product an
    ordered upgrade upgrades, see above, and a few same-leaf products), adds each to the cart, and has one ``purchase`` event per order
    line at exactly the order's ``ordered_at``, under the order's customer_id. The other
    sessions only browse: a few views from one or two leaves (35% logged in), and 8% of
    views lead to an abandoned ``add_to_cart``.

Scale
    Orders and events are generated and appended in chunks of 100,000 orders, so large
    shops (``DemoSpec(orders=3_000_000, products=50_000, mean_lines=10)``) run in bounded
    memory; only per-order and per-session headers (a few ints each) are held in full.

Modules: ``spec`` (what is asked and planted), ``taxonomy``, ``shop`` (catalog and
customers), ``orders`` (orders and events), ``generate`` (writing), ``arrays`` (helpers).
"""

from recsys.demo.generate import generate_demo
from recsys.demo.spec import (
    CATALOG_COLUMNS,
    EVENT_COLUMNS,
    ORDER_COLUMNS,
    DemoSpec,
    DemoSummary,
    PlantedTruth,
)

__all__ = ["DemoSpec", "DemoSummary", "PlantedTruth", "generate_demo", "ORDER_COLUMNS",
           "EVENT_COLUMNS", "CATALOG_COLUMNS"]
