"""Session-aware lists: the shopper's other recent products add their neighbours to a list's
candidates, the most recent weighing most, and the training sessions most like the session so
far (V-SKNN, ``recsys.models.session_knn``) vote for theirs, so a list reflects the whole
session and not only the product on screen. Each re-scored item names the session products
that shaped it (``reason.evidence.session``). Without a session nothing changes. A request
merges a few thousand entries: compiled (``_merge``), as the bought-together blend."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from recsys.models.neighbours import Neighbours
from recsys.models.session_knn import session_neighbours, slot_of, table_bits
from recsys.serving.finish import Candidate
from recsys.serving.index import ServingIndex

__all__ = ["Session", "NO_SESSION", "Merged", "session_of_recent", "line_weights", "merge",
           "rescore", "session_evidence"]

SHOWN = 3  # session products named per item, strongest first


class Session(NamedTuple):
    """The session's other products (most recent first) and their weights, the whole
    session oldest first (the V-SKNN query: its last products are those on screen), and the
    V-SKNN share, neighbour count and sample (``session_neighbours``; 0: every training
    session), and the products it put in the cart or bought (``in_cart``: bought-together
    and the cart add-ons never offer them back; also-viewed may). False when it has no
    other product."""

    products: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    order: tuple[str, ...] = ()
    knn_weight: float = 0.0
    knn_k: int = 100
    knn_sample: int = 0
    in_cart: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.products)


NO_SESSION = Session()


def session_of_recent(recent: list[str], on_screen: list[str], *, weight: float, decay: float,
                      length: int, knn_weight: float, knn_k: int, knn_sample: int,
                      in_cart: frozenset[str] = frozenset()) -> Session:
    """The Session of ``recent`` (most recent first) around the ``on_screen`` products: the
    others, each once, at most ``length``, weighing ``weight`` for the most recent and
    ``decay`` times less for each older; ``in_cart``: those of them put in the cart or
    bought."""
    skip = set(on_screen)
    in_cart = in_cart - skip if in_cart else in_cart
    products: list[str] = []
    for pid in recent:
        if pid not in skip:
            skip.add(pid)
            products.append(pid)
            if len(products) == length:
                break
    if not products:
        return Session(in_cart=in_cart) if in_cart else NO_SESSION
    weights = _weights(weight, decay, len(products))
    order = (*reversed(products), *dict.fromkeys(on_screen))
    return Session(tuple(products), weights, order, knn_weight, knn_k, knn_sample, in_cart)


def line_weights(cart: list[str], recent: list[str], decay: float) -> dict[str, float] | None:
    """Each cart product's weight in the cart add-ons by how recently the session
    (``recent``, most recent first) touched it: the latest 1, each earlier ``decay`` times
    less, products the session does not hold one step older than its oldest. None (every
    line alike) when the session holds none of them or ``decay`` is 1: a request's line
    order is not trusted (storefronts list carts oldest or newest first)."""
    if decay == 1.0:
        return None
    lines = set(cart)
    known = list(dict.fromkeys(p for p in recent if p in lines))
    if not known:
        return None
    weights = dict.fromkeys(lines, decay ** len(known))
    weights.update(zip(known, _weights(1.0, decay, len(known)), strict=True))
    return weights


@functools.lru_cache(maxsize=256)
def _weights(weight: float, decay: float, n: int) -> tuple[float, ...]:
    """The weights of a session's ``n`` other products, most recent first (a few settings
    serve every request: computed once each)."""
    return tuple(weight * decay ** i for i in range(n))


class Merged(NamedTuple):
    """A list's candidates with what a session adds (``merge``), per row (the candidates,
    then the products the session adds, best first): its product ``codes`` and ``scores`` (a
    candidate's scaled to the best candidate's, plus its session sum where the session
    scores it: ``hit``, per candidate), and the codes of the session products that shaped it
    (``shaped``, -1 padded, ``n_shaped`` of them)."""

    codes: np.ndarray
    scores: np.ndarray
    hit: np.ndarray
    shaped: np.ndarray
    n_shaped: np.ndarray

    def named(self, index: ServingIndex, rows: np.ndarray) -> list[list[str]]:
        """The session products that shaped each of these rows, strongest first."""
        ids = index.id_array[self.shaped.take(rows, axis=0).ravel()].tolist()  # -1: cut off
        return [ids[at:at + n] for at, n in zip(range(0, len(ids), SHOWN),
                                                self.n_shaped[rows].tolist(), strict=True)]


def merge(index: ServingIndex, table: Neighbours | None, codes: np.ndarray,
          scores: np.ndarray, session: Session, limit: int) -> Merged | None:
    """The session's neighbours and V-SKNN scores added to candidates with these product
    ``codes`` (-1: unknown) and ``scores``, and the ``limit`` best products it adds; None
    without a session or when it has nothing to add. The arithmetic is ``_merge``."""
    if not session:
        return None
    code_of = index.code_of
    t_ids, t_scores = ((np.asarray(table.ids), np.asarray(table.scores)) if table is not None
                       else (_NO_IDS, _NO_SCORES))
    model = index.sessions
    knn = model.arrays if model is not None and session.knn_weight > 0 else _NO_KNN
    recent = [code_of.get(pid, -1) for pid in session.products]
    arguments = (  # in _merge's order
        *knn, np.array([code_of[p] for p in session.order if p in code_of], np.int64),
        session.knn_k, session.knn_sample, session.knn_weight, recent[0], t_ids, t_scores,
        np.array(recent, np.int64), np.array(session.weights, np.float64), codes, scores,
        limit)
    entries, *found = _merge(*arguments)
    return Merged(*found) if entries else None


def rescore(index: ServingIndex, table: Neighbours | None, candidates: list[Candidate],
            session: Session, limit: int) -> list[Candidate]:
    """``candidates`` (scaled to the best one) plus each session product's weighted
    neighbours (each row scaled to its best) plus the V-SKNN scores (scaled to the best,
    times ``knn_weight``); the ``limit`` best products the session adds that were not
    candidates join with source ``session``. The arithmetic is ``_merge``."""
    found = merge(index, table, np.array([index.code_of.get(c.product_id, -1)
                                          for c in candidates], np.int64),
                  np.array([c.score for c in candidates], np.float64), session, limit)
    if found is None:
        return candidates
    names = found.named(index, np.arange(len(found.codes)))
    scores = found.scores.tolist()
    for cand, hit, value, named in zip(candidates, found.hit.tolist(), scores, names,
                                       strict=False):  # then the added products'
        cand.score = value
        if hit:
            cand.evidence["session"] = named
    n = len(candidates)
    return candidates + [Candidate(pid, value, "session", session_evidence(named, value))
                         for pid, value, named in zip(index.id_array[found.codes[n:]].tolist(),
                                                      scores[n:], names[n:], strict=True)]


def session_evidence(named: list[str], value: float) -> dict[str, Any]:
    """The reason's evidence of a product the session adds."""
    return {"session": named, "weight": round(value, 6)}


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only, like the memory-mapped tables (one compiled version)."""
    array.setflags(write=False)
    return array


_NO_IDS = _read_only(np.zeros((0, 0), np.int32))
_NO_SCORES = _read_only(np.zeros((0, 0), np.float32))


_NO_KNN = (np.zeros(0, np.int32),) * 4  # no V-SKNN: an empty CSR


@njit(cache=True, nogil=True)
def _merge(by_indptr: np.ndarray, by_indices: np.ndarray, s_indptr: np.ndarray,
           s_indices: np.ndarray, order: np.ndarray, knn_k: int, knn_sample: int,
           knn_weight: float, knn_src: int, t_ids: np.ndarray, t_scores: np.ndarray,
           s_codes: np.ndarray, s_weights: np.ndarray, cand: np.ndarray,
           cand_scores: np.ndarray, limit: int
           ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The session's entries: the V-SKNN products of the session ``order`` (codes, oldest
    first; ``by_*`` / ``s_*``: the training sessions, empty without; ``knn_k`` neighbours
    among each product's last ``knn_sample``, ``session_neighbours``) scaled to the best,
    times ``knn_weight``, named after ``knn_src`` (-1: after none); then for each session
    product (``s_codes``, -1 unknown, weight ``s_weights``; none without a table) its
    neighbour row ``t_ids`` / ``t_scores`` times its weight, scaled to the row's best (a row
    whose best is not positive adds nothing). Products sum their entries in that order, in
    one hash table (``slot_of``, inlined; no sort of all the products).
    Returns the number of entries; the rows: the candidates (``cand``, ``cand_scores``
    scaled to the best; plus their sum where the session scores them) then the ``limit``
    best other products (ties: the lower code) with their sums, as codes and scores; for
    each candidate whether the session scores it; and for every row the session products
    that shaped it (strongest entry first, ties: the earlier entry; each once, ``SHOWN`` at
    most; -1 padded) and how many."""
    neighbours, sims = np.zeros(0, np.int64), np.zeros(0, np.float64)
    if len(by_indptr) and len(order):
        neighbours, sims = session_neighbours(by_indptr, by_indices, order, knn_k,
                                              knn_sample)
    n_votes = 0  # each neighbour votes for each of its products with its similarity
    for row in neighbours:
        n_votes += s_indptr[row + 1] - s_indptr[row]
    n_items = t_ids.shape[0]
    width = t_ids.shape[1] if n_items else 0
    peaks = np.zeros(len(s_codes), np.float64)
    n_rows_entries = 0
    for s in range(len(s_codes)):
        code = s_codes[s]
        if code < 0 or n_items == 0 or s_weights[s] <= 0:
            continue
        if code >= n_items:
            raise ValueError("session: a product code is outside the neighbour table")
        kept = 0
        for j in range(width):
            if t_ids[code, j] >= 0:
                value = np.float64(t_scores[code, j])
                peaks[s] = value if kept == 0 else max(peaks[s], value)
                kept += 1
        if peaks[s] > 0:
            n_rows_entries += kept
    capacity = n_votes + n_rows_entries  # distinct products at most
    bits = table_bits(capacity)
    slot_key = np.full(1 << bits, -1, np.int64)
    slot_at = np.empty(1 << bits, np.int64)
    keys = np.empty(capacity, np.int64)  # the products, in order of their first entry
    sums = np.zeros(capacity, np.float64)
    u = 0
    for r in range(len(neighbours)):  # V-SKNN's votes summed per product (as score_session)
        for j in range(s_indptr[neighbours[r]], s_indptr[neighbours[r] + 1]):
            key = np.int64(s_indices[j])
            h = slot_of(slot_key, key, bits)
            if slot_key[h] < 0:
                slot_key[h], slot_at[h], keys[u] = key, u, key
                u += 1
            sums[slot_at[h]] += sims[r]
    best = 0.0
    for p in range(u):
        best = sums[p] if p == 0 else max(best, sums[p])
    if best > 0:
        for p in range(u):
            sums[p] = 0.0 + knn_weight * sums[p] / best  # its entry, the product's first
    else:  # no V-SKNN entries
        slot_key[:] = -1
        sums[:u] = 0.0
        u = 0
    n_knn = u
    size = n_knn + n_rows_entries
    e_product = np.empty(size, np.int64)
    e_src = np.empty(size, np.int64)
    e_value = np.empty(size, np.float64)
    for p in range(n_knn):
        e_product[p], e_src[p], e_value[p] = p, knn_src, sums[p]
    m = n_knn
    for s in range(len(s_codes)):
        if peaks[s] <= 0:
            continue
        code, w = s_codes[s], s_weights[s]
        for j in range(width):
            if t_ids[code, j] >= 0:
                value = w * np.float64(t_scores[code, j]) / peaks[s]
                key = np.int64(t_ids[code, j])
                h = slot_of(slot_key, key, bits)
                if slot_key[h] < 0:
                    slot_key[h], slot_at[h], keys[u] = key, u, key
                    u += 1
                p = slot_at[h]
                sums[p] += value
                e_product[m], e_src[m], e_value[m] = p, code, value
                m += 1
    hit = np.zeros(len(cand), np.bool_)
    total = np.zeros(len(cand), np.float64)
    row_product = np.full(len(cand), -1, np.int64)
    is_cand = np.zeros(u, np.bool_)
    for i in range(len(cand)):
        key = np.int64(cand[i])
        if key < 0:
            continue
        h = slot_of(slot_key, key, bits)
        if slot_key[h] == key:
            p = slot_at[h]
            hit[i], total[i], row_product[i] = True, sums[p], p
            is_cand[p] = True
    added = _best_by_value(sums[:u], keys[:u], is_cand, limit)
    rows = np.concatenate((row_product, added))
    # each product's named entries in entry order, as a chain
    head = np.full(u, -1, np.int64)
    tail = np.full(u, -1, np.int64)
    after = np.full(size, -1, np.int64)
    for e in range(size):
        if e_src[e] >= 0:
            p = e_product[e]
            if head[p] < 0:
                head[p] = e
            else:
                after[tail[p]] = e
            tail[p] = e
    # each row names the sources of its strongest entries (ties: the earlier entry), each once
    shaped = np.full((len(rows), SHOWN), -1, np.int64)
    n_shaped = np.zeros(len(rows), np.int64)
    taken = np.zeros(size, np.bool_)
    for r in range(len(rows)):
        p = rows[r]
        if p < 0:
            continue
        while n_shaped[r] < SHOWN:
            strongest = -1
            e = head[p]
            while e >= 0:
                if not taken[e] and (strongest < 0 or e_value[e] > e_value[strongest]):
                    strongest = e
                e = after[e]
            if strongest < 0:
                break
            taken[strongest] = True
            by = e_src[strongest]
            named = False
            for q in range(n_shaped[r]):
                named = named or shaped[r, q] == by
            if not named:
                shaped[r, n_shaped[r]] = by
                n_shaped[r] += 1
        e = head[p]
        while e >= 0:  # another row of the same product takes them afresh
            taken[e] = False
            e = after[e]
    peak = 0.0
    for i in range(len(cand_scores)):
        peak = cand_scores[i] if i == 0 else max(peak, cand_scores[i])
    scale = 1.0 / peak if peak > 0 else 1.0
    scores = np.empty(len(rows), np.float64)
    for i in range(len(cand)):
        scores[i] = cand_scores[i] * scale + total[i] if hit[i] else cand_scores[i] * scale
    scores[len(cand):] = sums[added]
    return (size, np.concatenate((cand, keys[added])), scores, hit, shaped, n_shaped)


@njit(cache=True, nogil=True)
def _best_by_value(values: np.ndarray, keys: np.ndarray, skip: np.ndarray,
                   limit: int) -> np.ndarray:
    """The positions of the ``limit`` largest ``values`` (distinct ``keys``) not ``skip``ped,
    largest first, ties: the lower key (a stable sort of the negated values in key order),
    by insertion into the ranked few (a list takes tens of a few hundred products)."""
    n = min(max(limit, 0), len(values) - int(skip.sum()))
    out = np.empty(n, np.int64)
    m = 0
    for i in range(len(values)):
        if skip[i]:
            continue
        value, key = values[i], keys[i]
        j = m  # where it goes: after every better one
        while j > 0 and (value > values[out[j - 1]] or (
                value == values[out[j - 1]] and key < keys[out[j - 1]])):
            j -= 1
        if j >= n:
            continue
        for q in range(min(m, n - 1), j, -1):
            out[q] = out[q - 1]
        out[j] = i
        m = min(m + 1, n)
    return out
