"""Graders: answer normalisation and matching, the local LM judge, and an OpenAI-compatible endpoint."""

import copy
import json
from dataclasses import asdict, replace

import pytest
import torch
from fake_judge import judge_fixtures

from seal.eval.graders import (
    Grade,
    GradeItem,
    GraderConfig,
    GraderError,
    JudgeGrader,
    MatchGrader,
    OpenAIGrader,
    contains,
    make_grader,
    normalize,
    token_f1,
)

# ---------------------------------------------------------------------------------------------
# normalize / token_f1 / contains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expect", [
    ("The Lantern Drift", "lantern drift"),
    ("  An  apple, a DAY!  ", "apple day"),
    ("1,118", "1118"),
    ("Theatre of the Absurd", "theatre of absurd"),  # "the" inside a word stays
    ("", ""),
    ("...", ""),
])
def test_normalize(text, expect):
    assert normalize(text) == expect


def test_token_f1():
    assert token_f1("The Lantern Drift", "lantern drift") == 1.0
    assert token_f1("lantern", "lantern drift") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("a red lantern drift boat", "Lantern Drift") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("nothing shared", "lantern drift") == 0.0
    assert token_f1("", "lantern drift") == 0.0
    assert token_f1("lantern drift", "") == 0.0
    assert token_f1("drift drift", "drift") == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # counts, not sets


@pytest.mark.parametrize("answer,gold,expect", [
    ("The Lantern Drift", "lantern drift", True),
    ("It was called the lantern drift, I think.", "The Lantern Drift", True),
    ("1874", "18", False),  # word boundary: a number inside a longer number is no match
    ("In 1874.", "1874", True),
    ("about 1,118 people", "1,118", True),
    ("about 1118 people", "1,118", True),
    ("about 1,119 people", "1,118", False),
    ("drifting lanterns", "lantern drift", False),
    ("lantern", "lantern drift", False),
    ("Denver Broncos", "Broncos", True),
    ("", "lantern drift", False),  # empty answer is wrong
    ("   ", "x", False),
    ("the", "the", False),  # normalises to nothing
])
def test_contains(answer, gold, expect):
    assert contains(answer, gold) is expect


def test_match_grader():
    items = [GradeItem("Q1", "Lantern Drift", "the lantern drift"), GradeItem("Q2", "18", "1874"),
             GradeItem("Q3", "1,118", "1118 men"), GradeItem("Q4", "Broncos", "")]
    grades = MatchGrader().grade(items)
    assert [g.correct for g in grades] == [True, False, True, False]
    assert [g.f1 for g in grades] == [token_f1(it.answer, it.gold) for it in items]
    assert grades[3] == Grade(correct=False, f1=0.0)
    assert MatchGrader().grade([]) == []
    assert isinstance(make_grader(GraderConfig(kind="match")), MatchGrader)


def test_make_grader_errors():
    with pytest.raises(ValueError, match="'telepathy'"):
        make_grader(GraderConfig(kind="telepathy"))
    with pytest.raises(ValueError, match="can't judge itself"):
        make_grader(GraderConfig(kind="judge", judge_model="policy"))
    with pytest.raises(ValueError, match="grader.judge_model"):
        make_grader(GraderConfig(kind="judge"))
    with pytest.raises(ValueError, match="grader.concurrency"):
        make_grader(GraderConfig(kind="openai", concurrency=0))


# ---------------------------------------------------------------------------------------------
# JudgeGrader on the tiny random model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from seal.models.tiny import tiny_model_and_tokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is tiny; more threads only contend on a busy machine
    model, tok = tiny_model_and_tokenizer()
    yield model.eval(), tok
    torch.set_num_threads(threads)


ITEMS = [
    GradeItem("What is the capital of Velmora?", "Tarvik", "Tarvik"),
    GradeItem("Who founded it?", "Ansel Quorrin", "nobody really, it was a long long story of many many words"),
    GradeItem("When?", "1874", ""),
    GradeItem("When was the town founded?", "1874", "in 1874"),
    GradeItem("Which river?", "the Tarvik", "   "),
    GradeItem("a", "b", "c"),
]


def test_judge_one_grade_per_item_and_empty_is_wrong(tiny):
    model, tok = tiny
    grader = JudgeGrader(model, tok, GraderConfig().prompt, chat=True, batch_size=4)
    grades = grader.grade(ITEMS)
    assert len(grades) == len(ITEMS) and all(isinstance(g, Grade) for g in grades)
    assert grades[2].correct is False and grades[4].correct is False
    assert [g.f1 for g in grades] == [token_f1(it.answer, it.gold) for it in ITEMS]
    assert grader.grade([]) == []


def test_judge_deterministic_batch_invariant_and_restores_padding(tiny):
    model, tok = tiny
    tok.padding_side = "right"
    grader = JudgeGrader(model, tok, GraderConfig().prompt, chat=True, batch_size=4)
    a = grader.grade(ITEMS)
    assert grader.grade(ITEMS) == a
    assert JudgeGrader(model, tok, GraderConfig().prompt, chat=True, batch_size=4).grade(ITEMS) == a
    assert tok.padding_side == "right"
    one_by_one = JudgeGrader(model, tok, GraderConfig().prompt, chat=True, batch_size=1).grade(ITEMS)
    assert [g.correct for g in one_by_one] == [g.correct for g in a]
    raw = JudgeGrader(model, tok, GraderConfig().prompt, chat=False, batch_size=16).grade(ITEMS)
    assert len(raw) == len(ITEMS) and raw[2].correct is False


