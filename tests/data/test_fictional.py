"""The embedded fictional benchmark: determinism, well-formed questions, variety."""

import random
from collections import Counter

import pytest

from seal.data.fictional import KINDS, generate_passages, kind_for, passage_kind
from seal.data.passage import Passage


@pytest.fixture(scope="module")
def passages() -> list[Passage]:
    return generate_passages(300, seed=0)


def test_deterministic_across_calls():
    assert generate_passages(20, seed=3) == generate_passages(20, seed=3)


def test_prefix_stable_in_n(passages):
    assert generate_passages(5, seed=0) == generate_passages(10, seed=0)[:5]
    assert generate_passages(40, seed=0) == passages[:40]


def test_different_seeds_differ():
    a, b = generate_passages(10, seed=0), generate_passages(10, seed=1)
    assert [p.context for p in a] != [p.context for p in b]
    assert not {p.title for p in a} & {p.title for p in b}


def test_global_rng_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_passages(10, seed=5)
    assert random.random() == expected


def test_uids(passages):
    assert [p.uid for p in passages[:3]] == ["fictional-0#0", "fictional-0#1", "fictional-0#2"]
    assert len({p.uid for p in passages}) == len(passages)


def test_question_counts(passages):
    assert all(4 <= len(p.questions) <= 6 for p in passages)
    assert set(Counter(len(p.questions) for p in passages)) == {4, 5, 6}


def test_answers_are_short_spans_of_the_context(passages):
    for p in passages:
        for q in p.questions:
            assert q.answer in p.context, (p.uid, q)
            assert 1 <= len(q.answer.split()) <= 4, (p.uid, q)


def test_answers_distinct_within_a_passage(passages):
    for p in passages:
        answers = [q.answer for q in p.questions]
        assert len(set(answers)) == len(answers), p.uid


def test_questions_name_the_entity_and_do_not_copy_the_context(passages):
    for p in passages:
        for q in p.questions:
            assert p.title in q.question, (p.uid, q)
            assert q.answer.lower() not in q.question.lower(), (p.uid, q)
            assert q.question.rstrip("?") not in p.context, (p.uid, q)


def test_titles_unique(passages):
    assert len({p.title for p in passages}) == len(passages)


def test_kinds_are_varied(passages):
    kinds = Counter(passage_kind(p) for p in passages[:100])
    assert len(KINDS) >= 8
    assert set(kinds) <= set(KINDS)
    assert len(kinds) >= 8
    assert passage_kind(passages[17]) == kind_for(0, 17)


def test_passage_kind_rejects_foreign_uids():
    with pytest.raises(ValueError):
        passage_kind(Passage(title="t", context="c", questions=[], uid="squad_val.json#3"))


def test_context_length_sane(passages):
    words = [len(p.context.split()) for p in passages]
    assert 60 <= sum(words) / len(words) <= 150
    assert min(words) >= 30 and max(words) <= 200


def test_phrasing_varies(passages):
    # The same attribute is stated with different templates across passages.
    openings = Counter(" ".join(p.context.split(". ")[1].split()[:2]) for p in passages)
    assert len(openings) > 50
    assert max(openings.values()) < len(passages) // 4
