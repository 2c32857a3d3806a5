"""``generate_demo``: the shop written as CSV in chunks of orders (bounded memory),
deterministically, under temporary names renamed at the end."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from recsys.demo.arrays import Clock, break_dates, ids, money, null_where, run_starts, take
from recsys.demo.orders import Headers, browse_events, build_headers, order_lines, purchase_events
from recsys.demo.shop import Customers, Shop, build_customers, build_shop
from recsys.demo.spec import (
    CATALOG_COLUMNS,
    CHUNK_ORDERS,
    E_BAD_DATE,
    E_NO_PRODUCT,
    E_NO_SESSION,
    EVENT_COLUMNS,
    EVENT_DIRTY_KINDS,
    O_BAD_DATE,
    O_NEG_PRICE,
    O_NO_PRODUCT,
    O_ZERO_QTY,
    ORDER_COLUMNS,
    ORDER_DIRTY_KINDS,
    UPGRADE_STREAM,
    DemoSpec,
    DemoSummary,
)
from recsys.progress import progress_bar

__all__ = ["generate_demo"]


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


def _write_chunk(rng: np.random.Generator, up_rng: np.random.Generator, spec: DemoSpec,
                 shop: Shop, cust: Customers,
                 hdr: Headers, clock: Clock, lo: int, hi: int, b_lo: int, b_hi: int,
                 orders_out: _CsvOut, events_out: _CsvOut, dirty: dict[str, np.ndarray]) -> None:
    """Generate and append orders [lo, hi) and the sessions anchored in their time window."""
    o_cust, o_ts = hdr.o_cust[lo:hi], hdr.o_ts[lo:hi]
    order, product = order_lines(rng, spec, shop, cust, o_cust, hdr.o_sub[lo:hi])
    n_line = len(order)
    qty = 1 + (rng.random(n_line) < 0.12) * rng.geometric(0.55, n_line)
    cents = shop.price_cents[product]
    disc = np.where(rng.random(n_line) < 0.08, rng.choice([10, 15, 20, 25, 30], n_line), 0)
    cents = cents * (100 - disc) // 100

    # dirty order lines: a broken copy right after the first line of a chosen order
    src = np.flatnonzero(run_starts(order) & (hdr.o_dirty[lo:hi][order] >= 0))
    kind = np.insert(np.full(n_line, -1), src + 1, hdr.o_dirty[lo:hi][order[src]])
    order, product, qty, cents = (np.insert(a, src + 1, a[src])
                                  for a in (order, product, qty, cents))
    np.add.at(dirty["orders"], kind[kind >= 0], 1)
    qty[kind == O_ZERO_QTY] = 0
    cents[kind == O_NEG_PRICE] = -np.maximum(cents[kind == O_NEG_PRICE], 1)
    when = break_dates(rng, clock.iso(o_ts[order]), kind == O_BAD_DATE)
    width = max(7, len(str(spec.orders)))
    orders_out.write(pa.table({
        "order_id": ids("O", lo + order + 1, width),
        "product_id": take(shop.pid, np.where(kind == O_NO_PRODUCT, -1, product)),
        "customer_id": take(cust.cid, o_cust[order]),
        "ordered_at": when,
        "quantity": pa.array(qty.astype(np.int64)),
        "unit_price": money(cents),
    }, schema=_ORDER_SCHEMA))

    # events: purchase sessions of these orders, then browse sessions of this window
    clean = kind < 0
    o_sess = hdr.o_sess[lo:hi]
    has = clean & (o_sess[order] >= 0)
    pe = purchase_events(rng, shop, order[has], product[has], o_sess, o_ts, up_rng)
    be = browse_events(rng, shop, hdr.b_ts[b_lo:b_hi])
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
    when = break_dates(rng, clock.iso(e_ts), e_kind == E_BAD_DATE)
    anonymous = e_kind == E_NO_SESSION
    events_out.write(pa.table({
        "product_id": take(shop.pid, np.where(e_kind == E_NO_PRODUCT, -1, e_prod)),
        "event_type": _EVENT_TYPES.take(pa.array(e_type)),
        "occurred_at": when,
        "session_id": null_where(ids("S", sess + 1, max(7, len(str(hdr.n_sessions)))),
                                  anonymous),
        "customer_id": take(cust.cid, np.where(anonymous, -1, e_cust)),
    }, schema=_EVENT_SCHEMA))


def generate_demo(out_dir: Path, spec: DemoSpec, *, progress: bool = True) -> DemoSummary:
    """Write ``orders.csv``, ``events.csv``, ``catalog.csv`` and ``planted.json`` into out_dir.

    Deterministic: the same spec gives byte-identical files. Files are written under
    temporary names and renamed at the end, so a failed run leaves no partial demo.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    up_rng = np.random.default_rng([spec.seed, UPGRADE_STREAM, 1])  # the upgrade views
    clock = Clock(spec.start, spec.days)
    shop = build_shop(rng, spec)
    cust = build_customers(rng, spec, shop)
    hdr = build_headers(rng, spec, shop, cust, clock)

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
    bounds = np.arange(0, spec.orders, CHUNK_ORDERS)
    b_cut = np.searchsorted(hdr.b_ts, hdr.o_ts[bounds[1:]], side="left")
    b_lo = np.r_[0, b_cut]
    b_hi = np.r_[b_cut, len(hdr.b_ts)]
    try:
        for chunk, lo in progress_bar(enumerate(bounds.tolist()), desc="demo shop",
                                      unit="chunk", total=len(bounds), enabled=progress):
            hi = min(lo + CHUNK_ORDERS, spec.orders)
            _write_chunk(rng, up_rng, spec, shop, cust, hdr, clock, int(lo), int(hi),
                         int(b_lo[chunk]), int(b_hi[chunk]), orders_out, events_out, dirty)
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
