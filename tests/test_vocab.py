"""Vocabulary: exact round trips, unknown-id policies, persistence (property tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.errors import UnknownIdError
from recsys.vocab import Vocabulary

ids_strategy = st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=60)


@given(ids_strategy)
@settings(max_examples=80, deadline=None)
def test_codes_are_contiguous_and_round_trip(ids: list[str]) -> None:
    vocab = Vocabulary.from_ids(ids)
    assert len(vocab) == len(set(ids))
    codes = vocab.lookup(ids)
    assert codes.dtype == np.int64
    assert sorted(set(codes.tolist())) == list(range(len(vocab)))
    assert vocab.decode(codes).tolist() == ids


@given(ids_strategy)
@settings(max_examples=50, deadline=None)
def test_first_appearance_order_and_sorted_option(ids: list[str]) -> None:
    first_seen = list(dict.fromkeys(ids))
    assert Vocabulary.from_ids(ids).ids.tolist() == first_seen
    assert Vocabulary.from_ids(ids, sort=True).ids.tolist() == sorted(first_seen)


@given(ids_strategy, st.lists(st.text(min_size=1, max_size=8), max_size=20))
@settings(max_examples=60, deadline=None)
def test_unknown_policies(known: list[str], query: list[str]) -> None:
    vocab = Vocabulary.from_ids(known)
    unknown = [q for q in query if q not in set(known)]
    masked = vocab.lookup(query, on_unknown="mask")
    assert [c == -1 for c in masked] == [q not in set(known) for q in query]
    dropped = vocab.lookup(query, on_unknown="drop")
    assert vocab.decode(dropped).tolist() == [q for q in query if q in set(known)]
    if unknown:
        with pytest.raises(UnknownIdError) as err:
            vocab.lookup(query)
        assert repr(unknown[0]) in str(err.value)
    else:
        assert vocab.lookup(query).tolist() == masked.tolist()


@given(ids_strategy)
@settings(max_examples=30, deadline=None)
def test_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory, ids: list[str]) -> None:
    path: Path = tmp_path_factory.mktemp("vocab") / "items.parquet"
    vocab = Vocabulary.from_ids(ids)
    vocab.save(path)
    assert Vocabulary.load(path) == vocab


def test_ids_are_strings_not_numbers() -> None:
    vocab = Vocabulary.from_ids(["007", "7", "7.0"])
    assert len(vocab) == 3
    assert vocab.lookup(["7"]).tolist() == [1]


def test_rejects_duplicates_and_missing() -> None:
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="missing"):
        Vocabulary(["a", None])


def test_decode_rejects_out_of_range() -> None:
    vocab = Vocabulary(["a", "b"])
    with pytest.raises(IndexError):
        vocab.decode([2])
    with pytest.raises(IndexError):
        vocab.decode([-1])
