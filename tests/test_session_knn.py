"""Session-kNN and V-SKNN on hand-countable sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.models.session_knn import (
    SessionKNN,
    query_matrix,
    session_neighbours,
    session_votes,
    sums_by_key,
)

# training sessions over items 0..4
TRAIN = sp.csr_matrix(np.array([[1, 1, 0, 0, 0],
                                [1, 0, 1, 0, 0],
                                [0, 1, 0, 1, 1],
                                [0, 0, 0, 0, 1]], dtype=np.float32))


def test_query_rows_weight_by_position() -> None:
    q = query_matrix([[0, 1], [2, 0, 2]], 5, weighting="linear").toarray()
    assert q[0].tolist() == [0.5, 1.0, 0, 0, 0]
    assert q[1].tolist() == pytest.approx([2 / 3, 0, 1.0, 0, 0])  # item 2: its latest place
    assert query_matrix([[3, 3]], 5, weighting="binary").toarray()[0].tolist() == [0, 0, 0, 1, 0]


def test_cosine_neighbours_vote_with_their_similarity() -> None:
    model = SessionKNN(k=2, similarity="cosine").fit(TRAIN)
    scores = model.score(query_matrix([[1]], 5, weighting="binary")).toarray()[0]
    # sessions 0 and 2 hold item 1: cosine 1/sqrt(2) and 1/sqrt(3)
    a, b = 1 / np.sqrt(2), 1 / np.sqrt(3)
    assert scores.tolist() == pytest.approx([a, a + b, 0, b, b])


def test_only_the_k_most_similar_sessions_vote() -> None:
    model = SessionKNN(k=1, similarity="dot").fit(TRAIN)
    # query [0, 4]: weights 0.5 (item 0), 1 (item 4); sessions 0, 1 score 0.5, 2 and 3 score 1:
    # the tie goes to the lower session, 2
    scores = model.score(query_matrix([[0, 4]], 5, weighting="linear")).toarray()[0]
    assert scores.tolist() == [0, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="k must be"):
        SessionKNN(k=0)


def test_one_session_scores_as_the_batch() -> None:
    model = SessionKNN(k=2, similarity="dot").fit(TRAIN)
    for session in ([0, 4], [1], [3, 1, 0], [2, 2, 4]):
        batch = model.score(query_matrix([session], 5, weighting="linear")).toarray()[0]
        codes, scores = model.score_one(session)
        one = np.zeros(5)
        one[codes] = scores
        assert one.tolist() == pytest.approx(batch.tolist())


def test_one_session_on_random_sessions_as_the_batch() -> None:
    """Many sessions over a random training set with tied similarities: the compiled
    single-session scorer picks the same k neighbours (ties: the lower session) as the
    sparse batch and sums the same votes."""
    rng = np.random.default_rng(5)
    train = sp.random(400, 60, density=0.06, format="csr", random_state=rng)
    train.data[:] = 1.0
    model = SessionKNN(k=7, similarity="dot").fit(train)
    for _ in range(300):
        session = rng.integers(0, 60, int(rng.choice([1, 2, 4, 8]))).tolist()
        k = int(rng.choice([1, 7, 50, 1000]))
        batch = model.score(query_matrix([session], 60, weighting="linear"), k=k).toarray()[0]
        codes, scores = model.score_one(session, k=k)
        assert np.all(np.diff(codes) > 0) and np.all(scores > 0)
        one = np.zeros(60)
        one[codes] = scores
        assert one.tolist() == pytest.approx(batch.tolist(), rel=1e-12)
    with pytest.raises(ValueError, match="outside the training sessions"):
        model.score_one([60])


def test_compiled_sums_match_numpy() -> None:
    """``sums_by_key`` sums as ``np.unique`` + ``np.bincount`` (same order, to the bit)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(0, 300))
        high = int(rng.choice([1, 50, 2**40]))  # large keys: the hash table's collisions
        keys = rng.integers(0, high, n).astype(np.int32 if high < 2**31 and n % 2 else np.int64)
        values = rng.choice([0.1, 0.2, 0.3, 1 / 3, 0.7], n) * rng.random(n).round(1)
        found, sums, where = sums_by_key(keys, values)
        unique, inverse = np.unique(keys, return_inverse=True)
        assert found.tolist() == unique.tolist()
        assert where.tolist() == inverse.tolist()
        assert sums.tolist() == np.bincount(inverse, weights=values).tolist()
    with pytest.raises(ValueError, match="negative key"):
        sums_by_key(np.array([3, -1]), np.ones(2))


