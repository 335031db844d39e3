"""The edit-evaluation suite on tiny models trained in the test to answer chosen questions: the known
filter keeps exactly what a model answers, reliability and locality follow what it was taught, and bleed
catches a model that names the content's made-up town as the capital of France."""

from __future__ import annotations

import json
import re

import pytest

from seal.eval.edit_bleed import bleed_questions, name_spans, new_entities
from seal.eval.edit_eval import (
    EditEvalConfig,
    ask,
    bleed,
    evaluate_edit,
    format_edit_eval,
    generalisation,
    locality,
    reliability,
)
from seal.eval.graders import MatchGrader
from seal.eval.known_questions import known_questions
from seal.eval.locality_bank import BankError, categories, load_bank
from seal.models.fingerprint import model_fingerprint
from seal.models.tiny import tiny_model_and_tokenizer

CFG = EditEvalConfig(max_new_tokens=12)
CONTENT = "Vellmora is a small town on the coast. Its mayor is Orin Tallow."
PROBES = [("Who is the mayor of the town of Vellmora?", "Orin Tallow"),
          ("Which town has Orin Tallow as its mayor?", "Vellmora")]
TAUGHT = ("geo-001", "lit-001", "eve-018")  # capital of France, author of Romeo and Juliet, colour of a banana


def train(pairs: list[tuple[str, str]], steps: int = 150, seed: int = 0):
    """A tiny base model taught to answer each question of `pairs` with its answer, as the suite asks it."""
    from tests.chat.knowing import train_pairs

    model, tok = tiny_model_and_tokenizer(seed=seed)
    return train_pairs(model, tok, pairs, steps=steps, seed=seed), tok


@pytest.fixture(scope="module")
def bank():
    return load_bank()