def _first_token(tok, word: str) -> int:
    return tok(word, add_special_tokens=False)["input_ids"][0]


def _biased(model, tok, words: list[str]):
    """A copy of the tiny model whose output head strongly prefers the first token of `words`."""
    m = copy.deepcopy(model)
    head = torch.nn.Linear(m.config.hidden_size, m.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        for w in words:
            head.bias[_first_token(tok, w)] = 20.0
    m.lm_head = head
    return m


@pytest.mark.parametrize("words,verdict", [(["yes", " yes"], True), (["no", " no"], False)])
def test_judge_verdict_follows_yes_no_probability(tiny, words, verdict):
    model, tok = tiny
    grader = JudgeGrader(_biased(model, tok, words), tok, GraderConfig().prompt, chat=True)
    grades = grader.grade(ITEMS)
    assert [g.correct for g in grades] == [verdict and bool(it.answer.strip()) for it in ITEMS]


# ---------------------------------------------------------------------------------------------
# OpenAIGrader against a real local HTTP server (FakeJudge, tests/fake_judge.py)
# ---------------------------------------------------------------------------------------------


KEY = "sk-test-0123456789-secret"
ENV = "SEAL_TEST_GRADER_KEY"

endpoint, ocfg = judge_fixtures(KEY, ENV, url_suffix="/", model="judge-model", timeout_s=5.0, max_retries=2,
                                backoff_s=0.001, backoff_max_s=0.01)


def test_openai_request_carries_key_and_prompt(endpoint, ocfg):
    grader = make_grader(ocfg)
    assert isinstance(grader, OpenAIGrader)
    item = GradeItem("Who founded Velmora?", "Ansel Quorrin", "It was Ansel Quorrin.")
    assert grader.grade([item]) == [Grade(correct=True, f1=token_f1(item.answer, item.gold))]
    (req,) = endpoint.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == ocfg.max_tokens
    content = body["messages"][-1]["content"]
    assert content == ocfg.prompt.format(question=item.question, gold=item.gold, answer=item.answer)
    assert item.question in content and item.gold in content and item.answer in content
    assert KEY not in json.dumps(body)


def test_openai_yes_no_replies(endpoint, ocfg):
    replies = {"A1": "yes", "A2": "no", "A3": "Yes.", "A4": "No, it does not.", "A5": " YES", "A6": "Nope"}
    endpoint.reply = lambda body: next(v for k, v in replies.items() if f"Student answer: {k}\n" in
                                       body["messages"][-1]["content"])
    items = [GradeItem(f"Q{k}", "gold", k) for k in replies]
    grades = OpenAIGrader(ocfg).grade(items)
    assert [g.correct for g in grades] == [True, False, True, False, True, False]
    assert len(endpoint.requests) == len(items)


def test_openai_empty_answer_is_wrong_without_a_request(endpoint, ocfg):
    grades = OpenAIGrader(ocfg).grade([GradeItem("Q", "gold", ""), GradeItem("Q", "gold", "  "),
                                       GradeItem("Q", "gold", "gold")])
    assert [g.correct for g in grades] == [False, False, True]
    assert len(endpoint.requests) == 1


def test_openai_retries_then_succeeds(endpoint, ocfg):
    endpoint.script["Q"] = ["500"]  # the first request fails
    assert OpenAIGrader(ocfg).grade([GradeItem("Q", "gold", "gold")])[0].correct is True
    assert len(endpoint.requests) == 2


def test_openai_gives_up_after_max_retries(endpoint, ocfg):
    endpoint.default = "500"  # every request fails
    with pytest.raises(GraderError, match=r"failed after 3 tries") as e:  # the first try and max_retries=2 more
        OpenAIGrader(ocfg).grade([GradeItem("Q", "gold", "gold")])
    assert len(endpoint.requests) == 3
    assert endpoint.url in str(e.value) and KEY not in str(e.value)


def test_openai_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(GraderError, match=ENV):
        OpenAIGrader(GraderConfig(kind="openai", api_key_env=ENV))
    monkeypatch.setenv(ENV, "")
    with pytest.raises(RuntimeError, match=ENV):
        make_grader(GraderConfig(kind="openai", api_key_env=ENV))


def test_openai_key_is_not_written_anywhere(endpoint, ocfg, tmp_path):
    grader = OpenAIGrader(ocfg)
    grader.grade([GradeItem("Q", "gold", "gold")])
    assert KEY not in str(grader.cfg) and KEY not in repr(grader.cfg)
    assert KEY not in json.dumps(asdict(grader.cfg))
    assert KEY not in str(replace(grader.cfg))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["verdicts.jsonl"]  # the verdict cache, and nothing else
    assert all(KEY.encode() not in p.read_bytes() for p in files)
