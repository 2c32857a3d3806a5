"""The served index's compact parts: memory-mapped ``.npz`` arrays (shared by server workers),
id lookups and grouped pairs in place of dicts, and a loaded index that answers exactly as
one built from the artifact's files the plain way (dicts, an in-memory V-SKNN fit)."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys import layout
from recsys.artifact_io import load_npz, save_npz
from recsys.errors import ArtifactError
from recsys.models.session_knn import SessionKNN, load_sessions, sessions_by_item
from recsys.serving.index import load_index
from recsys.serving.lookups import Grouped, Labels
from recsys.vocab import IdLookup


def _mapped(arr: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (not a private copy)."""
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base, mmap.mmap)


def test_mapped_npz_equals_the_plain_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"factors": rng.random((300, 70)).astype(np.float32),
              "codes": np.arange(50_000, dtype=np.int32),
              "fortran": np.asfortranarray(rng.random((200, 100))),
              "scalar": np.float32(0.5), "empty": np.zeros((0, 3)),
              "flags": rng.random(100) < 0.5, "text": np.array(["a", "bc"])}
    save_npz(tmp_path / "a.npz", **arrays)
    plain, mapped = load_npz(tmp_path / "a.npz"), load_npz(tmp_path / "a.npz", mmap=True)
    assert list(mapped) == list(plain)
    for name, arr in plain.items():
        assert mapped[name].dtype == arr.dtype and mapped[name].shape == arr.shape
        np.testing.assert_array_equal(mapped[name], arr)
        assert not mapped[name].flags.writeable
    assert [n for n in mapped if _mapped(mapped[n])] == ["factors", "codes", "fortran"]


def test_compressed_npz_is_read_not_mapped(tmp_path: Path) -> None:
    arr = np.arange(100_000, dtype=np.int64)
    np.savez_compressed(tmp_path / "c.npz", a=arr)
    loaded = load_npz(tmp_path / "c.npz", mmap=True)
    np.testing.assert_array_equal(loaded["a"], arr)
    assert not _mapped(loaded["a"])


def test_truncated_npz_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    save_npz(path, a=np.arange(100_000, dtype=np.int64))
    path.write_bytes(path.read_bytes()[:400_000])
    with pytest.raises(ArtifactError, match="t.npz"):
        load_npz(path, mmap=True)


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(max_size=12), unique=True, max_size=40),
       probes=st.lists(st.text(max_size=12), max_size=20))
def test_id_lookup_equals_a_dict(ids: list[str], probes: list[str]) -> None:
    lookup = IdLookup(ids, max_width=6)  # ids over 6 UTF-8 bytes take the dict path
    expected = {x: i for i, x in enumerate(ids)}
    for probe in ids + probes + [p + "\0" for p in ids]:
        assert lookup.get(probe) == expected.get(probe)
        assert (probe in lookup) == (probe in expected)
    assert len(lookup) == len(expected) and sorted(lookup) == sorted(expected)
    assert lookup.get(3) is None


def test_id_lookup_refuses_duplicates_and_missing() -> None:
    with pytest.raises(ValueError, match="distinct"):
        IdLookup(["a", "b", "a"])
    with pytest.raises(ValueError, match="missing"):
        IdLookup(pd.Series(["a", None], dtype="string"))


def test_labels_and_grouped_equal_dicts() -> None:
    ids = pd.Series([f"c{i}" for i in range(50)], dtype="string")
    segs = pd.Series([["champions", "at risk", "new"][i % 3] for i in range(50)])
    labels = Labels(ids, segs)
    assert dict(labels) == dict(zip(ids, segs, strict=True)) and "c50" not in labels
    key = np.array([0, 0, 3, 3, 3, 7])
    codes, counts = np.array([5, 6, 1, 2, 4, 0]), np.array([9, 2, 8, 8, 1, 3])
    grouped = Grouped.from_pairs(key, codes, counts, 9)
    assert sorted(grouped) == [0, 3, 7] and len(grouped) == 3
    assert 1 not in grouped and 9 not in grouped and -1 not in grouped
    assert grouped[3][0].tolist() == [1, 2, 4] and grouped[3][1].tolist() == [8, 8, 1]
    with pytest.raises(KeyError):
        grouped[1]


