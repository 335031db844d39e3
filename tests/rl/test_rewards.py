"""The rewards behind `restem.reward`: each computed from what it claims, on models that really learn."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import compose
from learning import knowledge_task, passages
from tiny_restem import restem

from seal.cli import run_experiment
from seal.infra.config import ConfigError
from seal.models.loading import prompt_ids
from seal.rl.reward import REWARDS, binary, likelihood, mean_accuracy


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
    assert set(REWARDS) == {"accuracy", "binary", "likelihood"}


def test_a_restem_run_with_the_likelihood_reward_selects_on_likelihood_and_evaluates_on_accuracy(tmp_path):
    path = tmp_path / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1, "restem.reward": "likelihood"})), path)
    recs = {r["key"]: r for r in map(json.loads, (path / "records.jsonl").read_text().splitlines())}
    inner = [r for k, r in recs.items() if k.startswith("estep/0/") and "seed_index" in r]
    assert inner and all("likelihood" in r and "accuracy" not in r for r in inner if "skipped" not in r)
    assert all("likelihood" in r for k, r in recs.items() if k.startswith("estep/0/base/"))
    for e in recs["select/0"]["edits"]:
        runs = [recs[f"estep/0/{e['context']}/{e['sample']}/{s}"] for s in range(2)]
        base = recs[f"estep/0/base/{e['context']}"]
        assert e["score"] == pytest.approx(likelihood(e["context"], e["sample"], runs, base).score)
    held = [r for k, r in recs.items() if k.startswith("eval/1/self_edit/")]
    assert held and all("accuracy" in r for r in held if "skipped" not in r)


def test_an_unknown_reward_is_refused_and_arc_has_no_likelihood(tmp_path):
    with pytest.raises(ConfigError, match="restem.reward: unknown reward 'luck'"):
        run_experiment(compose(*restem(**{"restem.reward": "luck"})), tmp_path / "a")
    with pytest.raises(ConfigError, match="ARC rewards are accuracy or binary"):
        run_experiment(compose("experiment=arc_demo", "model.name=tiny-random", "wandb.mode=disabled",
                               "restem.reward=likelihood"), tmp_path / "b")


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
