"""Session-kNN and V-SKNN on hand-countable sessions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.session_knn import SessionKNN, query_matrix

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
