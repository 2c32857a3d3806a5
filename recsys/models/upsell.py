"""What shoppers bought instead: per viewed product, the products bought in the same session
by shoppers who viewed it and did not buy it (the upsell list's evidence).

A session is ``matrices.session_keys``; a purchase is a ``purchase`` event of the session.
Counted exactly: the number of sessions, not weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.matrices import session_keys
from recsys.vocab import Vocabulary

__all__ = ["COLUMNS", "viewed_then_bought", "viewed_bought_counts", "top_bought_instead"]

COLUMNS = ["product_a", "product_b", "sessions"]


def viewed_then_bought(events: pd.DataFrame | None, items: Vocabulary, top_k: int,
                       categories: np.ndarray | None = None) -> pd.DataFrame:
    """(viewed A, bought B, sessions): sessions where A was viewed and not bought and B was
    bought; for each A its ``top_k`` B by sessions (ties: lower product code), rows in that
    order. ``categories`` (per product code a category number, -1 unknown): the B of A's
    category are kept first, so that the products bought along with A's alternatives (the case
    bought with a phone) do not crowd the alternatives out of the ``top_k``. Empty without events."""
    return top_bought_instead(viewed_bought_counts(events, items), items, top_k, categories)


def viewed_bought_counts(events: pd.DataFrame | None, items: Vocabulary
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, n) product codes and session counts (int64): ``n`` sessions viewed A without
    buying it and bought B; one entry per pair with n > 0, in any order."""
    if events is None or events.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = session_keys(events)
    kind = events["event_type"].astype("string")
    code = items.lookup(events["product_id"].astype("string"), on_unknown="mask")
    ok = keys.notna().to_numpy() & (code >= 0)
    bought = ok & (kind == "purchase").fillna(False).to_numpy(bool)
    viewed = ok & (kind == "view").fillna(False).to_numpy(bool)
    buying = pd.unique(keys[bought])
    session = pd.Index(buying).get_indexer(keys.where(pd.Series(ok, index=keys.index)))
    viewed &= session >= 0  # only sessions with a purchase
    shape = (len(buying), len(items))

    def binary(mask: np.ndarray) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(int(mask.sum()), np.int64), (session[mask], code[mask])),
                          shape=shape)
        m.data[:] = 1  # duplicates summed: once per session
        return m

    purchases, views = binary(bought), binary(viewed)
    views = (views - views.multiply(purchases)).tocsr()  # viewed and not bought
    views.eliminate_zeros()
    counts = (views.T @ purchases).tocoo()
    return (counts.row.astype(np.int64), counts.col.astype(np.int64),
            counts.data.astype(np.int64))


def top_bought_instead(counts: tuple[np.ndarray, np.ndarray, np.ndarray], items: Vocabulary,
                       top_k: int, categories: np.ndarray | None = None) -> pd.DataFrame:
    """``viewed_then_bought``'s table of the pair counts ``(a, b, n)`` (in any order)."""
    a, b, n = (np.asarray(x, dtype=np.int64) for x in counts)
    other = (np.zeros(len(a), bool) if categories is None
             else (categories[a] < 0) | (categories[a] != categories[b]))
    order = np.lexsort((b, -n, other, a))
    a, b, n = a[order], b[order], n[order]
    first = np.r_[0, np.flatnonzero(np.diff(a)) + 1] if len(a) else np.zeros(0, np.int64)
    rank = np.arange(len(a)) - np.repeat(first, np.diff(np.r_[first, len(a)]))
    keep = rank < top_k
    a, b, n = a[keep], b[keep], n[keep]
    order = np.lexsort((b, -n, a))
    ids = np.asarray(items.ids, dtype=object)
    return _frame(ids[a[order]], ids[b[order]], n[order])


def _frame(a: np.ndarray, b: np.ndarray, n: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"product_a": pd.Series(a, dtype="string"),
                         "product_b": pd.Series(b, dtype="string"),
                         "sessions": pd.Series(n, dtype="int64")}, columns=COLUMNS)