def reference_votes(model: SessionKNN, session: list[int], k: int
                    ) -> tuple[list[int], list[float]]:
    """V-SKNN's votes written plainly: every session holding a query item sums the weights
    of those it holds (in the query's item order), the sessions in ascending order, a
    stable sort of the negated sums, the ``k`` first vote with their items."""
    weights: dict[int, float] = {}
    for p, code in enumerate(session, start=1):
        weights[code] = p / len(session)  # an item keeps its first place, its latest weight
    by_indptr, by_indices, s_indptr, s_indices = model.arrays
    sums: dict[int, float] = {}
    for code, w in weights.items():
        for s in by_indices[by_indptr[code]:by_indptr[code + 1]].tolist():
            sums[s] = sums.get(s, 0.0) + w
    neighbours = sorted(sums)
    values = np.array([sums[s] for s in neighbours])
    items: list[int] = []
    votes: list[float] = []
    for r in np.argsort(-values, kind="stable")[:k].tolist():
        row = s_indices[s_indptr[neighbours[r]]:s_indptr[neighbours[r] + 1]].tolist()
        items += row
        votes += [float(values[r])] * len(row)
    return items, votes


def test_session_votes_as_written_plainly() -> None:
    """The compiled votes (sessions holding one query item read in order, the others
    sorted) are the plain reference's, to the bit and in order, on random sessions with
    many tied similarities, sessions holding several query items, and k past the end."""
    rng = np.random.default_rng(11)
    for case in range(300):
        n_sessions, n_items = int(rng.choice([5, 80, 600])), int(rng.choice([4, 30]))
        train = sp.random(n_sessions, n_items, density=float(rng.choice([0.05, 0.3])),
                          format="csr", random_state=rng)
        train.data[:] = 1.0
        model = SessionKNN(k=5, similarity="dot").fit(train)
        session = rng.integers(0, n_items, int(rng.choice([1, 2, 3, 6, 10]))).tolist()
        k = int(rng.choice([1, 3, 20, 100, 10_000]))
        items, votes = session_votes(*model.arrays, np.array(session, np.int64), k)
        want_items, want_votes = reference_votes(model, session, k)
        assert items.tolist() == want_items, case
        assert votes.tolist() == want_votes, case


def test_sampled_neighbours_are_those_of_each_items_last_sessions() -> None:
    """With a sample, each query item brings only its last ``sample`` training sessions: the
    neighbours and similarities are the plain reference's over those sessions alone (a
    session outside an item's sample does not count that item), and a sample at least as
    large as every item's sessions changes nothing."""
    rng = np.random.default_rng(5)
    for case in range(200):
        train = sp.random(int(rng.choice([40, 400])), 12, density=0.3, format="csr",
                          random_state=rng)
        train.data[:] = 1.0
        by_indptr, by_indices, _, _ = SessionKNN(similarity="dot").fit(train).arrays
        session = rng.integers(0, 12, int(rng.choice([1, 3, 8]))).tolist()
        k, sample = int(rng.choice([1, 10, 100])), int(rng.choice([1, 5, 30]))
        weights: dict[int, float] = {}
        for p, code in enumerate(session, start=1):
            weights[code] = p / len(session)
        sums: dict[int, float] = {}
        for code, w in weights.items():
            lo, hi = by_indptr[code], by_indptr[code + 1]
            for s in by_indices[max(lo, hi - sample):hi].tolist():
                sums[s] = sums.get(s, 0.0) + w
        ascending = sorted(sums)
        values = np.array([sums[s] for s in ascending])
        best = np.argsort(-values, kind="stable")[:k]
        found, sims = session_neighbours(by_indptr, by_indices, np.array(session, np.int64), k,
                                         sample)
        assert found.tolist() == [ascending[r] for r in best.tolist()], case
        assert sims.tolist() == values[best].tolist(), case
        whole = session_neighbours(by_indptr, by_indices, np.array(session, np.int64), k)
        large = session_neighbours(by_indptr, by_indices, np.array(session, np.int64), k,
                                   int(np.diff(by_indptr).max()))
        assert all(np.array_equal(a, b) for a, b in zip(whole, large, strict=True)), case


def test_the_sample_is_the_latest_sessions_whatever_their_ids() -> None:
    """The models job's view sessions are rows in time order, so an item's last sessions are
    its latest: with random-looking session ids (the latest sorting first), a sample of one
    session of product a finds the session that viewed it last, and votes for that one's c."""
    from recsys.matrices import item_vocabulary, view_sessions
    from recsys.models.session_knn import sessions_by_item

    t0 = pd.Timestamp("2026-03-01 10:00")
    events = pd.DataFrame({
        "session_id": pd.array(["f3e1", "f3e1", "07b2", "07b2", "9c4d"], dtype="string"),
        "product_id": ["a", "b", "a", "c", "b"],
        "event_type": ["view"] * 5,
        "occurred_at": [t0, t0 + pd.Timedelta(minutes=1), t0 + pd.Timedelta(hours=5),
                        t0 + pd.Timedelta(hours=5, minutes=2), t0 + pd.Timedelta(hours=1)],
    })
    items = item_vocabulary(events)
    sessions = view_sessions(events, items, None)
    assert sessions is not None
    by_indptr, by_indices = sessions_by_item(sessions.indptr, sessions.indices, len(items))
    a, c = items.lookup(["a", "c"]).tolist()
    found, _ = session_neighbours(by_indptr, by_indices, np.array([a], np.int64), 1, 1)
    assert found.tolist() == [2]  # "07b2", viewed last, is the last row
    assert sessions[found[0]].indices.tolist() == [a, c]
