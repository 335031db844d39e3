"""The rewards behind `restem.reward`: each computed from what it claims, on models that really learn."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, compose
from learning import knowledge_task, passages
from tiny_restem import kill_on_call, restem

from seal.cli import run_experiment
from seal.data.passage import Question
from seal.eval.self_questions import NO_PAIRS, as_records, exam_sha, parse_pairs
from seal.infra.config import ConfigError, derive_seed
from seal.models.loading import prompt_ids
from seal.rl.reward import REWARDS, EditReward, binary, likelihood, mean_accuracy, self_questions

sys.path.insert(0, str(REPO / "scripts"))  # bench_rewards


def test_the_likelihood_reward_is_the_hand_computed_log_probability_and_rises_with_learning():
    task = knowledge_task(k=2)
    ps = passages(2)
    base = task.answer_logprobs(ps, [-1, -1])
    # by hand: the closed-book prompt (base model: " Answer:" cue), then " " + the gold answer's tokens
    from seal.eval.qa import qa_prompts

    prompt = qa_prompts(ps[:1], task.qa_cfg, task.tok, task.chat, task.system_prompt)[0]
    p_ids = prompt_ids(task.tok, prompt)
    a_ids = task.tok(" " + ps[0].questions[0].answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad(), task.inner.base_model() as model:
        logits = model(input_ids=torch.tensor([p_ids + a_ids])).logits[0].float()
    by_hand = F.log_softmax(logits[len(p_ids) - 1:-1], dim=-1)[torch.arange(len(a_ids)), a_ids].mean().item()
    assert base[0][0]["logprob"] == pytest.approx(by_hand, abs=1e-5)
    # train passage 0 into slot 0: its answer becomes likely, passage 1 (slot 1, its own passage) too
    out = task.adapt_and_evaluate_many([(ps[0], "", "none", 1), (ps[1], "", "none", 2)], measure="likelihood")
    assert all("accuracy" not in o and "likelihood" in o for o in out)  # no generation, no grading
    for o, b in zip(out, base):
        assert o["likelihood"] > b[0]["logprob"] + 1.0
        assert o["likelihood"] == pytest.approx(sum(q["logprob"] for q in o["questions"]) / len(o["questions"]))


def test_reward_functions():
    base = {"accuracy": 0.25, "likelihood": -3.0}
    runs = [{"accuracy": 0.5, "likelihood": -1.0}, {"accuracy": 0.0, "likelihood": -2.0}]
    acc = mean_accuracy("p", 0, runs, base)
    assert (acc.score, acc.base, acc.gain, acc.unusable) == (0.25, 0.25, 0.0, None)
    b = binary("p", 0, runs, base)
    assert (b.score, b.seed_scores, b.gain) == (0.5, (1.0, 0.0), 0.5)  # one of two seeds beat the base
    lk = likelihood("p", 0, runs, base)
    assert (lk.score, lk.base, lk.gain) == (-1.5, -3.0, 1.5)
    unusable = [{"skipped": "the completion holds only filler", "seed": 1}]
    assert likelihood("p", 0, unusable, base).gain == 0.0 and likelihood("p", 0, unusable, base).unusable
    assert binary("p", 0, unusable, base).score == 0.0 and mean_accuracy("p", 0, unusable, base).score == 0.0
    sq_base = {"accuracy": 0.25, "self_questions": 0.2, "self_questions_questions": [{"correct": True}]}
    sq = self_questions("p", 0, [{"self_questions": 0.6}, {"self_questions": 0.4}], sq_base)
    assert (sq.score, sq.base, sq.gain, sq.seed_scores, sq.unusable) == (0.5, 0.2, pytest.approx(0.3), (0.6, 0.4), None)
    assert self_questions("p", 0, unusable, sq_base).gain == 0.0  # an unusable run counts the unadapted value
    assert self_questions("p", 0, unusable, sq_base).unusable == "the completion holds only filler"
    # base and adapted model sat different exams (hashes differ): unusable, gain 0, the reason names both
    exam = [Question("Q1?", "a1")]
    sq_base |= {"self_questions_exam": as_records(exam), "self_questions_exam_sha": exam_sha(exam)}
    same = self_questions("p", 0, [{"self_questions": 0.6, "self_questions_exam_sha": exam_sha(exam)}], sq_base)
    assert same.unusable is None and same.score == 0.6
    other = exam_sha([Question("Q2?", "a2")])
    moved = self_questions("p", 0, [{"self_questions": 0.6, "self_questions_exam_sha": exam_sha(exam)},
                                    {"self_questions": 1.0, "self_questions_exam_sha": other}], sq_base)
    assert moved.unusable == (f"self_questions: exam mismatch: seed 1 was scored on exam {other}, the base record "
                              f"on exam {exam_sha(exam)}")
    assert moved.gain == 0.0 and moved.seed_scores == (None, None)
    old_base = {k: v for k, v in sq_base.items() if not k.startswith("self_questions_exam")}  # before hashes
    old_base["self_questions_questions"] = [{"question": "Q1?", "gold": "a1", "correct": True}]
    assert self_questions("p", 0, [{"self_questions": 1.0, "self_questions_exam_sha": other}], old_base).unusable
    nothing = {"accuracy": 0.0, "self_questions": 0.0, "self_questions_questions": [], "self_questions_unusable": NO_PAIRS}
    none = self_questions("p", 0, [{"skipped": NO_PAIRS, "seed": 1}], nothing)
    assert (none.score, none.base, none.unusable, none.seed_scores) == (0.0, 0.0, NO_PAIRS, (None,))
    assert set(REWARDS) == {"accuracy", "binary", "likelihood", "self_questions"}


def test_a_restem_run_with_the_likelihood_reward_selects_on_likelihood_and_evaluates_on_accuracy(tmp_path):
    path = tmp_path / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1, "restem.reward": "likelihood"})), path)
    recs = {r["key"]: r for r in map(json.loads, (path / "records.jsonl").read_text().splitlines())}
    inner = [r for k, r in recs.items() if k.startswith("estep/0/") and "seed_index" in r]
    assert inner and all("likelihood" in r and "accuracy" not in r for r in inner if "skipped" not in r)
    assert all("likelihood" in r for k, r in recs.items() if k.startswith("estep/0/base/"))
    held_bases = [r for k, r in recs.items() if k.startswith("eval/") and r.get("condition") == "base"]
    assert held_bases and not any("likelihood" in r for r in held_bases)  # held-out: accuracy only, never read
    for e in recs["select/0"]["edits"]:
        runs = [recs[f"estep/0/{e['context']}/{e['sample']}/{s}"] for s in range(2)]
        base = recs[f"estep/0/base/{e['context']}"]
        assert e["score"] == pytest.approx(likelihood(e["context"], e["sample"], runs, base).score)
    held = [r for k, r in recs.items() if k.startswith("eval/1/self_edit/")]
    assert held and all("accuracy" in r for r in held if "skipped" not in r)


def test_an_unknown_reward_is_refused_and_arc_has_no_likelihood_nor_self_questions(tmp_path):
    with pytest.raises(ConfigError, match="restem.reward: unknown reward 'luck'"):
        run_experiment(compose(*restem(**{"restem.reward": "luck"})), tmp_path / "a")
    for reward in ("likelihood", "self_questions"):
        with pytest.raises(ConfigError, match="ARC rewards are accuracy or binary"):
            run_experiment(compose("experiment=arc_demo", "model.name=tiny-random", "wandb.mode=disabled",
                                   f"restem.reward={reward}"), tmp_path / reward)
    with pytest.raises(ConfigError, match=r"self_questions.prompt must contain \{context\}"):
        run_experiment(compose(*restem(**{"restem.reward": "self_questions", "self_questions.prompt": "'{title}'"})),
                       tmp_path / "c")


def test_both_measures_come_from_the_same_inner_loop():
    """`measure="both"` (scripts/bench_rewards.py) gives each inner loop's accuracy and likelihood, the
    same values the single-measure calls give for the same jobs and seeds."""
    ps = passages(2)
    jobs = [(ps[0], "", "none", 1), (ps[1], "", "none", 2)]
    both = knowledge_task(k=2).adapt_and_evaluate_many(jobs, measure="both")
    acc = knowledge_task(k=2).adapt_and_evaluate_many(jobs)
    lik = knowledge_task(k=2).adapt_and_evaluate_many(jobs, measure="likelihood")
    for b, a, lk in zip(both, acc, lik):
        assert b["accuracy"] == a["accuracy"] == 1.0  # the learning world: the trained passage is answered
        assert b["likelihood"] == pytest.approx(lk["likelihood"], abs=1e-6)
        assert set(b["measure_seconds"]) == {"accuracy", "likelihood"}


def test_the_self_questions_measure_grades_the_adapted_model_on_the_given_questions():
    """Self-written questions are answered by the adapted model and graded against the self-written
    answers; one inner loop can measure all three rewards (`scripts/bench_rewards.py`)."""
    ps = passages(2)
    jobs = [(ps[0], "", "none", 1), (ps[1], "", "none", 2)]
    learned = ps[0].questions[0]  # trained into slot 0 only
    asked = [[learned, Question("Where did nobody go?", "nowhere")], [learned]]
    three = knowledge_task(k=2).adapt_and_evaluate_many(jobs, measure=("accuracy", "likelihood", "self_questions"),
                                                        self_questions=asked)
    alone = knowledge_task(k=2).adapt_and_evaluate_many(jobs, measure="self_questions", self_questions=asked)
    for t, a, qs in zip(three, alone, asked):
        assert set(t["measure_seconds"]) == {"accuracy", "likelihood", "self_questions"}
        assert [q["question"] for q in t["self_questions_questions"]] == [q.question for q in qs]
        assert [q["gold"] for q in a["questions"]] == [q.answer for q in qs] and "accuracy" not in a
        by_hand = sum(q["correct"] for q in t["self_questions_questions"]) / len(qs)
        assert t["self_questions"] == a["self_questions"] == by_hand
        assert t["accuracy"] == 1.0  # each loop learned its own passage
    assert three[0]["self_questions"] == 0.5 and three[1]["self_questions"] == 0.0  # slot 1 never saw passage 0


def fake_examiner(monkeypatch) -> list[int]:
    """Stand in for the tiny random model, which writes no parseable pair: each passage gets a text that
    depends on its own seed (its first gold question with its answer, and a question about the seed),
    parsed as the real writer does. Returns the seeds it was called with."""
    import seal.domains.knowledge.task as task_module

    seeds_seen = []

    def write(passages_, generator, cfg, tok, chat, system_prompt, seeds):
        seeds_seen.extend(seeds)
        out = []
        for p, seed in zip(passages_, seeds):
            q = p.questions[0]
            text = f"Quiz:\nQ: {q.question}\nA: {q.answer}\nnoise\nQ: What number is {seed % 97}?\nA: {seed % 89}\n"
            out.append({"text": text, "questions": parse_pairs(text, cfg.max_questions)})
        return out

    monkeypatch.setattr(task_module, "write_questions", write)
    return seeds_seen


def records(path) -> dict:
    return {r["key"]: r for r in map(json.loads, (path / "records.jsonl").read_text().splitlines())}


def test_a_restem_run_with_the_self_questions_reward_selects_on_them_and_evaluates_on_gold(tmp_path, monkeypatch):
    seeds = fake_examiner(monkeypatch)
    path = tmp_path / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1, "restem.reward": "self_questions"})), path)
    recs = records(path)
    bases = {k.split("/", 3)[3]: r for k, r in recs.items() if k.startswith("estep/0/base/")}
    for base in bases.values():  # what the examiner wrote, and the unadapted model's score on it
        written = [q["question"] for q in base["self_questions_questions"]]
        assert written == [q.question for q in parse_pairs(base["self_questions_text"], 5)] and len(written) == 2
        assert base["self_questions"] == sum(q["correct"] for q in base["self_questions_questions"]) / 2
        exam = parse_pairs(base["self_questions_text"], 5)
        assert base["self_questions_exam"] == as_records(exam) and base["self_questions_exam_sha"] == exam_sha(exam)
    # only the E-step's contexts get an exam: the held-out bases write and grade none
    assert sorted(seeds) == sorted(derive_seed(derive_seed(0, "self_questions", 0), c) for c in bases)
    held_bases = [r for k, r in recs.items() if k.startswith("eval/") and r.get("condition") == "base"]
    assert held_bases and not any(key.startswith("self_questions") for r in held_bases for key in r)
    inner = [r for k, r in recs.items() if k.startswith("estep/0/") and "seed_index" in r and "skipped" not in r]
    assert inner and all("self_questions" in r and "accuracy" not in r for r in inner)
    for r in inner:  # the adapted model was asked the context's self-written questions, and says which exam
        assert [q["question"] for q in r["questions"]] == [q["question"] for q in
                                                           bases[r["context"]]["self_questions_questions"]]
        assert r["self_questions_exam_sha"] == bases[r["context"]]["self_questions_exam_sha"]
    for e in recs["select/0"]["edits"]:
        runs = [recs[f"estep/0/{e['context']}/{e['sample']}/{s}"] for s in range(2)]
        by_hand = [sum(q["correct"] for q in r["questions"]) / len(r["questions"]) if "questions" in r
                   else bases[e["context"]]["self_questions"] for r in runs]
        assert e["score"] == pytest.approx(sum(by_hand) / 2) and e["base"] == bases[e["context"]]["self_questions"]
    held = [r for k, r in recs.items() if k.startswith(("eval/0/self_edit/", "eval/1/self_edit/", "eval/1/passage/"))]
    assert held and all("accuracy" in r and "self_questions" not in r for r in held if "skipped" not in r)
    assert all("What number is" not in q["question"] for r in held for q in r.get("questions", []))


def test_a_context_the_policy_wrote_no_question_about_is_unusable(tmp_path):
    """The tiny random model writes no parseable pair: nothing is trained, nothing kept, reasons recorded."""
    path = tmp_path / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1, "restem.reward": "self_questions"})), path)
    recs = records(path)
    assert all(r["self_questions_unusable"] == NO_PAIRS for k, r in recs.items() if k.startswith("estep/0/base/"))
    inner = [r for k, r in recs.items() if k.startswith("estep/0/") and "seed_index" in r]
    assert len(inner) == 8 and all(r["skipped"] == NO_PAIRS and "train" not in r for r in inner)
    assert recs["select/0"]["n_kept"] == 0 and all(e["why"] == f"unusable: {NO_PAIRS}" for e in recs["select/0"]["edits"])


def test_a_resumed_run_asks_the_recorded_exam_and_writes_none_again(tmp_path, monkeypatch):
    """Killed in the E-step after its base records and first chunk: the resumed session writes no
    question again (its inner loops read the exam from the base records) and ends as an uninterrupted run."""
    overrides = restem(**{"restem.rounds": 1, "restem.reward": "self_questions"})
    seeds = fake_examiner(monkeypatch)
    full = run_experiment(compose(*overrides), tmp_path / "full")
    first_seeds = list(seeds)
    with monkeypatch.context() as m:
        kill_on_call(m, 4)  # round 0's eval took 2 calls, the E-step's first chunk 1
        with pytest.raises(KeyboardInterrupt):
            run_experiment(compose(*overrides), tmp_path / "run")
    before = records(tmp_path / "run")
    contexts = [k.split("/", 3)[3] for k in before if k.startswith("estep/0/base/")]
    assert len(contexts) == 2 and 0 < sum(k.startswith("estep/0/") and "seed_index" in r for k, r in before.items()) < 8
    seeds.clear()
    resumed = run_experiment(compose(*overrides, f"resume={tmp_path / 'run'}"), tmp_path / "run")
    assert json.dumps(resumed, sort_keys=True) == json.dumps(full, sort_keys=True)
    a, b = records(tmp_path / "full"), records(tmp_path / "run")
    assert a["select/0"]["edits"] == b["select/0"]["edits"]
    assert all(b[f"estep/0/base/{c}"] == before[f"estep/0/base/{c}"] for c in contexts)  # not scored again
    assert seeds == []  # nothing written again
    assert {derive_seed(derive_seed(0, "self_questions", 0), c) for c in contexts} == set(first_seeds)
    for k, r in b.items():  # the inner loops run after the resume asked what the base record shows
        if k.startswith("estep/0/") and "seed_index" in r and k not in before:
            assert r.get("questions") == a[k].get("questions")
            assert r["self_questions_exam_sha"] == b[f"estep/0/base/{r['context']}"]["self_questions_exam_sha"]


def test_a_fresh_session_scores_estep_items_on_the_exam_their_base_record_holds(monkeypatch):
    """A Ray worker (or a resumed run) opens its own session with nothing cached: an E-step item is asked
    the exam in its base record and never writes one; a held-out base writes and grades no exam."""
    from seal.domains.knowledge.domain import KnowledgeSession
    from seal.domains.knowledge.self_edit import SelfEditConfig
    from seal.eval.self_questions import SelfQuestionsConfig
    from seal.rl.protocols import Item

    task = knowledge_task(k=2)
    ps = passages(2)
    exam = [ps[0].questions[0], Question("Where did nobody go?", "nowhere")]
    written = []

    def write(passages_, cfg, seeds):
        written.extend(p.uid for p in passages_)
        return [{"text": "the quiz", "questions": exam} for _ in passages_]

    monkeypatch.setattr(task, "write_self_questions", write)
    driver = KnowledgeSession(task, SelfEditConfig(), "self_questions", SelfQuestionsConfig(), seed=3)
    held = driver.base_many(ps[:1])  # held-out: gold accuracy only
    assert written == [] and set(held[0]) == {"accuracy", "questions"}
    base = driver.base_many(ps[:1], phase="estep")[0]
    assert written == [ps[0].uid] and base["self_questions_exam"] == as_records(exam)
    base = json.loads(json.dumps(base))  # as recorded

    def refuse(*_):
        raise AssertionError("an E-step item must not write its exam again")

    monkeypatch.setattr(task, "write_self_questions", refuse)
    worker = KnowledgeSession(task, SelfEditConfig(), "self_questions", SelfQuestionsConfig(), seed=3)
    out = worker.adapt_many([Item("estep", ps[0], ps[0].context, 5, base),
                             Item("estep", ps[0], ps[0].context, 6, base)])
    for rec in out:
        assert [(q["question"], q["gold"]) for q in rec["questions"]] == [(q.question, q.answer) for q in exam]
        assert rec["self_questions_exam_sha"] == base["self_questions_exam_sha"] == exam_sha(exam)
        assert rec["self_questions"] == 0.5  # the trained passage's question, not the other one
    with pytest.raises(ValueError, match="needs its context's base record"):
        worker.adapt_many([("estep", ps[0], ps[0].context, 5)])


def test_a_context_without_questions_keeps_each_edits_directive(tmp_path):
    """implications-hp with the self_questions reward on the tiny random model (no parseable pair): the
    E-step's skipped edits still record the directive they wrote, counted as skipped, not as fallbacks."""
    path = tmp_path / "run"
    results = run_experiment(compose(*restem(**{"restem.rounds": 1, "restem.reward": "self_questions",
                                                "restem.seeds_per_edit": 1, "self_edit.format": "implications-hp"})),
                             path)
    inner = [r for k, r in records(path).items() if k.startswith("estep/0/") and "seed_index" in r]
    assert len(inner) == 4 and all(r["skipped"] == NO_PAIRS and r["directive"]["valid"] is False for r in inner)
    e_step = results["rounds"][0]["directives"]["e_step"]
    assert (e_step["n"], e_step["n_fallback"], e_step["n_skipped"]) == (4, 0, 4)