def test_sessions_by_item_is_the_transpose() -> None:
    matrix = sp.random(400, 60, density=0.05, format="csr", random_state=2)
    item_ptr, item_sessions = sessions_by_item(matrix.indptr, matrix.indices, 60)
    expected = matrix.T.tocsr()
    np.testing.assert_array_equal(item_ptr, expected.indptr)
    np.testing.assert_array_equal(item_sessions, expected.indices)


def test_loaded_index_equals_the_plain_build(demo_artifact: Path) -> None:
    """Every compact part answers as the dicts and the fitted V-SKNN the index held before."""
    index = load_index(demo_artifact)
    folder = demo_artifact / "versions" / index.version
    model = index.customer_model
    assert model is not None
    customers = pq.read_table(layout.CUSTOMERS.at(folder)).column("id").to_pylist()
    assert all(model.customers[c] == row for row, c in enumerate(customers))
    assert len(model.customers) == len(customers) and "no-such-customer" not in model.customers
    for name in ("user_factors", "item_factors", "purchases_indptr", "purchases_indices",
                 "purchases_day"):  # shared by workers, not copied (small ones are read)
        arr = getattr(model, name)
        assert _mapped(arr) or arr.nbytes < 1 << 16, name
    assert _mapped(model.user_factors) and _mapped(model.purchases_indices)
    segments = pq.read_table(layout.CUSTOMER_SEGMENTS.at(folder)).to_pandas()
    assert dict(index.segments) == dict(zip(segments["customer_id"].astype(str),
                                            segments["segment"].astype(str), strict=True))
    discount = pq.read_table(layout.DISCOUNT_CUSTOMERS.at(folder)).to_pandas()
    flagged = set(discount.loc[discount["discount_only"], "customer_id"].astype(str))
    assert all((c in index.discount_only) == (c in flagged) for c in discount["customer_id"])
    pairs = pq.read_table(layout.VIEWED_BOUGHT.at(folder)).to_pandas()
    code = {p: i for i, p in enumerate(index.ids)}
    expected: dict[int, list[tuple[int, int]]] = {}
    for a, b, n in zip(pairs["product_a"], pairs["product_b"], pairs["sessions"], strict=True):
        expected.setdefault(code[a], []).append((code[b], int(n)))
    assert sorted(index.bought_instead) == sorted(expected)
    for a, listed in expected.items():
        got_b, got_n = index.bought_instead[a]
        assert list(zip(got_b.tolist(), got_n.tolist(), strict=True)) == sorted(
            listed, key=lambda bn: -bn[1])

    stored = load_npz(layout.SESSIONS.at(folder))
    rows, n_items = (int(n) for n in stored["shape"])
    fitted = SessionKNN(similarity="dot").fit(sp.csr_matrix(
        (np.ones(len(stored["indices"])), stored["indices"], stored["indptr"]),
        shape=(rows, n_items)))
    older = load_sessions(layout.SESSIONS.at(folder))  # a version without the transpose
    assert index.sessions is not None and older is not None
    assert layout.SESSIONS_BY_ITEM.at(folder).exists()
    rng = np.random.default_rng(4)
    for _ in range(300):
        session = rng.integers(0, n_items, int(rng.integers(1, 6))).tolist()
        want = fitted.score_one(session, k=50)
        for served in (index.sessions, older):
            got = served.score_one(session, k=50)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_id_lookup_of_a_column_in_several_arrow_chunks() -> None:
    """A string column read from a large Parquet file is backed by several Arrow chunks (the
    3,000,000-order shop's customer table): the lookup reads them all."""
    import pyarrow as pa

    chunks = pa.chunked_array([["C2", "C0"], ["C1"], [], ["C3"]])
    ids = pd.Series(pd.arrays.ArrowStringArray(chunks))
    lookup = IdLookup(ids)
    assert [lookup[c] for c in ("C0", "C1", "C2", "C3")] == [1, 2, 0, 3]
    assert Labels(ids, pd.Series(["x", "y", "x", "y"]))["C3"] == "y"
