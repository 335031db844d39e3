"""Training directives (format implications-hp): the final "Training: lr=..., epochs=..., passage=..." line
of a self-edit, its parsing and bounds, the inner loop obeying it, and what a ReST-EM run reports about it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import compose
from tiny_restem import restem

from seal.data.passage import Passage, Question
from seal.domains.knowledge.directive import (
    REFUSED,
    DirectiveConfig,
    check_directive_config,
    directive_stats,
    example_values,
    for_run,
    parse_directive,
    prompt_fields,
)
from seal.domains.knowledge.self_edit import (
    SelfEditConfig,
    SelfEditError,
    check_format,
    completion_to_documents,
    self_edit_prompt,
)

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "seal" / "configs" / "self_edit" / "default.yaml"
CFG = DirectiveConfig(epochs_max=10)  # lr one of 5e-4, 1e-3, 2e-3, 3e-3; epochs 1..10; passage may be chosen
P = Passage(title="Velmora", context="Velmora was founded in 1874 by Ansel Quorrin on the Tarvik.",
            questions=[Question("Who founded Velmora?", "Ansel Quorrin")], uid="t#0")
FACTS = "Velmora dates from 1874.\nAnsel Quorrin founded Velmora."


def edit(line: str) -> str:
    return f"{FACTS}\n{line}"


# ------------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("line, want", [
    ("Training: lr=1e-3, epochs=3, passage=yes", (1e-3, 3, True)),
    ("Training: lr=0.002, epochs=10, passage=no", (2e-3, 10, False)),
    ("training:lr = 5E-4 ; epochs = 1 ; passage = No.", (5e-4, 1, False)),
    ("**Training:** LR=3e-3 epochs=7 Passage=YES", (3e-3, 7, True)),  # spaces separate too; case-insensitive
    ("- Training: passage=yes, epochs=2, lr=1e-3", (1e-3, 2, True)),  # any order, a list marker
    ("### Training: lr=1e-3, epochs=4, passage=yes", (1e-3, 4, True)),  # a markdown heading marker
    ("# **Training:** lr=+.002, epochs=04, passage=no", (2e-3, 4, False)),
])
def test_valid_directives(line, want):
    facts, d = parse_directive(edit(line), CFG)
    assert d.valid and d.reason is None
    assert d.lr == pytest.approx(want[0]) and (d.epochs, d.append_passage) == want[1:]
    assert facts == FACTS  # the directive line is not a fact


def test_the_facts_part_drops_every_directive_line_and_keeps_the_rest():
    facts, d = parse_directive("Sure, here they are:\n1. A fact.\n\nTraining: lr=1e-3\n2. Another.", CFG)
    assert facts == "Sure, here they are:\n1. A fact.\n\n2. Another." and not d.valid
    docs = completion_to_documents(edit("Training: lr=1e-3, epochs=3, passage=yes"), P, "implications-hp",
                                   SelfEditConfig())
    assert docs == [f"{P.title}\nVelmora dates from 1874.", f"{P.title}\nAnsel Quorrin founded Velmora.",
                    f"{P.title}\n{P.context}"]
    assert not any("Training" in d for d in docs)


@pytest.mark.parametrize("completion, kind, names", [
    (FACTS, "missing directive line", ["Training:"]),
    (edit("Training: lr=1e-3, epochs=3, passage=yes") + "\nOne more fact.", "not the last line", ["line 3 of 4"]),
    (edit("Training: lr=1e-3, epochs=3, passage=yes\nTraining: lr=1e-3, epochs=3, passage=yes"),
     "several directive lines", ["2 lines"]),
    (edit("Training: lr=1e-3, epochs=3, passage=yes, speed=fast"), "unknown key", ["speed=fast"]),
    (edit("Training: lr=1e-3, epochs=3, passage=yes, lr=2e-3"), "duplicate key", ["lr", "1e-3", "2e-3"]),
    (edit("Training: lr=1e-3, passage=yes"), "missing key", ["epochs"]),
    (edit("Training: lr=1e-3, epochs three, passage=yes"), "unparsable", ["'epochs three'"]),
    (edit("Training: lr=fast, epochs=3, passage=yes"), "lr", ["'fast'", "not a number"]),
    (edit("Training: lr=2e-4, epochs=3, passage=yes"), "lr", ["2e-4", "not one of 5e-4, 1e-3, 2e-3, 3e-3"]),
    (edit("Training: lr=1e999, epochs=3, passage=yes"), "lr", ["1e999", "not a finite"]),
    (edit("Training: lr=inf, epochs=3, passage=yes"), "lr", ["'inf'", "not a number"]),
    # float() and int() take these; the directive does not (plain ASCII decimals only)
    (edit("Training: lr=1_0e-4, epochs=3, passage=yes"), "lr", ["'1_0e-4'", "not a number"]),
    (edit("Training: lr=\u0661e-3, epochs=3, passage=yes"), "lr", ["not a number"]),
    (edit("Training: lr=1e-3, epochs=\u0664, passage=yes"), "epochs", ["'\u0664'", "not a whole number"]),
    (edit("Training: lr=1e-3, epochs=1_0, passage=yes"), "epochs", ["'1_0'", "not a whole number"]),
    (edit("Training: lr=1e-3, epochs=30, passage=yes"), "epochs", ["30", "outside [1, 10]"]),
    (edit("Training: lr=1e-3, epochs=0, passage=yes"), "epochs", ["0", "outside [1, 10]"]),
    (edit("Training: lr=1e-3, epochs=2.5, passage=yes"), "epochs", ["'2.5'", "whole number"]),
    (edit("Training: lr=1e-3, epochs=3, passage=maybe"), "passage", ["'maybe'", "yes or no"]),
])
def test_each_invalid_kind_falls_back_with_a_reason_naming_the_key_and_value(completion, kind, names):
    facts, d = parse_directive(completion, CFG)
    assert not d.valid and d.reason.startswith(kind + ":")
    assert all(n in d.reason for n in names), d.reason
    assert (d.lr, d.epochs, d.append_passage) == (None, None, None)  # the run's own settings, as a whole
    assert "Training" not in facts


def test_out_of_bounds_is_invalid_not_clamped_and_a_range_bounds_lr():
    rng = DirectiveConfig(lr_mode="range", lr_values=[1e-4, 1e-3], epochs_min=2, epochs_max=4, default_lr=3e-4,
                          default_epochs=3, default_passage=False)
    _, d = parse_directive(edit("Training: lr=5e-4, epochs=4, passage=yes"), rng)
    assert d.valid and (d.lr, d.epochs, d.append_passage) == (5e-4, 4, True)
    _, d = parse_directive(edit("Training: lr=2e-3, epochs=1, passage=yes"), rng)
    assert not d.valid and "lr: 2e-3 is outside [1e-4, 1e-3]" in d.reason and "epochs: 1 is outside [2, 4]" in d.reason
    assert (d.lr, d.epochs, d.append_passage) == (3e-4, 3, False)  # the configured defaults
    assert d.resolved(1.0, 9, True) == d  # nothing left to fill in


def test_passage_can_be_withheld_from_the_policy():
    cfg = DirectiveConfig(allow_passage=False)
    _, d = parse_directive(edit("Training: lr=1e-3, epochs=2"), cfg)
    assert d.valid and d.append_passage is None  # the run's self_edit.append_passage applies
    _, d = parse_directive(edit("Training: lr=1e-3, epochs=2, passage=no"), cfg)
    assert not d.valid and "passage: not allowed" in d.reason and "allow_passage=false" in d.reason
    assert "passage" not in prompt_fields(cfg)["directive_syntax"]


def test_passage_no_removes_the_passage_document_and_refuse_makes_the_edit_unusable():
    se = SelfEditConfig()
    yes = completion_to_documents(edit("Training: lr=1e-3, epochs=3, passage=yes"), P, "implications-hp", se)
    no = completion_to_documents(edit("Training: lr=1e-3, epochs=3, passage=no"), P, "implications-hp", se)
    assert yes == no + [f"{P.title}\n{P.context}"]
    bad = edit("Training: lr=1e-3, epochs=99, passage=no")
    assert completion_to_documents(bad, P, "implications-hp", se) == yes  # default: the run's settings
    refuse = replace(se, directive=DirectiveConfig(on_invalid="refuse"))
    with pytest.raises(SelfEditError, match=r"on_invalid=refuse\): epochs: 99 is outside \[1, 10\]"):
        completion_to_documents(bad, P, "implications-hp", refuse)


def test_the_prompt_shows_the_syntax_and_the_allowed_values():
    yaml_cfg = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    directive = DirectiveConfig(**yaml_cfg["directive"])
    assert directive == DirectiveConfig()  # the yaml lists the dataclass defaults, every key
    assert directive.epochs_max is None  # null: inner_loop.epochs
    se = for_run(SelfEditConfig(templates=yaml_cfg["templates"], directive=directive), lr=2e-3, epochs=10)
    prompt = self_edit_prompt(P, "implications-hp", se)
    assert "Training: lr=X, epochs=N, passage=P" in prompt
    assert "one of 5e-4, 1e-3, 2e-3 or 3e-3" in prompt and "from 1 to 10" in prompt and "yes or no" in prompt
    example = prompt.split("For example:\nTraining: ")[1].splitlines()[0]
    assert parse_directive(f"A fact.\nTraining: {example}", se.directive)[1].valid  # the example is valid
    rng = replace(se.directive, lr_mode="range", lr_values=[1e-4, 1e-2], epochs_min=2, epochs_max=6)
    prompt = self_edit_prompt(P, "implications-hp", replace(se, directive=rng))
    assert "a number from 1e-4 to 1e-2" in prompt and "from 2 to 6" in prompt
    example = prompt.split("For example:\nTraining: ")[1].splitlines()[0]
    assert parse_directive(f"A fact.\nTraining: {example}", rng)[1].valid


def test_epochs_max_null_is_the_runs_inner_loop_epochs():
    """A directive never trains longer than the facts-only run unless epochs_max says so: with
    inner_loop.epochs=4, epochs=5 is out of bounds and the prompt offers 1 to 4."""
    d = DirectiveConfig().for_run(lr=2e-3, epochs=4, append_passage=True)
    assert (d.epochs_max, d.default_lr, d.default_epochs, d.default_passage) == (4, 2e-3, 4, True)
    assert DirectiveConfig(epochs_max=12, default_epochs=3).for_run(2e-3, 4, False).epochs_max == 12  # as set
    _, bad = parse_directive(edit("Training: lr=1e-3, epochs=5, passage=yes"), d)
    assert not bad.valid and bad.reason == "epochs: 5 is outside [1, 4]"
    assert parse_directive(edit("Training: lr=1e-3, epochs=4, passage=yes"), d)[1].valid
    assert "a whole number from 1 to 4" in prompt_fields(d)["directive_values"]
    with pytest.raises(SelfEditError, match="epochs_max: null means inner_loop.epochs"):
        check_directive_config(DirectiveConfig(epochs_min=5).for_run(2e-3, 4, True))


@pytest.mark.parametrize("lr, epochs, passage, want", [
    (2e-3, 10, True, "lr=2e-3, epochs=10, passage=yes"),  # the default run: inner_loop.lr, .epochs, the passage
    (1e-3, 4, False, "lr=1e-3, epochs=4, passage=no"),
    (1e-2, 4, True, "lr=3e-3, epochs=4, passage=yes"),  # a default lr the policy may not write: the nearest allowed
])
def test_the_prompts_example_is_the_defaults_so_copying_it_trains_as_the_facts_only_run(lr, epochs, passage, want):
    d = DirectiveConfig().for_run(lr, epochs, passage)
    assert prompt_fields(d)["directive_example"] == want
    _, copied = parse_directive(edit(f"Training: {want}"), d)
    assert copied.valid and (copied.lr, copied.epochs, copied.append_passage) == example_values(d)
    if lr == 2e-3:  # allowed: the copy trains exactly as an invalid directive (the facts-only twin) does
        fell = parse_directive(FACTS, d)[1]
        assert (copied.lr, copied.epochs, copied.append_passage) == (fell.lr, fell.epochs, fell.append_passage)
    rng = DirectiveConfig(lr_mode="range", lr_values=[1e-4, 1e-3], epochs_min=2, epochs_max=3).for_run(lr, epochs,
                                                                                                      passage)
    assert prompt_fields(rng)["directive_example"].startswith("lr=1e-3, epochs=3")  # clamped into the bounds
    assert "passage" not in prompt_fields(replace(d, allow_passage=False))["directive_example"]


def test_the_task_prompts_and_bounds_with_its_own_inner_loop():
    task = tiny_task(DirectiveConfig(), lr=1e-3, epochs=3)
    prompt = task.prompt(P, "implications-hp")
    assert "For example:\nTraining: lr=1e-3, epochs=3, passage=yes" in prompt and "from 1 to 3" in prompt
    out = task.adapt_and_evaluate_many([(P, edit("Training: lr=1e-3, epochs=4, passage=yes"), "implications-hp", 1)])
    assert out[0]["directive"] == {"lr": 1e-3, "epochs": 3, "append_passage": True, "valid": False,
                                   "reason": "epochs: 4 is outside [1, 3]"}
    assert out[0]["train"]["steps"] == 3 * 3  # 3 documents, batch 1, the run's 3 epochs


@pytest.mark.parametrize("change, key", [
    ({"lr_mode": "guess"}, "lr_mode"), ({"lr_values": []}, "lr_values"),
    ({"lr_mode": "range", "lr_values": [1e-3]}, "lr_values"), ({"lr_values": [1e-3, -1.0]}, "lr_values"),
    ({"epochs_min": 5, "epochs_max": 2}, "epochs_min"), ({"on_invalid": "ignore"}, "on_invalid"),
])
def test_an_impossible_directive_config_is_refused(change, key):
    yaml_cfg = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    se = SelfEditConfig(templates=yaml_cfg["templates"], directive=DirectiveConfig(**change))
    with pytest.raises(SelfEditError, match=key):
        check_format("implications-hp", se)
    check_format("implications", se)  # only the directive format reads it


def test_a_bad_directive_setting_stops_the_run_before_it_starts(tmp_path):
    from hydra.errors import HydraException

    from seal.cli import run_experiment

    with pytest.raises(HydraException, match="on_invalid"):  # refused while the config is composed
        run_experiment(compose(*restem(**{"self_edit.format": "implications-hp",
                                          "self_edit.directive.on_invalid": "maybe"})), tmp_path / "r")
    assert not (tmp_path / "r" / "records.jsonl").exists()


# ------------------------------------------------------------------------------------------ statistics

def test_directive_stats_on_hand_made_records():
    def rec(lr, epochs, passage, valid=True, reason=None, **kw):
        return {"directive": {"lr": lr, "epochs": epochs, "append_passage": passage, "valid": valid,
                              "reason": reason}, **kw}

    recs = [rec(1e-3, 3, True), rec(1e-3, 5, False), rec(3e-3, 3, True),
            rec(2e-3, 10, True, False, "missing directive line: no line starts with 'Training:'"),
            rec(2e-3, 10, True, False, "lr: 7 is not one of 5e-4; epochs: 99 is outside [1, 10]"),
            rec(2e-3, 10, True, False, "missing key: epochs", skipped=REFUSED + "missing key: epochs"),
            {"accuracy": 0.5}]  # a record without a directive (another format) is not counted
    s = directive_stats(recs)
    assert (s["n"], s["n_valid"], s["share_valid"]) == (6, 3, 0.5)
    assert s["chosen"] == {"lr": {"1e-3": 2, "3e-3": 1}, "epochs": {"3": 2, "5": 1}, "passage": {"no": 1, "yes": 2}}
    assert s["n_fallback"] == 2 and s["fallback"] == {"lr=2e-3, epochs=10, passage=yes": 2}
    assert s["n_refused"] == 1 and s["n_skipped"] == 0
    assert s["problems"] == {"epochs": 1, "lr": 1, "missing directive line": 1, "missing key": 1}
    empty = directive_stats([])
    assert empty["n"] == 0 and empty["share_valid"] is None


def test_directive_stats_counts_other_skips_apart_and_orders_problems_the_same_whatever_the_order():
    """An invalid directive whose self-edit was skipped for another reason (empty, NaN loss, too long)
    did not train with the defaults: it is neither a fallback nor a refusal. Ties among problems are
    ordered by name, so results.json does not depend on the order records arrived in (Ray, resume)."""
    import random

    def rec(reason, **kw):
        return {"directive": {"lr": 2e-3, "epochs": 10, "append_passage": True, "valid": False, "reason": reason},
                **kw}

    recs = [rec("missing directive line: none"), rec("lr: 7 is not one of 5e-4"),
            rec("missing directive line: none", skipped="the completion holds only filler"),
            rec("epochs: 99 is outside [1, 10]", skipped="inner loop: NaN loss"),
            rec("lr: 9 is not one of 5e-4", skipped=REFUSED + "lr: 9 is not one of 5e-4"),
            {"directive": {"lr": 1e-3, "epochs": 3, "append_passage": True, "valid": True, "reason": None},
             "skipped": "inner loop: NaN loss"}]  # valid but skipped: still a valid choice
    s = directive_stats(recs)
    assert (s["n"], s["n_valid"], s["n_fallback"], s["n_refused"], s["n_skipped"]) == (6, 1, 2, 1, 2)
    assert s["n_valid"] + s["n_fallback"] + s["n_refused"] + s["n_skipped"] == s["n"]
    assert s["fallback"] == {"lr=2e-3, epochs=10, passage=yes": 2}
    assert list(s["problems"].items()) == [("lr", 2), ("missing directive line", 2), ("epochs", 1)]
    rng = random.Random(0)
    for _ in range(10):
        shuffled = recs[:]
        rng.shuffle(shuffled)
        assert json.dumps(directive_stats(shuffled)) == json.dumps(s)


# ------------------------------------------------------------------------------------------ the inner loop

def tiny_task(directive: DirectiveConfig, lr: float = 1e-2, epochs: int = 2):
    from seal.domains.knowledge.task import KnowledgeTask
    from seal.eval.graders import GraderConfig
    from seal.eval.qa import QAEvalConfig
    from seal.inner_loop.trainer import InnerLoopConfig
    from seal.models.loading import ModelConfig, load_model

    mc = ModelConfig(name="tiny-random", device="cpu")
    model, tok = load_model(mc)
    inner = InnerLoopConfig(lora_r=4, lora_alpha=8, lr=lr, epochs=epochs, batch_size=1, adapters_per_batch=4)
    return KnowledgeTask(model, tok, mc, inner, QAEvalConfig(max_new_tokens=3), GraderConfig(kind="match"),
                         SelfEditConfig(format="implications-hp", directive=directive,
                                        templates=yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))["templates"]))


def spy_jobs(monkeypatch) -> list:
    from seal.inner_loop.trainer import InnerLoop

    seen, real = [], InnerLoop.train_many

    def spying(self, jobs):
        seen.extend(jobs)
        return real(self, jobs)

    monkeypatch.setattr(InnerLoop, "train_many", spying)
    return seen


def test_the_inner_loop_trains_with_the_directive_epochs_lr_and_passage(monkeypatch):
    """Four self-edits with the same facts in one batch of K=4 adapters: the steps follow each directive's
    epochs (3 documents, batch 1), an invalid directive trains with inner_loop's settings, passage=no
    drops the passage document, and every record carries the directive as applied."""
    task = tiny_task(DirectiveConfig(lr_mode="range", lr_values=[1e-12, 1.0], epochs_max=10), lr=1e-2, epochs=2)
    jobs = spy_jobs(monkeypatch)
    texts = [edit("Training: lr=1e-2, epochs=1, passage=yes"), edit("Training: lr=1e-2, epochs=3, passage=yes"),
             edit("Training: lr=1e-2, epochs=3, passage=no"), edit("Training: lr=1e-2, epochs=30, passage=no")]
    out = task.adapt_and_evaluate_many([(P, t, "implications-hp", 7) for t in texts])
    assert [o["train"]["steps"] for o in out] == [3, 9, 6, 6]  # docs x epochs; the invalid one: 3 x 2
    assert [o["n_docs"] for o in out] == [3, 3, 2, 3]
    assert [(j.lr, j.epochs) for j in jobs] == [(1e-2, 1), (1e-2, 3), (1e-2, 3), (1e-2, 2)]
    assert [o["directive"]["valid"] for o in out] == [True, True, True, False]
    assert out[3]["directive"] == {"lr": 1e-2, "epochs": 2, "append_passage": True, "valid": False,
                                   "reason": "epochs: 30 is outside [1, 10]"}
    # the learning rate: the same documents, seed and steps, a vanishing lr leaves the loss where it started
    jobs.clear()
    out = task.adapt_and_evaluate_many([(P, edit(f"Training: lr={lr}, epochs=6, passage=yes"), "implications-hp", 7)
                                        for lr in ("1e-12", "0.05")])
    assert [j.lr for j in jobs] == [1e-12, 0.05]
    still, learned = (o["train"] for o in out)
    assert still["first_loss"] == pytest.approx(learned["first_loss"])
    assert learned["final_loss"] < still["final_loss"] - 0.2


def test_refuse_records_the_edit_as_skipped_with_the_reason(monkeypatch):
    task = tiny_task(DirectiveConfig(on_invalid="refuse"))
    jobs = spy_jobs(monkeypatch)
    out = task.adapt_and_evaluate_many([(P, FACTS, "implications-hp", 1),
                                        (P, edit("Training: lr=1e-3, epochs=1, passage=no"), "implications-hp", 2)])
    assert out[0]["skipped"].startswith(REFUSED) and "missing directive line" in out[0]["skipped"]
    assert out[0]["directive"]["valid"] is False and out[0]["seed"] == 1
    assert "skipped" not in out[1] and out[1]["train"]["steps"] == 2 and len(jobs) == 1
    assert directive_stats(out)["n_refused"] == 1


def test_other_formats_carry_no_directive():
    task = tiny_task(DirectiveConfig())
    out = task.adapt_and_evaluate_many([(P, edit("Training: lr=1e-3, epochs=1, passage=no"), "implications", 1)])
    assert "directive" not in out[0] and out[0]["n_docs"] == 4  # the line is just a fact there


# ------------------------------------------------------------------------------------------ a ReST-EM round

def test_a_restem_round_with_implications_hp_reports_its_directives(tmp_path):
    """The tiny random model writes random text, so no directive is valid: every self-edit falls back to
    the defaults, and the report and results.json say so per round (held-out, E-step, kept)."""
    from seal.cli import run_experiment

    path = tmp_path / "run"
    results = run_experiment(compose(*restem(**{"self_edit.format": "implications-hp", "restem.rounds": 1,
                                                "restem.seeds_per_edit": 1})), path)
    r0 = results["rounds"][0]["directives"]
    assert set(r0) == {"held_out", "e_step", "e_step_kept"}
    assert (r0["held_out"]["n"], r0["e_step"]["n"], r0["e_step_kept"]["n"]) == (2, 4, 2)
    for s in r0.values():
        assert s["share_valid"] == 0.0 and s["n_fallback"] == s["n"] and s["n_refused"] == 0
        assert s["fallback"] == {"lr=2e-3, epochs=2, passage=yes": s["n"]}  # inner_loop.lr, .epochs of the run
        assert s["chosen"] == {"lr": {}, "epochs": {}, "passage": {}}
    assert set(results["rounds"][1]["directives"]) == {"held_out"}  # the final policy has no E-step
    assert json.loads((path / "results.json").read_text())["rounds"][0]["directives"] == r0
    recs = [json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()]
    inner = [x for x in recs if "train" in x and x.get("condition", "self_edit") == "self_edit"]
    # the fallback's 2 epochs over batches of inner_loop.batch_size=4 documents
    assert inner and all(x["directive"]["valid"] is False and x["train"]["steps"] == 2 * -(-x["n_docs"] // 4)
                         for x in inner)
    passage = [x for x in recs if x.get("condition") == "passage"]
    assert passage and not any("directive" in x for x in passage)  # the reference trains on the passage alone
    report = (path / "report.md").read_text()
    section = report.split("## Training directives the policy wrote")[1].split("\n## ")[0]
    assert "| 0 | held-out | 2 | 0 | 0.00 |" in section and "| 0 | E-step, kept | 2 | 0 | 0.00 |" in section
    assert "lr=2e-3, epochs=2, passage=yes" in section and "missing directive line" in section