# ------------------------------------------------------------- reward vs accuracy (scripts/bench_rewards.py)

def agreement_rows(acc: dict[str, list[float]], rew: dict[str, list[float]], unusable=()) -> list[dict]:
    """bench_rewards rows from hand-made gains (base 0): passage uid -> one gain per sample; `unusable`
    holds the (uid, sample) inner loops that were skipped."""
    rows = []
    for uid in acc:
        for s, (a, r) in enumerate(zip(acc[uid], rew[uid])):
            why = "skipped" if (uid, s) in unusable else None
            rows.append({"passage": uid, "sample": s, "unusable": why,
                         "accuracy": {"adapted": a, "base": 0.0, "gain": a, "unusable": why},
                         "likelihood": {"adapted": r, "base": 0.0, "gain": r, "unusable": why}})
    return rows


def synthetic_gains(n: int, k: int, seed: int) -> dict[str, list[float]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {f"p{i}": list(rng.normal(size=k)) for i in range(n)}


def test_a_reward_that_ranks_as_accuracy_agrees_on_every_statistic_and_a_reversed_one_disagrees():
    from seal.eval.reward_agreement import reward_agreement

    acc = synthetic_gains(30, 3, seed=1)
    same = reward_agreement(agreement_rows(acc, {u: [3 * g for g in gs] for u, gs in acc.items()}), "likelihood", 0)
    assert same["pooled_spearman"]["value"] == pytest.approx(1.0)
    assert same["within_passage_spearman"]["value"] == pytest.approx(1.0)
    assert same["top1"]["agreement"]["value"] == 1.0 and same["top1"]["chance"] == pytest.approx(1 / 3)
    assert same["keep_drop"]["agreement"]["value"] == 1.0 and same["keep_drop"]["kappa"]["value"] == pytest.approx(1.0)
    assert same["pooled_spearman"]["verdict"] == same["within_passage_spearman"]["verdict"] == "positive"
    assert same["top1"]["excess_over_chance"]["verdict"] == "above chance"
    assert (same["inner_loops"], same["passages"], same["within_passage_spearman"]["excluded_constant"]) == (90, 30, 0)
    rev = reward_agreement(agreement_rows(acc, {u: [-g for g in gs] for u, gs in acc.items()}), "likelihood", 0)
    assert rev["pooled_spearman"]["value"] == pytest.approx(-1.0)
    assert rev["within_passage_spearman"]["value"] == pytest.approx(-1.0)
    assert rev["top1"]["agreement"]["value"] == 0.0 and rev["keep_drop"]["agreement"]["value"] == 0.0
    assert rev["pooled_spearman"]["verdict"] == rev["keep_drop"]["kappa"]["verdict"] == "negative"
    assert rev["top1"]["excess_over_chance"]["verdict"] == "below chance"
    for est in (same["pooled_spearman"], rev["pooled_spearman"], same["top1"]["agreement"]):
        assert est["lo"] <= est["value"] <= est["hi"] and est["n_passages"] == 30


def test_a_random_reward_is_within_noise_on_every_statistic():
    from seal.eval.reward_agreement import reward_agreement

    acc, noise = synthetic_gains(300, 3, seed=2), synthetic_gains(300, 3, seed=3)
    out = reward_agreement(agreement_rows(acc, noise), "likelihood", seed=0)
    for est in (out["pooled_spearman"], out["within_passage_spearman"], out["top1"]["excess_over_chance"],
                out["keep_drop"]["kappa"]):
        assert est["lo"] < 0 < est["hi"] and est["verdict"] == "within noise" and not est["few_passages"]
    assert out["top1"]["agreement"]["lo"] < 1 / 3 < out["top1"]["agreement"]["hi"]  # chance: 1 of 3, no ties
    assert out == reward_agreement(agreement_rows(acc, noise), "likelihood", seed=0)  # seeded
    # the same strong agreement over fewer than 10 passages is never called
    few = reward_agreement(agreement_rows(dict(list(acc.items())[:4]), dict(list(acc.items())[:4])), "likelihood", 0)
    assert few["pooled_spearman"]["value"] == pytest.approx(1.0)
    assert few["pooled_spearman"]["verdict"] == "within noise" and few["pooled_spearman"]["few_passages"]


def test_ties_constant_passages_and_unusable_loops():
    from seal.eval.reward_agreement import PassageEdits as P
    from seal.eval.reward_agreement import ranks, reward_agreement, spearman, top1

    assert list(ranks([3.0, 1.0, 2.0, 2.0])) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9 ** 0.5)  # tie-averaged ranks, by hand
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))
    # accuracy ties: picking either tied best agrees; chance is the tied share
    assert top1(P("p", (0, 1, 2), (0.5, 0.5, 0.0), (0.1, 0.3, 0.2))) == (1.0, 2 / 3)
    assert top1(P("p", (0, 1, 2), (0.5, 0.5, 0.0), (0.1, 0.2, 0.3))) == (0.0, 2 / 3)
    # reward ties: best_of_k keeps the earliest sample
    assert top1(P("p", (0, 1, 2), (0.0, 1.0, 0.0), (0.3, 0.3, 0.0))) == (0.0, 1 / 3)
    assert top1(P("p", (0, 1, 2), (1.0, 0.0, 0.0), (0.3, 0.3, 0.0))) == (1.0, 1 / 3)
    # constant accuracy: out of the within-passage Spearman (counted), a sure top-1 (chance 1)
    acc = {"a": [0.2, 0.2, 0.2], "b": [0.0, 0.5, 1.0], "c": [0.0, 1.0, 0.5], "d": [0.4, 0.1, 0.0]}
    rew = {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "c": [1.0, 2.0, 3.0], "d": [5.0, 5.0, 5.0]}
    out = reward_agreement(agreement_rows(acc, rew, unusable={("d", 1), ("d", 2)}), "likelihood", 0, n_boot=200)
    w = out["within_passage_spearman"]
    assert (w["n_passages"], w["excluded_constant"], w["excluded_too_few"]) == (2, 1, 1)  # a constant, d one edit
    assert w["value"] == pytest.approx((1.0 + 0.5) / 2)
    assert out["top1"]["agreement"]["value"] == pytest.approx(2 / 3) and out["top1"]["chance"] == pytest.approx(5 / 9)
    assert (out["inner_loops"], out["passages"], out["keep_drop"]["edits"]) == (10, 4, 10)