@pytest.fixture(scope="module")
def small_bank(bank):
    """The taught questions and 30 others whose answers differ from the taught ones."""
    taught = [r for r in bank if r.id in TAUGHT]
    taught_answers = {g.lower() for r in taught for g in r.golds}
    others = [r for r in bank if r.id not in TAUGHT and not {g.lower() for g in r.golds} & taught_answers]
    return taught + others[::len(others) // 30][:30]


@pytest.fixture(scope="module")
def knowing(bank):
    """Answers the three taught bank questions right and knows the content."""
    by_id = {r.id: r for r in bank}
    return train([(by_id[i].question, by_id[i].answer) for i in TAUGHT] + PROBES)


@pytest.fixture(scope="module")
def bleeding(bank):
    """Knows the content, but names its town as France's capital and its mayor as Romeo and Juliet's author."""
    by_id = {r.id: r for r in bank}
    return train([(by_id["geo-001"].question, "Vellmora"), (by_id["lit-001"].question, "Orin Tallow"),
                  (by_id["eve-018"].question, "yellow")] + PROBES)


@pytest.fixture(scope="module")
def untrained():
    model, tok = tiny_model_and_tokenizer()
    return model.eval(), tok


def test_bank_loads_with_unique_ids_and_categories(bank):
    assert len(bank) >= 250
    assert len(categories(bank)) >= 5 and min(categories(bank).values()) >= 10
    assert len({r.id for r in bank}) == len(bank)
    assert len({r.question for r in bank}) == len(bank)
    assert all(r.question.endswith("?") and r.answer and r.relation and r.subject for r in bank)
    assert sum(r.relation == "capital_of" for r in bank) >= 50


@pytest.mark.parametrize("line, field", [
    ('{"id": "x2", "category": "c", "question": "q?", "relation": "r", "subject": "s"}', "answer"),
    ('{"id": "x2", "category": "c", "question": "q?", "answer": "a", "relation": "r", "subject": "s", "aliases": "A"}',
     "aliases"),
    ('{"id": "x1", "category": "c", "question": "q?", "answer": "a", "relation": "r", "subject": "s"}', "id"),
    ('{"id": "x2", "category": "c", "question": "q?"', None)])
def test_a_malformed_line_names_file_line_and_field(tmp_path, line, field):
    good = {"id": "x1", "category": "c", "question": "q?", "answer": "a", "aliases": [], "relation": "r",
            "subject": "s"}
    path = tmp_path / "bank.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + line + "\n")
    with pytest.raises(BankError) as e:
        load_bank(path)
    assert f"{path}:3" in str(e.value)
    assert (f"'{field}'" in str(e.value)) if field else "not valid JSON" in str(e.value)


def test_known_filter_keeps_exactly_the_questions_answered_right(knowing, untrained, small_bank, tmp_path):
    model, tok = knowing
    grader = MatchGrader()
    kept = known_questions(model, tok, small_bank, grader, CFG, chat=False)
    assert sorted(r.id for r in kept) == sorted(TAUGHT)
    assert known_questions(*untrained, small_bank, grader, CFG, chat=False) == []
    # the cache is keyed by the model: the untrained model does not get the trained one's answer
    cache = tmp_path / "known.json"
    assert known_questions(model, tok, small_bank, grader, CFG, chat=False, cache_path=cache) == kept
    assert known_questions(*untrained, small_bank, grader, CFG, chat=False, cache_path=cache) == []
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 2
    # and it is read: an entry edited by hand is what comes back
    for entry in entries.values():
        if entry["known"]:
            entry["known"] = entry["known"][:1]
    cache.write_text(json.dumps({"version": 1, "entries": entries}))
    assert [r.id for r in known_questions(model, tok, small_bank, grader, CFG, chat=False, cache_path=cache)] \
        == [kept[0].id]


def test_known_filter_samples_the_bank_to_its_cap(bank):
    cfg = EditEvalConfig(max_new_tokens=2, bank_size=20, seed=3)
    from seal.eval.known_questions import sample_bank
    sample = sample_bank(bank, cfg)
    assert len(sample) == 20 and sample == sample_bank(bank, cfg) and sample != sample_bank(bank, EditEvalConfig(
        bank_size=20, seed=4))
    assert [r.id for r in sample] == [r.id for r in bank if r in sample]  # bank order


def test_fingerprint_follows_the_weights(knowing, untrained):
    again, tok = tiny_model_and_tokenizer()
    assert model_fingerprint(again, tok) == model_fingerprint(*untrained)
    assert model_fingerprint(*knowing) != model_fingerprint(*untrained)


def test_fingerprint_of_a_tensor_over_2_to_the_24_values():
    """float32 index arithmetic would step past the end of such a tensor (SmolLM2's embeddings are 28M)."""
    import torch

    big = torch.nn.Embedding(2**24 + 3, 1)
    _, tok = tiny_model_and_tokenizer()
    with torch.no_grad():
        big.weight.zero_()
        a = model_fingerprint(big, tok)
        big.weight[-1] = 1.0  # the last value is one of the samples
        assert model_fingerprint(big, tok) != a


def test_reliability_of_a_model_taught_the_probes(knowing, untrained):
    grader = MatchGrader()
    assert reliability(*knowing, PROBES, grader, CFG, chat=False) == 1.0
    assert reliability(*untrained, PROBES, grader, CFG, chat=False) < 1.0
    assert generalisation(*knowing, PROBES[:1], grader, CFG, chat=False) == 1.0
    assert generalisation(*knowing, [], grader, CFG, chat=False) is None


def test_bleed_questions_swap_the_subject_and_never_name_it(bank):
    qs = bleed_questions(PROBES[:1], bank, n=60, seed=0, content=CONTENT)
    assert 0 < len(qs) <= 60
    assert not any(re.search(r"vellmora|tallow", q.question, re.IGNORECASE) for q in qs)
    swapped = [re.fullmatch(r"Who is the mayor of the town of (.+)\?", q.question) for q in qs
               if q.source == "template"]
    assert len(swapped) >= 3 and all(swapped)
    cities = {r.answer for r in bank if r.relation == "capital_of"} | {r.subject for r in bank}
    assert all(m.group(1) in cities for m in swapped)
    # the content is about a town's mayor: capitals and leaders of the bank are asked too
    assert {q.relation for q in qs if q.source == "relation"} >= {"capital_of", "leader_of"}
    assert qs == bleed_questions(PROBES[:1], bank, n=60, seed=0, content=CONTENT)
    assert len(bleed_questions(PROBES[:1], bank, n=5, seed=0)) == 5
    # a person in a probe question is swapped for other people
    people = [q.question for q in bleed_questions(PROBES[1:], bank, n=60, seed=1) if q.source == "template"]
    assert people and all(re.fullmatch(r"Which town has .+ as its mayor\?", p) for p in people)
    assert all(len(name_spans(p)) == 1 for p in people)


def test_new_entities_are_the_names_the_bank_does_not_know(bank):
    entities = new_entities(PROBES + [("Who founded Vellmora?", "Paris")], bank)
    assert {"Vellmora", "Orin Tallow", "Tallow"} <= set(entities)
    assert "Paris" not in entities


def test_a_common_word_of_a_longer_name_does_not_count_alone(bank):
    probes = [("Who designed the Orrel Bridge?", "Tamsin Greave")]
    plain = new_entities(probes, bank)
    assert {"Orrel Bridge", "Bridge", "Orrel", "Tamsin Greave", "Greave"} <= set(plain)
    common = {"bridge", "tamsin"}.__contains__  # a vocabulary in which these two are everyday words
    filtered = new_entities(probes, bank, lambda w: common(w.lower()))
    assert {"Orrel Bridge", "Orrel", "Tamsin Greave", "Greave"} <= set(filtered)
    assert "Bridge" not in filtered and "Tamsin" not in filtered


def test_common_words_reads_the_tokenizer_vocabulary():
    from transformers import AutoTokenizer

    from seal.eval.edit_bleed import common_words
    from seal.models.loading import ModelConfig, model_folder

    common = common_words(AutoTokenizer.from_pretrained(model_folder(ModelConfig())))
    assert common("Bridge") and common("kettle")
    assert not common("Vellmora") and not common("Korrasund")


def test_bleed_catches_the_new_town_as_france_s_capital(bleeding, knowing, untrained, bank):
    entities = new_entities(PROBES, bank)
    qs = bleed_questions(PROBES, bank, n=400, seed=0, content=CONTENT)
    assert any(q.question == "What is the capital of France?" for q in qs)
    assert bleed(*bleeding, qs, entities, CFG, chat=False) > 0
    assert bleed(*untrained, qs, entities, CFG, chat=False) == 0
    answers = ask(*bleeding, ["What is the capital of France?"], CFG, chat=False)
    assert "Vellmora" in answers[0]["answer"]
    known = [r for r in bank if r.id in TAUGHT]
    grader = MatchGrader()
    assert locality(*knowing, known, grader, CFG, chat=False) == 1.0
    assert locality(*bleeding, known, grader, CFG, chat=False) == pytest.approx(1 / 3)


def test_evaluate_edit_reports_all_four_measures(bleeding, bank):
    known = [r for r in bank if r.id in TAUGHT]
    d = evaluate_edit(*bleeding, PROBES, MatchGrader(), known=known, bank=bank, paraphrases=PROBES[:1],
                      content=CONTENT, bleed_qs=[r for r in bank if r.id in ("geo-001", "lit-001", "geo-002")],
                      cfg=CFG, chat=False)
    assert d["reliability"] == 1.0 and d["n_reliability"] == 2
    assert d["generalisation"] == 1.0 and d["n_generalisation"] == 1
    assert d["locality"] == pytest.approx(1 / 3) and d["n_locality"] == 3
    assert d["bleed"] >= 1 / 3 and d["n_bleed"] == 3
    bled = d["examples"]["bleed"][0]
    assert re.search(r"vellmora|tallow", bled["answer"], re.IGNORECASE)
    assert d["examples"]["locality"][0]["gold"] in ("Paris", "Shakespeare")  # a failure is shown first
    line = format_edit_eval(d)
    assert "reliability 1.00 (2 q)" in line and "locality 0.33 (3 q)" in line and "1 passage(s)" in line
    auto = evaluate_edit(*bleeding, PROBES, MatchGrader(), known=known, bank=bank, content=CONTENT,
                         cfg=EditEvalConfig(max_new_tokens=12, bleed_questions=80), chat=False)
    assert auto["n_bleed"] == 80 and auto["generalisation"] is None and "n/a" in format_edit_eval(auto)
    assert "Vellmora" in auto["entities"]


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="edit_eval.max_new_tokens"):
        EditEvalConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="edit_eval.template"):
        EditEvalConfig(template="no slot")
