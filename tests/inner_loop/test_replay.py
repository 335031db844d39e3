"""Token-level compute-equivalent replay: exact replay share per step at constant step tokens, the
new data shrinking by the same amount, seeded streams, and the offline general-text source."""

from __future__ import annotations

import pytest

from seal.data.sources import DataError
from seal.inner_loop.replay import TokenStream, general_corpus, load_corpus, pack_steps


def streams(seed: int = 0):
    new = TokenStream([[1] * n for n in (7, 30, 12, 5)], eos=0, seed=seed)
    old = TokenStream([[2] * n for n in (40, 9, 17)], eos=0, seed=seed + 1)
    return new, old


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.25, 0.5])
def test_every_step_has_the_exact_replay_share(fraction):
    new, old = streams()
    steps = pack_steps(new, old, fraction, batch_tokens=200, steps=6, seq_len=64)
    for rows in steps:
        total = sum(len(ids) for ids, _ in rows)
        replayed = sum(len(ids) for ids, is_replay in rows if is_replay)
        assert total == 200 and replayed == round(fraction * 200)
        assert all(len(ids) <= 64 for ids, _ in rows)
        assert all(set(ids) <= {2, 0} for ids, is_replay in rows if is_replay)  # replay rows hold old tokens only
        assert all(set(ids) <= {1, 0} for ids, is_replay in rows if not is_replay)
    new_seen = sum(len(ids) for rows in steps for ids, r in rows if not r)
    assert new_seen == 6 * (200 - round(fraction * 200))  # the new data shrinks by the replayed amount


def test_streams_are_seeded_and_cover_every_document():
    a = pack_steps(*streams(0), 0.25, 100, 5, 32)
    assert a == pack_steps(*streams(0), 0.25, 100, 5, 32)
    assert a != pack_steps(*streams(3), 0.25, 100, 5, 32)
    s = TokenStream([[5], [6], [7]], eos=0, seed=1)
    assert sorted(t for t in s.take(6) if t) == [5, 6, 7]  # one pass: every document once, EOS-separated
    with pytest.raises(ValueError, match="replay fraction"):
        pack_steps(*streams(), 1.0, 100, 1, 32)


def test_general_corpus_is_offline_prose(tmp_path):
    corpus = general_corpus()
    assert len(corpus) > 100 and sum(map(len, corpus)) > 50_000
    assert not any(">>>" in t for t in corpus)
    assert corpus == general_corpus()  # fixed order
    (tmp_path / "c.jsonl").write_text('{"text": "one"}\n{"text": 2}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: expected an object with a string field 'text'"):
        load_corpus(str(tmp_path / "c.jsonl"))
    (tmp_path / "c.txt").write_text("first paragraph\n\nsecond one\n")
    assert load_corpus(str(tmp_path / "c.txt")) == ["first paragraph", "second one"]