def test_keep_drop_agreement_and_cohens_kappa_by_hand():
    import numpy as np

    from seal.eval.reward_agreement import cohen_kappa, reward_agreement, share_agreeing

    # the textbook table: 20 both keep, 5 only the reward, 10 only accuracy, 15 both drop
    counts = np.array([20, 5, 10, 15])
    assert share_agreeing(counts) == 0.7
    assert cohen_kappa(counts) == pytest.approx(0.4)  # p_o 0.7, p_e 0.5 * 0.6 + 0.5 * 0.4 = 0.5
    assert math.isnan(cohen_kappa(np.array([0, 0, 0, 4])))  # both drop everything: no kappa
    # the same decisions as rows (gain > 0 keeps, a gain of exactly 0 drops), over 10 passages of 5 edits
    pairs = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    acc = {f"p{i}": [0.1 * a for _, a in pairs[5 * i:5 * i + 5]] for i in range(10)}
    rew = {f"p{i}": [0.3 * r - 0.1 * (1 - r) for r, _ in pairs[5 * i:5 * i + 5]] for i in range(10)}
    kd = reward_agreement(agreement_rows(acc, rew), "likelihood", 0)["keep_drop"]
    assert kd["agreement"]["value"] == pytest.approx(0.7) and kd["kappa"]["value"] == pytest.approx(0.4)
    assert (kd["edits"], kd["kept_by_reward"], kd["kept_by_accuracy"]) == (50, 25, 30)


