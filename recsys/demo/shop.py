"""The shop: catalog, popularity and planted pairs (``build_shop``), and the customers with
their activity windows and favourite departments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.demo.arrays import Sampler, allocate, group_offsets, ids, money
from recsys.demo.spec import (
    CATALOG_COLUMNS,
    CONSUMABLE_BASE_WEIGHT,
    CONSUMABLE_SHARE,
    REPLENISH_MAX_SHARE,
    UPGRADE_BAND,
    UPGRADE_STREAM,
    UPGRADE_VIEW,
    UPGRADES_PER_PRODUCT,
    ZIPF_OFFSET,
    DemoSpec,
    PlantedTruth,
)
from recsys.demo.taxonomy import BRANDS, COMPLEMENT_LEAVES, SUBSTITUTE_LEAVES, TAXONOMY

__all__ = ["Shop", "Customers", "build_shop", "build_customers", "draw_customers", "replenishments"]


@dataclass
class Shop:
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
    line_sampler: Sampler  # segments: 0 = all, 1 + d = department d
    view_sampler: Sampler  # segments: 0 = all, 1 + d = department, 1 + D + l = leaf l
    cons_sampler: Sampler  # segment 0 = consumables (sqrt popularity)
    down_has: np.ndarray  # (n,) the product is some product's planted upgrade
    up_rate: np.ndarray  # (n,) P(a purchase session of it views a product it upgrades)
    down_from: np.ndarray  # (edges,) the product upgraded, edges grouped by upgrade
    down_sampler: Sampler  # segment b = the products b upgrades (popularity x P(chosen))
    n_dept: int
    catalog: pa.Table
    planted: PlantedTruth  # dirty_rows still empty


@dataclass
class Customers:
    """Customer arrays: active window (inclusive days), activity weight, favourite department."""

    n: int
    first: np.ndarray
    last: np.ndarray
    cum_weight: np.ndarray
    fav_dept: np.ndarray
    cid: pa.Array


@dataclass
class _Layout:
    """Products laid out by leaf (internal index sorted by leaf): ranges and departments."""

    n: int
    depts: list[str]
    leaf_dept: np.ndarray  # (leaves,) department index
    is_cons_leaf: np.ndarray  # (leaves,) consumable leaf
    counts: np.ndarray  # (leaves,) products per leaf
    leaf: np.ndarray  # (n,) leaf index
    leaf_start: np.ndarray
    leaf_end: np.ndarray


def _layout(n: int) -> _Layout:
    """How many products each leaf gets (consumables about CONSUMABLE_SHARE), at least two."""
    leaves = TAXONOMY
    depts = list(dict.fromkeys(lf.path.split(" > ")[0] for lf in leaves))
    leaf_dept = np.array([depts.index(lf.path.split(" > ")[0]) for lf in leaves])
    is_cons_leaf = np.array([bool(lf.cycles) for lf in leaves])
    shares = np.array([lf.share for lf in leaves])
    n_cons = max(2 * is_cons_leaf.sum(), round(CONSUMABLE_SHARE * n))
    counts = np.zeros(len(leaves), np.int64)
    counts[is_cons_leaf] = allocate(n_cons, shares[is_cons_leaf], minimum=2)
    counts[~is_cons_leaf] = allocate(n - n_cons, shares[~is_cons_leaf], minimum=2)
    leaf_start = np.cumsum(counts) - counts
    return _Layout(n=n, depts=depts, leaf_dept=leaf_dept, is_cons_leaf=is_cons_leaf,
                   counts=counts, leaf=np.repeat(np.arange(len(leaves)), counts),
                   leaf_start=leaf_start, leaf_end=leaf_start + counts)


@dataclass
class _Products:
    """Per product: name parts (noun, variant, series), price and repurchase cycle."""

    noun_i: np.ndarray
    var_i: np.ndarray
    n_var: np.ndarray
    series: np.ndarray
    price: np.ndarray
    cycle: np.ndarray  # days, 0 = not a consumable


def _products(rng: np.random.Generator, lay: _Layout) -> _Products:
    """Names cycle through a leaf's (noun, variant) combinations before repeating one; prices
    are log-normal around the leaf median, packs scale them; consumables get a cycle."""
    leaves, leaf = TAXONOMY, lay.leaf
    combo = np.empty(lay.n, np.int64)
    for li, lf in enumerate(leaves):  # ~40 leaves
        n_combo = len(lf.nouns) * len(lf.variants)
        combo[lay.leaf_start[li]:lay.leaf_end[li]] = np.resize(rng.permutation(n_combo),
                                                               lay.counts[li])
    n_var = np.array([len(lf.variants) for lf in leaves])[leaf]
    noun_i, var_i = np.divmod(combo, n_var)
    series = group_offsets(lay.counts) // (
        np.array([len(lf.nouns) for lf in leaves])[leaf] * n_var)
    median = np.array([lf.price for lf in leaves], dtype=np.float64)[leaf]
    pack = np.where(lay.is_cons_leaf[leaf], 1.0 + 0.8 * var_i, 1.0)
    price = median * pack * np.exp(0.35 * rng.standard_normal(lay.n))
    cycle = np.zeros(lay.n, np.int64)
    for li in np.flatnonzero(lay.is_cons_leaf).tolist():
        sl = slice(lay.leaf_start[li], lay.leaf_end[li])
        cycle[sl] = np.asarray(leaves[li].cycles)[var_i[sl]]
    return _Products(noun_i=noun_i, var_i=var_i, n_var=n_var, series=series, price=price,
                     cycle=cycle)


@dataclass
class _Pairs:
    """The planted complements and substitutes (products disjoint, none consumable)."""

    comps: list[tuple[int, int]]
    subs: list[tuple[int, int]]
    used: np.ndarray  # (n,) planted
    comp_partner: np.ndarray
    comp_prob: np.ndarray
    sub_pair: np.ndarray
    sub_side: np.ndarray
    sub_partner: np.ndarray


def _plant_pairs(rng: np.random.Generator, lay: _Layout, prod: _Products) -> _Pairs:
    """Pick the planted pairs; a substitute takes its partner's noun and a price within 15%
    (``prod`` is updated in place)."""
    n = lay.n
    leaf_by_name = {lf.path.split(" > ")[-1]: i for i, lf in enumerate(TAXONOMY)}
    used = np.zeros(n, bool)

    def pick(li: int) -> int:
        free = np.flatnonzero(~used[lay.leaf_start[li]:lay.leaf_end[li]]) + lay.leaf_start[li]
        if len(free) == 0:
            return -1
        p = int(rng.choice(free))
        used[p] = True
        return p

    comps: list[tuple[int, int]] = []
    for la, lb in COMPLEMENT_LEAVES[:min(len(COMPLEMENT_LEAVES), n // 15)]:
        a, b = pick(leaf_by_name[la]), pick(leaf_by_name[lb])
        if a >= 0 and b >= 0:
            comps.append((a, b))
    n_sub_target = min(len(SUBSTITUTE_LEAVES), n // 20)
    subs: list[tuple[int, int]] = []
    for name in SUBSTITUTE_LEAVES:
        if len(subs) == n_sub_target:
            break
        li = leaf_by_name[name]
        if (~used[lay.leaf_start[li]:lay.leaf_end[li]]).sum() >= 2:
            subs.append((pick(li), pick(li)))

    pairs = _Pairs(comps=comps, subs=subs, used=used, comp_partner=np.full(n, -1, np.int64),
                   comp_prob=np.zeros(n), sub_pair=np.full(n, -1, np.int64),
                   sub_side=np.zeros(n, np.int64), sub_partner=np.full(n, -1, np.int64))
    if comps:
        ca, cb = np.array(comps).T
        pairs.comp_partner[ca] = cb
        pairs.comp_prob[ca] = rng.uniform(0.4, 0.6, len(ca))
    if subs:
        sa, sb = np.array(subs).T
        pairs.sub_pair[sa] = pairs.sub_pair[sb] = np.arange(len(subs))
        pairs.sub_side[sb] = 1
        pairs.sub_partner[sa], pairs.sub_partner[sb] = sb, sa
        prod.noun_i[sb] = prod.noun_i[sa]
        prod.var_i[sb] = (prod.var_i[sa] + 1) % prod.n_var[sa]
        prod.series[sb] = prod.series[sa]
        prod.price[sb] = prod.price[sa] * rng.uniform(0.85, 1.15, len(sb))
    return pairs


def _popularity(rng: np.random.Generator, used: np.ndarray) -> np.ndarray:
    """Zipf weights over ranks; planted products take ranks just below the very top."""
    n = len(used)
    planted = np.flatnonzero(used)
    rank = np.empty(n, np.int64)
    head = np.arange(2, min(n, 2 + int(1.15 * len(planted)) + 1))
    planted_ranks = rng.choice(head, size=len(planted), replace=False)
    rank[planted] = planted_ranks
    rest = np.setdiff1d(np.arange(n), planted_ranks)
    rank[np.flatnonzero(~used)] = rng.permutation(rest)
    return 1.0 / (rank + ZIPF_OFFSET)


@dataclass
class _Catalog:
    """The catalog table (contract columns, sorted by product id) and what the shop keeps."""

    table: pa.Table
    pid: pa.Array  # (n,) product ids over the internal index
    pid_num: np.ndarray
    cents: np.ndarray
    in_stock: np.ndarray
    active: np.ndarray
    brand: np.ndarray  # (n,) brand index


def _catalog(rng: np.random.Generator, lay: _Layout, prod: _Products,
             used: np.ndarray) -> _Catalog:
    """Availability (5% out of stock, 1% inactive, never a planted product), margins, brands,
    ids, prices in cents and names."""
    n, leaves, leaf = lay.n, TAXONOMY, lay.leaf
    free = np.flatnonzero(~used)
    n_oos, n_inactive = round(0.05 * n), max(2, round(0.01 * n))
    chosen = rng.choice(free, size=n_oos + n_inactive, replace=False)
    in_stock = np.ones(n, bool)
    in_stock[chosen[:n_oos]] = False
    active = np.ones(n, bool)
    active[chosen[n_oos:]] = False
    margin = np.clip(rng.normal(0.22 + 0.25 * lay.is_cons_leaf[leaf], 0.08), 0.10, 0.60)
    dept = lay.leaf_dept[leaf]
    brand_table = pa.array([b for d in lay.depts for b in BRANDS[d]])
    n_brands = np.array([len(BRANDS[d]) for d in lay.depts])
    brand_i = np.cumsum(n_brands)[dept] - n_brands[dept] + rng.integers(0, n_brands[dept])

    pid_num = rng.permutation(n) + 1
    pid = ids("P", pid_num, max(5, len(str(n))))
    price = prod.price
    cents = np.where(price >= 10, np.ceil(price) * 100 - 1, np.ceil(price * 10) * 10 - 1)
    cents = cents.astype(np.int64)

    noun_off = np.cumsum([len(lf.nouns) for lf in leaves]) - [len(lf.nouns) for lf in leaves]
    var_off = np.cumsum([len(lf.variants) for lf in leaves]) - [len(lf.variants) for lf in leaves]
    nouns = pa.array([w for lf in leaves for w in lf.nouns])
    variants = pa.array([w for lf in leaves for w in lf.variants])
    joiners = pa.array([lf.joiner for lf in leaves])
    suffixes = pa.array([""] + [f" Series {k + 1}"
                                for k in range(1, int(prod.series.max()) + 1)])
    name = pc.binary_join_element_wise(
        nouns.take(pa.array(noun_off[leaf] + prod.noun_i)), joiners.take(pa.array(leaf)),
        variants.take(pa.array(var_off[leaf] + prod.var_i)),
        suffixes.take(pa.array(prod.series)), "")
    order = np.argsort(pid_num)
    table = pa.table({
        "product_id": pid.take(pa.array(order)),
        "name": name.take(pa.array(order)),
        "category": pa.array([lf.path for lf in leaves]).take(pa.array(leaf[order])),
        "price": money(cents[order]),
        "in_stock": pa.array(in_stock[order]),
        "margin": money(np.round(margin[order] * 100).astype(np.int64)),
        "brand": brand_table.take(pa.array(brand_i[order])),
        "is_active": pa.array(active[order]),
        "durable": pa.array(prod.cycle[order] == 0),  # every product but consumables lasts
    })
    assert tuple(table.column_names) == CATALOG_COLUMNS
    return _Catalog(table=table, pid=pid, pid_num=pid_num, cents=cents, in_stock=in_stock,
                    active=active, brand=brand_i)


@dataclass
class _Upgrades:
    """The planted upgrade edges (product a, its upgrade b, P(a's upgrader picks b))."""

    a: np.ndarray
    b: np.ndarray
    prob: np.ndarray


def _upgrades(rng: np.random.Generator, lay: _Layout, cat: _Catalog) -> _Upgrades:
    """Each product's up to UPGRADES_PER_PRODUCT upgrades: products of its leaf in stock and
    active, priced within UPGRADE_BAND times its price, the same brand first, then the next
    price tiers (closest price above); P(chosen) is a Dirichlet(1, ...) draw, largest first,
    rounded to 4 decimals (at least 0.0001: every upgrade can be drawn)."""
    lo, hi = UPGRADE_BAND
    k = UPGRADES_PER_PRODUCT
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for li in range(len(lay.counts)):  # ~40 leaves; each a small (m x m) price-ratio table
        idx = np.arange(lay.leaf_start[li], lay.leaf_end[li])
        ratio = cat.cents[idx][None, :] / cat.cents[idx][:, None]  # rows a, columns b
        ok = ((ratio >= lo) & (ratio <= hi)
              & (cat.in_stock[idx] & cat.active[idx])[None, :])
        other_brand = cat.brand[idx][None, :] != cat.brand[idx][:, None]
        key = np.where(ok, other_brand * hi + ratio, np.inf)
        best = np.argsort(key, axis=1, kind="stable")[:, :k]
        valid = np.take_along_axis(ok, best, axis=1)
        weight = np.where(valid, rng.standard_gamma(1.0, best.shape), 0.0)
        weight = -np.sort(-weight, axis=1)  # the likeliest upgrade is the first listed
        total = weight.sum(axis=1, keepdims=True)
        prob = np.maximum(np.round(weight / np.where(total > 0, total, 1.0), 4), 1e-4)
        rows = np.broadcast_to(idx[:, None], best.shape)
        found.append((rows[valid], idx[best][valid], prob[valid]))
    a, b, prob = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return _Upgrades(a=a.astype(np.int64), b=b.astype(np.int64), prob=prob)


def build_shop(rng: np.random.Generator, spec: DemoSpec) -> Shop:
    """Catalog, popularity and planted pairs; internal index is sorted by leaf. The steps
    draw from ``rng`` in a fixed order, so a spec always gives the same shop."""
    lay = _layout(spec.products)
    prod = _products(rng, lay)
    pairs = _plant_pairs(rng, lay, prod)
    pop = _popularity(rng, pairs.used)
    cat = _catalog(rng, lay, prod, pairs.used)
    up = _upgrades(np.random.default_rng([spec.seed, UPGRADE_STREAM]), lay, cat)
    n, cycle = lay.n, prod.cycle

    # samplers: order lines (consumables damped), views, subscriptions
    n_dept = len(lay.depts)
    dept_start = np.array([lay.leaf_start[lay.leaf_dept == d].min() for d in range(n_dept)])
    dept_end = np.array([lay.leaf_end[lay.leaf_dept == d].max() for d in range(n_dept)])
    starts = np.concatenate([[0], dept_start, lay.leaf_start])
    ends = np.concatenate([[n], dept_end, lay.leaf_end])
    line_w = pop * np.where(cycle > 0, CONSUMABLE_BASE_WEIGHT, 1.0)
    cons = np.flatnonzero(cycle > 0)
    cons_w = np.zeros(n)
    cons_w[cons] = np.sqrt(pop[cons])

    # who upgrades to b: edges grouped by b, drawn by a's popularity x P(a's upgrader picks b).
    # A line of b gets such a view with a rate proportional to that mass over b's own line
    # weight, so that (viewed a, bought b) comes about popularity(a) x P(b | a) times: an
    # upgrader from a picks b with its planted probability (capped at one view per line).
    mass = np.bincount(up.b, weights=pop[up.a] * up.prob, minlength=n)
    need = np.divide(mass, line_w, out=np.zeros(n), where=line_w > 0)
    scale = UPGRADE_VIEW / np.median(need[mass > 0]) if (mass > 0).any() else 0.0
    up_rate = np.minimum(1.0, scale * need)
    by_b = np.lexsort((up.a, up.b))
    down_b = up.b[by_b]
    down_lo = np.searchsorted(down_b, np.arange(n), side="left")
    down_hi = np.searchsorted(down_b, np.arange(n), side="right")

    pid_list = np.asarray(cat.pid.to_pylist(), dtype=object)
    listed = np.lexsort((cat.pid_num[up.b], -up.prob, cat.pid_num[up.a]))
    upgrades: dict[str, dict[str, float]] = {}
    for a, b, q in zip(pid_list[up.a[listed]], pid_list[up.b[listed]],
                       up.prob[listed].tolist(), strict=True):
        upgrades.setdefault(a, {})[b] = q
    truth = PlantedTruth(
        complements=tuple((pid_list[a], pid_list[b]) for a, b in pairs.comps),
        substitutes=tuple((pid_list[a], pid_list[b]) for a, b in pairs.subs),
        consumables={pid_list[i]: int(cycle[i]) for i in cons[np.argsort(cat.pid_num[cons])]},
        out_of_stock=tuple(sorted(pid_list[~cat.in_stock])),
        inactive=tuple(sorted(pid_list[~cat.active])),
        dirty_rows={},
        upgrades=upgrades,
    )
    return Shop(
        n=n, leaf=lay.leaf, pid=cat.pid, price_cents=cat.cents, cycle=cycle,
        comp_partner=pairs.comp_partner, comp_prob=pairs.comp_prob, sub_pair=pairs.sub_pair,
        sub_side=pairs.sub_side, sub_partner=pairs.sub_partner, n_sub=len(pairs.subs),
        line_sampler=Sampler(line_w, starts, ends),
        view_sampler=Sampler(pop, starts, ends),
        cons_sampler=Sampler(cons_w, np.array([cons.min()]), np.array([cons.max() + 1])),
        down_has=down_hi > down_lo, up_rate=up_rate, down_from=up.a[by_b],
        down_sampler=Sampler(pop[up.a[by_b]] * up.prob[by_b], down_lo, down_hi),
        n_dept=n_dept, catalog=cat.table, planted=truth,
    )


def build_customers(rng: np.random.Generator, spec: DemoSpec, shop: Shop) -> Customers:
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
    return Customers(n=n, first=first, last=last, cum_weight=np.cumsum(weight),
                      fav_dept=fav, cid=ids("C", np.arange(1, n + 1), max(6, len(str(n)))))


def draw_customers(rng: np.random.Generator, cust: Customers, size: int) -> np.ndarray:
    """``size`` customer indices drawn by activity weight."""
    x = rng.random(size) * cust.cum_weight[-1]
    return np.minimum(np.searchsorted(cust.cum_weight, x, side="right"), cust.n - 1)


def replenishments(rng: np.random.Generator, spec: DemoSpec, shop: Shop,
                    cust: Customers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    pos = group_offsets(kmax)
    gap[pos == 0] = 0.0
    csum = np.cumsum(gap)
    day = t0[row] + np.round(csum - np.repeat(csum[pos == 0], kmax)).astype(np.int64)
    keep = day <= cust.last[sc[row]]
    per_sub = np.bincount(row[keep], minlength=len(sc))
    cap = round(REPLENISH_MAX_SHARE * spec.orders)
    perm = rng.permutation(len(sc))
    chosen = np.zeros(len(sc), bool)
    chosen[perm[np.cumsum(per_sub[perm]) <= cap]] = True
    keep &= chosen[row]
    return sc[row[keep]], day[keep], sp[row[keep]]
