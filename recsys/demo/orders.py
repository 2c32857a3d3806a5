"""Order headers (who orders when, which sessions), order lines with the planted
complements and replenishments, and the purchase and browse events of sessions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.demo.arrays import Clock, group_offsets, run_starts
from recsys.demo.shop import Customers, Shop, draw_customers, replenishments
from recsys.demo.spec import (
    DIRTY_EVENT_RATE,
    DIRTY_ORDER_RATE,
    EVENT_DIRTY_KINDS,
    FAVOURITE_DEPT_SHARE,
    GUEST_SHARE,
    ORDER_DIRTY_KINDS,
    PURCHASE_SESSION_SHARE,
    SUBSTITUTE_COVIEW,
    DemoSpec,
)

__all__ = ["Headers", "build_headers", "order_lines", "purchase_events", "browse_events"]


@dataclass
class Headers:
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


def build_headers(rng: np.random.Generator, spec: DemoSpec, shop: Shop, cust: Customers,
                   clock: Clock) -> Headers:
    """Who orders when (replenishments, registered, guests), sessions, and dirty-row picks."""
    n = spec.orders
    r_cust, r_day, r_prod = replenishments(rng, spec, shop, cust)
    n_guest = round(GUEST_SHARE * n)
    n_reg = n - n_guest - len(r_cust)
    if n_reg < 0:  # tiny specs: trim replenishments
        r_cust, r_day, r_prod = r_cust[:n - n_guest], r_day[:n - n_guest], r_prod[:n - n_guest]
        n_reg = 0
    everyone = np.arange(cust.n) if n_reg >= cust.n else np.empty(0, np.int64)
    b_cust = np.concatenate([everyone, draw_customers(rng, cust, n_reg - len(everyone))])
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
    share = min(PURCHASE_SESSION_SHARE, n_sess / max(1, len(registered)))
    with_sess = registered[rng.random(len(registered)) < share][:n_sess]
    n_browse = n_sess - len(with_sess)
    logged = rng.random(n_browse) < 0.35
    bc = np.where(logged, draw_customers(rng, cust, n_browse), -1)
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
        d = min(n, max(k, round(DIRTY_ORDER_RATE * n * spec.mean_lines)))
        o_dirty[rng.choice(n, size=d, replace=False)] = rng.permutation(np.arange(d) % k)
        k = len(EVENT_DIRTY_KINDS)
        d = min(n_browse, max(k, round(DIRTY_EVENT_RATE * n_sess * 5)))
        b_dirty[rng.choice(n_browse, size=d, replace=False)] = rng.permutation(np.arange(d) % k)
    return Headers(o_cust=o_cust, o_ts=o_ts, o_sub=o_sub, o_sess=o_sess,
                    b_no=number[len(with_sess):][b_order], b_cust=bc[b_order], b_ts=bts[b_order],
                    b_dirty=b_dirty, o_dirty=o_dirty, n_sessions=n_sess)


def order_lines(rng: np.random.Generator, spec: DemoSpec, shop: Shop, cust: Customers,
                 o_cust: np.ndarray, o_sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lines (order index within the chunk, product) of a chunk of orders, in basket order."""
    m = len(o_cust)
    draws = rng.geometric(1.0 / spec.mean_lines, m) - (o_sub >= 0)
    order = np.repeat(np.arange(m), draws)
    seq = group_offsets(draws).astype(np.float64)
    c = o_cust[order]
    fav = (c >= 0) & (rng.random(len(order)) < FAVOURITE_DEPT_SHARE)
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


def purchase_events(rng: np.random.Generator, shop: Shop, order: np.ndarray,
                     product: np.ndarray, sess: np.ndarray, ts: np.ndarray,
                     up_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Events of purchase sessions: views, carts and one purchase per line at the order time.

    ``order``/``product`` are the chunk's lines of orders with a session; ``sess``/``ts`` are
    per chunk order (session number, order time).
    """
    n_line = len(order)
    r = rng.random(n_line)
    is_sub = shop.sub_partner[product] >= 0
    cmp_ = is_sub & (rng.random(n_line) < SUBSTITUTE_COVIEW)
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
    first = np.flatnonzero(run_starts(e_order))
    last = np.r_[first[1:], len(e_order)][: len(first)] - 1
    end = np.repeat(csum[last], last - first + 1)
    e_ts = ts[e_order] - (end - csum + gap)
    # a bought upgrade: the session viewed a product it upgrades (and did not buy it) before
    # viewing the upgrade; drawn from ``up_rng`` alone, so every other row stays as it was
    up = shop.down_has[product] & (up_rng.random(n_line) < shop.up_rate[product])
    down = shop.down_from[shop.down_sampler.draw(up_rng, product[up])]
    line_view_ts = e_ts[np.argsort(idx)[:n_line]]  # the lines' own views come first
    down_ts = line_view_ts[up] - 10 - up_rng.exponential(60.0, len(down)).astype(np.int64)
    return {
        "order": np.concatenate([e_order, order[up], order]),
        "product": np.concatenate([e_prod, down, product]),
        "type": np.concatenate([e_type, np.zeros(len(down), np.int64), np.full(n_line, 2)]),
        "ts": np.concatenate([e_ts, down_ts, ts[order]]),
        "sess": sess[np.concatenate([e_order, order[up], order])],
    }


def browse_events(rng: np.random.Generator, shop: Shop,
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
    key = group_offsets(n_view).astype(np.float64)
    partner = shop.sub_partner[product]
    cov = (partner >= 0) & (rng.random(len(product)) < SUBSTITUTE_COVIEW)
    cart = rng.random(len(product)) < 0.08
    e_sess = np.concatenate([sess, sess[cov], sess[cart]])
    e_prod = np.concatenate([product, partner[cov], product[cart]])
    e_type = np.concatenate([np.zeros(len(sess) + cov.sum(), np.int64),
                             np.ones(cart.sum(), np.int64)])
    e_key = np.concatenate([key, key[cov] + 0.5, key[cart] + 0.25])
    idx = np.lexsort((e_key, e_sess))
    e_sess, e_prod, e_type = e_sess[idx], e_prod[idx], e_type[idx]
    gap = 5 + rng.exponential(50.0, len(e_sess)).astype(np.int64)
    first = run_starts(e_sess)
    gap[first] = 0
    csum = np.cumsum(gap)
    start = np.repeat(csum[first], np.diff(np.r_[np.flatnonzero(first), len(e_sess)]))
    return {"sess": e_sess, "product": e_prod, "type": e_type,
            "ts": ts[e_sess] + csum - start, "first": first}