def test_the_agreement_statistics_pick_and_keep_as_selection_does():
    """top-1 is the edit `best_of_k` keeps by the reward; keep/drop is `improves_baseline` (threshold 0)."""
    from seal.eval.reward_agreement import PassageEdits, best_of_k, keep_counts
    from seal.rl.selection import SelectionConfig, select

    gains = [0.3, 0.7, 0.7, -0.2, 0.0]
    edits = [EditReward("c", s, g, 0.0, (g,)) for s, g in enumerate(gains)]
    kept = select(edits, SelectionConfig(rule="best_of_k"))
    p = PassageEdits("c", tuple(range(5)), tuple(gains), tuple(gains))
    assert [s for s, (k, _) in enumerate(kept) if k] == [best_of_k(p)] == [1]
    assert best_of_k(PassageEdits("c", (2, 5, 7), (0.0, 0.0, 0.0), (0.1, 0.4, 0.4))) == 5  # ties: earliest sample
    kept = [k for k, _ in select(edits, SelectionConfig(rule="improves_baseline"))]
    assert keep_counts(p).tolist() == [sum(kept), 0, 0, len(kept) - sum(kept)] == [3, 0, 0, 2]
    flipped = PassageEdits("c", tuple(range(5)), tuple(gains), tuple(-g for g in gains))
    assert keep_counts(flipped).tolist() == [0, 1, 3, 1]


