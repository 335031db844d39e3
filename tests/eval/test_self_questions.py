"""The questions the policy writes itself (`restem.reward=self_questions`): how its text becomes pairs,
and that a context's questions do not depend on which other contexts are written with it."""

from __future__ import annotations

import pytest
from learning import knowledge_task, passages

from seal.data.passage import Question
from seal.eval.self_questions import SelfQuestionsConfig, examined, examiner_prompt, parse_pairs


def test_pairs_are_parsed_in_order_from_the_usual_layouts():
    text = """Here is the quiz.
Q: Where did Velmora go?
A: to the river
Q1. Who is the mayor?
Answer 1: Ansel Brenna
- **Q:** When is the festival? **A:** every March
2) Question: What does the town export?
A. copper wire
"""
    assert parse_pairs(text, 10) == [Question("Where did Velmora go?", "to the river"),
                                     Question("Who is the mayor?", "Ansel Brenna"),
                                     Question("When is the festival?", "every March"),
                                     Question("What does the town export?", "copper wire")]


def test_an_inline_answer_follows_a_question_mark_or_full_stop_only():
    """"A:" inside a question (vitamin A, a grade, a label) does not cut it: only "...? A: x" or "... . A: x"
    on one line is a question with its answer."""
    assert parse_pairs("Q: What does vitamin A: do?\nA: helps vision", 5) == [
        Question("What does vitamin A: do?", "helps vision")]
    assert parse_pairs("Q: What? A: radium", 5) == [Question("What?", "radium")]
    assert parse_pairs("Q: Name the element. Answer: radium", 5) == [Question("Name the element.", "radium")]
    assert parse_pairs("Q: Who got grade A: Ann or Bo?\nA: Ann", 5) == [Question("Who got grade A: Ann or Bo?", "Ann")]
    assert parse_pairs("Q: What is vitamin A: a mineral? A: no", 5) == [Question("What is vitamin A: a mineral?", "no")]


def test_caps_malformed_lines_and_repeats():
    text = "Q: one?\nA: 1\nQ: two?\nA: 2\nQ: three?\nA: 3"
    assert [q.question for q in parse_pairs(text, 2)] == ["one?", "two?"]  # the first max_questions pairs
    messy = ("A: an answer with no question\n"      # no question pending: ignored
             "Q: asked but never answered?\n"        # replaced by the next question
             "Q: first?\nsome chatter in between\nA: yes\n"  # a stray line between Q and A is ignored
             "Q:\nA: empty question\n"               # empty question: dropped
             "Q: First?\nA: again\n"                 # the same question again (any case): dropped
             "Q: last?\nA:   ")                      # empty answer: dropped
    assert parse_pairs(messy, 5) == [Question("first?", "yes")]


def test_no_pair_found():
    assert parse_pairs("", 5) == []
    assert parse_pairs("The passage is about a town.\nQuite so.\nAnd a river.", 5) == []
    assert parse_pairs("Q: a question with no answer", 5) == []


def test_the_prompt_shows_the_passage_and_the_exam_replaces_only_the_questions():
    p = passages(1)[0]
    cfg = SelfQuestionsConfig(max_questions=3)
    text = examiner_prompt(p, cfg, tok=None, chat=False)
    assert p.title in text and p.context in text and "up to 3 " in text
    e = examined(p, [Question("q?", "a")])
    assert (e.title, e.context, e.uid, e.questions) == (p.title, p.context, p.uid, [Question("q?", "a")])
    assert p.questions != e.questions  # the passage itself is unchanged


def test_the_same_seed_writes_the_same_questions_whatever_else_is_written():
    """Sampled (temperature 1), so the seed matters: a context's text depends on its own seed only, not
    on the other contexts of the call, nor on the session (a resumed run opens a new one)."""
    from seal.domains.knowledge.domain import KnowledgeSession
    from seal.domains.knowledge.self_edit import SelfEditConfig

    task = knowledge_task(k=2)
    cfg = SelfQuestionsConfig(temperature=1.0, max_new_tokens=16)
    ps = passages(3)
    alone = task.write_self_questions([ps[0]], cfg, [7])[0]
    among = task.write_self_questions([ps[1], ps[0], ps[2]], cfg, [3, 7, 5])[1]
    assert alone == among and alone["text"]
    other = task.write_self_questions([ps[0]], cfg, [8])[0]
    assert other["text"] != alone["text"]

    first = KnowledgeSession(task, SelfEditConfig(), "self_questions", cfg, seed=11)
    again = KnowledgeSession(task, SelfEditConfig(), "self_questions", cfg, seed=11)
    later = KnowledgeSession(task, SelfEditConfig(), "self_questions", cfg, seed=12)  # another round
    w = first.self_questions([ps[0], ps[1]])
    assert again.self_questions([ps[2], ps[1]])[1] == w[1] and again.self_questions([ps[0]])[0] == w[0]
    assert later.self_questions([ps[0]])[0]["text"] != w[0]["text"]
    calls = []
    real = task.write_self_questions
    task.write_self_questions = lambda p, c, s: calls.append(len(p)) or real(p, c, s)
    assert first.self_questions([ps[1], ps[0]]) == [w[1], w[0]] and calls == []  # kept, not written again


def test_the_measures_are_checked():
    task = knowledge_task(k=2)
    job = [(passages(1)[0], "", "none", 1)]
    with pytest.raises(ValueError, match="self-written questions of every item"):
        task.adapt_and_evaluate_many(job, measure="self_questions")
    for bad in (("accuracy", "luck"), ("accuracy", "accuracy"), ()):
        with pytest.raises(ValueError, match="at most once"):
            task.adapt_and_evaluate_many(job, measure=bad)
