"""The mined rules as the server holds them: arrays grouped by antecedent set, so a cart finds
its rules by its own subsets (millions of rules, no Python object per rule)."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import layout
from recsys.errors import ArtifactError
from recsys.vocab import Vocabulary

__all__ = ["ServedRules", "rule_key", "rule_table", "load_rules"]


def rule_key(antecedents: tuple[str, ...] | list[str], consequent: str) -> str:
    """The stable id of a rule across retraining: sorted antecedent ids, '->', consequent."""
    return "+".join(sorted(antecedents)) + "->" + consequent


@dataclass(frozen=True)
class ServedRules:
    """The mined rules with one consequent, as arrays grouped by antecedent set (best
    confidence first within a set): millions of rules, no Python object per rule.

    ``antecedents[length]`` holds every distinct antecedent set of that length (sorted int32
    codes, rows in the byte order of their codes) and ``starts[length]`` the bounds of each
    set's rules in the rule arrays. A cart finds its rules by looking up its own subsets, all
    at once by binary search (or, for a large cart, by testing every stored set of a length),
    never by walking the rules of each item.
    """

    antecedents: dict[int, np.ndarray]  # length -> (n_sets, length) int32
    starts: dict[int, np.ndarray]  # length -> (n_sets + 1,) int64 bounds in the rule arrays
    consequent: np.ndarray  # int32
    confidence: np.ndarray  # float32
    lift: np.ndarray
    count: np.ndarray  # int64

    @classmethod
    def empty(cls) -> ServedRules:
        return cls({}, {}, np.zeros(0, np.int32), np.zeros(0, np.float32),
                   np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.consequent)

    @functools.cached_property
    def _single(self) -> np.ndarray:
        """By product code: its row among the one-product antecedent sets, -1 if none (a
        cart's own products are looked up directly, the commonest lookup)."""
        sets = self.antecedents.get(1, np.zeros((0, 1), np.int32))
        rows = np.full(int(sets.max()) + 1 if len(sets) else 0, -1, np.int64)
        rows[sets[:, 0]] = np.arange(len(sets))
        return rows

    @functools.cached_property
    def _single_spans(self) -> np.ndarray:
        """By product code: the (start, end) of its one-product rules, (-1, -1) if none."""
        rows = self._single
        starts = self.starts.get(1, np.zeros(1, np.int64))
        spans = np.full((len(rows), 2), -1, np.int64)
        has = rows >= 0
        spans[has, 0], spans[has, 1] = starts[rows[has]], starts[rows[has] + 1]
        return spans

    @functools.cached_property
    def _keys(self) -> dict[int, np.ndarray]:
        return {length: _as_keys(sets) for length, sets in self.antecedents.items()}

    def sets_in(self, cart: np.ndarray, combinations_limit: int = 2_000) -> list[np.ndarray]:
        """Every stored antecedent set that the sorted, distinct ``cart`` codes hold."""
        out: list[np.ndarray] = []
        for length, sets in self.antecedents.items():
            if len(cart) < length:
                continue
            if math.comb(len(cart), length) <= combinations_limit:
                if length == 1:  # a cart of a few products: a few array reads
                    single = self._single
                    out += [cart[i:i + 1] for i, code in enumerate(cart.tolist())
                            if 0 <= code < len(single) and single[code] >= 0]
                    continue
                keys = self._keys[length]
                combos = np.array(list(itertools.combinations(cart.tolist(), length)),
                                  dtype=np.int32)
                wanted = combos.view(keys.dtype).ravel()
                at = keys.searchsorted(wanted).tolist()
                out += [combos[i] for i, j in enumerate(at)
                        if j < len(keys) and keys[j] == wanted[i]]
            else:
                held = np.isin(sets, cart).all(axis=1)
                out += list(sets[held])
        return out

    def rules_of(self, antecedents: np.ndarray) -> tuple[int, int]:
        """The slice of the arrays holding the rules of this antecedent set."""
        length = len(antecedents)
        if length == 1:
            code, spans = int(antecedents[0]), self._single_spans
            lo, hi = spans[code].tolist() if 0 <= code < len(spans) else (-1, -1)
            if lo < 0:
                raise KeyError(f"no rules with the antecedents {[code]}")
            return lo, hi
        keys = self._keys.get(length, np.zeros(0, np.int32))
        key = np.ascontiguousarray(antecedents, dtype=np.int32).view(keys.dtype)
        row = int(keys.searchsorted(key)[0]) if len(keys) else 0
        row = row if row < len(keys) and keys[row] == key[0] else -1
        if row < 0:
            raise KeyError(f"no rules with the antecedents {list(antecedents)}")
        starts = self.starts[length]
        return int(starts[row]), int(starts[row + 1])


def _as_keys(sets: np.ndarray) -> np.ndarray:
    """Rows of int32 codes as one opaque (void) value each: sortable, searchable, no copy."""
    sets = np.ascontiguousarray(sets, dtype=np.int32)
    return sets.view(np.dtype((np.void, sets.shape[1] * 4))).ravel()


def _list_codes(column: pa.ChunkedArray, items: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """A list-of-ids column as flat item codes (-1 = unknown) and row offsets. Dictionary
    encoded ids (as ``save_parquet`` writes them) are looked up once per distinct id."""
    codes, offsets, base = [], [np.zeros(1, np.int64)], 0
    for chunk in column.chunks:
        chunk_offsets = np.asarray(chunk.offsets, dtype=np.int64)
        values = chunk.values.slice(int(chunk_offsets[0]),
                                    int(chunk_offsets[-1] - chunk_offsets[0]))
        if pa.types.is_dictionary(values.type):
            distinct = items.lookup(pd.Series(values.dictionary.to_pylist(), dtype="string"),
                                    on_unknown="mask")
            codes.append(distinct[np.asarray(values.indices, dtype=np.int64)])
        else:
            codes.append(items.lookup(pd.Series(values.to_pylist(), dtype="string"),
                                      on_unknown="mask"))
        offsets.append(chunk_offsets[1:] - chunk_offsets[0] + base)
        base += int(chunk_offsets[-1] - chunk_offsets[0])
    flat = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    return flat.astype(np.int64), np.concatenate(offsets)


def load_rules(folder: Path, items: Vocabulary) -> ServedRules:
    path = layout.RULES.at(folder)
    if not path.exists():
        return ServedRules.empty()
    try:
        rules = pq.read_table(path, columns=["antecedents", "consequents", "confidence", "lift",
                                             "count"])
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArtifactError(f"table file {path} is not readable Parquet: {exc}") from exc
    ant_codes, offsets = _list_codes(rules.column("antecedents"), items)
    con_flat, con_offsets = _list_codes(rules.column("consequents"), items)
    single = np.diff(con_offsets) == 1
    con_codes = np.where(single, con_flat[np.minimum(con_offsets[:-1], len(con_flat) - 1)], -1)
    lengths = np.diff(offsets)
    known = np.minimum.reduceat(ant_codes, offsets[:-1]) >= 0 if len(lengths) else np.zeros(
        0, bool)
    known &= con_codes >= 0
    starts = offsets[:-1]
    parts: list[tuple[np.ndarray, np.ndarray]] = []  # (rule rows, sorted antecedent codes)
    for length in sorted(set(lengths[known].tolist())):
        rows = np.flatnonzero(known & (lengths == length))
        sets = np.sort(ant_codes[starts[rows][:, None] + np.arange(length)], axis=1)
        parts.append((rows, sets.astype(np.int32)))
    return rule_table(parts, con_codes, rules.column("confidence").to_numpy().astype(np.float32),
                      rules.column("lift").to_numpy().astype(np.float32),
                      rules.column("count").to_numpy().astype(np.int64))


def rule_table(parts: list[tuple[np.ndarray, np.ndarray]], consequent: np.ndarray,
               conf: np.ndarray, lift: np.ndarray, count: np.ndarray) -> ServedRules:
    """Group rules by antecedent set (``parts``: rule rows and their sorted antecedent codes,
    one part per antecedent length); within a set, by confidence (best first)."""
    if not parts:
        return ServedRules.empty()
    antecedents: dict[int, np.ndarray] = {}
    starts: dict[int, np.ndarray] = {}
    order_all, base = [], 0
    for rows, sets in parts:
        unique, inverse = np.unique(_as_keys(sets), return_inverse=True)
        order = np.lexsort((-conf[rows], inverse))
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        antecedents[sets.shape[1]] = np.ascontiguousarray(sets[order][bounds[:-1]],
                                                          dtype=np.int32)
        starts[sets.shape[1]] = (base + bounds).astype(np.int64)
        order_all.append(rows[order])
        base += len(rows)
    rows = np.concatenate(order_all)
    return ServedRules(antecedents, starts, consequent[rows].astype(np.int32), conf[rows],
                       lift[rows], count[rows])