def test_bench_rewards_reanalyses_a_results_json_with_rows_and_refuses_one_without(tmp_path, capsys, monkeypatch):
    import bench_rewards

    acc, rew = synthetic_gains(12, 3, seed=4), synthetic_gains(12, 3, seed=5)
    rows = agreement_rows(acc, rew)
    for r in rows:  # the fields a run records beside the gains
        r |= {"seed": 1, "train_seconds": 2.0, "measure_seconds": {"accuracy": 1.0, "likelihood": 0.5}}
    res = {"model": "hand", "passages": 12, "k": 3, "measures": ["accuracy", "likelihood"], "rows": rows,
           "self_questions": {"passages_with_questions": 0, "questions_per_passage": 0.0,
                              "writing_seconds_per_passage": 0.0, "max_questions": 5}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    monkeypatch.setattr(sys, "argv", ["bench_rewards.py", "--from-json", str(path)])
    bench_rewards.main()
    md = (tmp_path / "results.md").read_text()
    assert capsys.readouterr().out.strip() == md.strip()
    assert "Spearman of gains, pooled [95% CI]" in md and "loop speed-up" in md
    assert json.loads(path.read_text()) == res  # --from-json alone leaves its input as it was
    monkeypatch.setattr(sys, "argv", ["bench_rewards.py", "--from-json", str(path), "--out", str(tmp_path / "re")])
    bench_rewards.main()
    again = json.loads((tmp_path / "re" / "results.json").read_text())
    ours = bench_rewards.reward_agreement(rows, "likelihood", bench_rewards.BOOTSTRAP_SEED, bench_rewards.N_BOOT)
    assert again["agreement"]["likelihood"] == bench_rewards.finite(ours)
    assert again["measure_seconds_per_loop"] == {"accuracy": 1.0, "likelihood": 0.5}
    assert again["loop_speedup"]["likelihood"] == pytest.approx(3.0 / 2.5)
    assert (tmp_path / "re" / "results.md").read_text() == md
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in res.items() if k != "rows"}))
    monkeypatch.setattr(sys, "argv", ["bench_rewards.py", "--from-json", str(old)])
    with pytest.raises(SystemExit, match=f"{old} has no 'rows' field"):
        bench_rewards.main()
