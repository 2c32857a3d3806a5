"""The mined rules as the server holds them: arrays grouped by antecedent set, so a cart finds
its rules by its own subsets (millions of rules, no Python object per rule)."""

from __future__ import annotations

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

    ``groups`` maps the antecedent codes (sorted int32, as bytes) to a slice of the arrays;
    a cart finds its rules by looking up its own subsets (or, for a large cart, by testing
    every antecedent set of a length at once), never by walking the rules of each item.
    """

    groups: dict[bytes, tuple[int, int]]
    antecedents: dict[int, np.ndarray]  # length -> (n_sets, length) codes of every set
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

    def sets_in(self, cart: np.ndarray, combinations_limit: int = 2_000) -> list[np.ndarray]:
        """Every stored antecedent set that the sorted, distinct ``cart`` codes hold."""
        out = []
        for length, sets in self.antecedents.items():
            if len(cart) < length:
                continue
            if math.comb(len(cart), length) <= combinations_limit:
                for combo in itertools.combinations(cart.tolist(), length):
                    key = np.asarray(combo, dtype=np.int32)
                    if key.tobytes() in self.groups:
                        out.append(key)
            else:
                held = np.isin(sets, cart).all(axis=1)
                out += list(sets[held])
        return out

    def rules_of(self, antecedents: np.ndarray) -> tuple[int, int]:
        """The slice of the arrays holding the rules of this antecedent set."""
        return self.groups[np.ascontiguousarray(antecedents, dtype=np.int32).tobytes()]


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
    groups: dict[bytes, tuple[int, int]] = {}
    antecedents: dict[int, np.ndarray] = {}
    order_all, base = [], 0
    for rows, sets in parts:
        keys = np.ascontiguousarray(sets).view(np.dtype((np.void, sets.shape[1] * 4))).ravel()
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.lexsort((-conf[rows], inverse))
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        groups.update(zip((u.tobytes() for u in unique),
                          zip((base + bounds[:-1]).tolist(), (base + bounds[1:]).tolist(),
                              strict=True), strict=True))
        antecedents[sets.shape[1]] = sets[order][bounds[:-1]]
        order_all.append(rows[order])
        base += len(rows)
    rows = np.concatenate(order_all)
    return ServedRules(groups, antecedents, consequent[rows].astype(np.int32), conf[rows],
                     lift[rows], count[rows])
