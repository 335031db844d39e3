"""Retention-matrix bookkeeping: lower-triangular entries, summaries, averaging, heatmap."""

from __future__ import annotations

import pytest

from seal.eval.retention import RetentionMatrix, held_share


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


def test_held_share_is_measured_against_what_the_reference_learned():
    # reference learns 0.6 on passages 0..1 and keeps 0.2: it loses 0.4
    ref = [matrix([[0.6], [0.4, 0.6], [0.2, 0.2, 0.8]])] * 2
    same = held_share(ref, ref)
    assert same["held"] == pytest.approx(0.0) and same["reference_lost"] == pytest.approx(0.4)
    keeps_all = held_share(ref, [matrix([[0.1], [0.1, 0.1], [0.6, 0.6, 0.1]])] * 2)
    assert keeps_all["held"] == pytest.approx(1.0)
    # a variant that learns little and so forgets little scores by what it has left, not by its forgetting
    learns_less = matrix([[0.25], [0.25, 0.25], [0.2, 0.2, 0.3]])
    assert learns_less.summary()["forgetting"] == pytest.approx(0.05)
    assert held_share(ref, [learns_less] * 2)["held"] == pytest.approx(0.0)


def test_held_share_pairs_sequences_and_bootstraps_them():
    ref = [matrix([[0.6], [0.0, 0.6]]), matrix([[0.4], [0.2, 0.8]])]
    var = [matrix([[0.6], [0.3, 0.6]]), matrix([[0.4], [0.2, 0.8]])]
    h = held_share(ref, var, n_boot=500, seed=1)
    # lost (0.6 + 0.2) / 2 = 0.4; gain (0.3 + 0) / 2 = 0.15
    assert h["held"] == pytest.approx(0.375) and h["sequences"] == 2
    lo, hi = h["ci95"]
    assert lo <= h["held"] <= hi and lo == pytest.approx(0.0) and hi == pytest.approx(0.5)
    assert held_share(ref, var, n_boot=500, seed=1) == h  # seeded
    with pytest.raises(ValueError, match="pairs sequences"):
        held_share(ref, var[:1])
