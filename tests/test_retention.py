"""Retention-matrix bookkeeping: lower-triangular entries, summaries, averaging, heatmap."""

from __future__ import annotations

import pytest

from seal.retention import RetentionMatrix


def matrix(rows):
    m = RetentionMatrix(len(rows))
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            m.record(i, j, v)
    return m


def test_summaries_follow_the_definitions(tmp_path):
    m = matrix([[0.4], [0.3, 0.6], [0.2, 0.5, 0.8]])
    assert m.complete() and m.rows() == [[0.4], [0.3, 0.6], [0.2, 0.5, 0.8]]
    s = m.summary()
    assert s["first_retention"] == 0.2
    assert s["off_diagonal"] == pytest.approx((0.3 + 0.2 + 0.5) / 3)
    assert s["diagonal"] == pytest.approx((0.4 + 0.6 + 0.8) / 3)
    assert s["forgetting"] == pytest.approx(((0.4 - 0.2) + (0.6 - 0.5)) / 2)
    assert m.heatmap(tmp_path / "r.png", "test").stat().st_size > 1000


def test_only_seen_passages_and_entrywise_mean():
    m = RetentionMatrix(3)
    with pytest.raises(ValueError, match=r"retention\[0\]\[1\]"):
        m.record(0, 1, 0.5)  # passage 1 is not seen after edit 0
    m.record(0, 0, 1.0)
    assert not m.complete()
    avg = RetentionMatrix.mean([matrix([[1.0], [0.0, 1.0]]), matrix([[0.5], [0.5, 0.0]])])
    assert avg.rows() == [[0.75], [0.25, 0.5]]
    with pytest.raises(ValueError, match="same size"):
        RetentionMatrix.mean([matrix([[1.0]]), matrix([[1.0], [1.0, 1.0]])])
