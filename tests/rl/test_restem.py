"""The ReST-EM outer loop on the tiny random model: selection rules, resume after a kill in the
E-step and in the M-step (identical final results), refusal of a changed config, and the report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, compose
from tiny_restem import RESTEM, chosen, count_items, kept, kill_on_call, rewards

from seal.cli import run_experiment
from seal.infra.config import ConfigError
from seal.infra.run_folder import ResumeError
from seal.rl.selection import SelectionConfig

FAST = RESTEM


def run(path, *overrides, resume=False):
    cfg = compose(*FAST, *overrides, *([f"resume={path}"] if resume else []))
    return run_experiment(cfg, path)


def comparable(results: dict) -> str:
    return json.dumps(results, sort_keys=True)


# ------------------------------------------------------------------------------------------ selection

def edits(scores: dict[str, list[float]], base: float = 0.25):
    return rewards(scores, base=base)


def test_best_of_k_keeps_one_per_context_earliest_on_ties():
    es = chosen(edits({"a": [0.2, 0.6, 0.6], "b": [0.0, 0.0, 0.0]}), SelectionConfig(rule="best_of_k"))
    assert kept(es) == [("a", 1), ("b", 0)]
    assert all(e["why"] for e in es)
    es = chosen(edits({"a": [0.2, 0.6], "b": [0.0, 0.1]}), SelectionConfig(rule="best_of_k", min_score=0.5))
    assert kept(es) == [("a", 1)]
    assert "< 0.5" in next(e["why"] for e in es if e["context"] == "b" and e["sample"] == 1)


def test_improves_baseline_uses_the_threshold():
    es = chosen(edits({"a": [0.25, 0.5, 0.3], "b": [0.75, 0.1]}), SelectionConfig(rule="improves_baseline",
                                                                              threshold=0.1))
    assert kept(es) == [("a", 1), ("b", 0)]  # gains 0, .25, .05 | .5, -.15
    assert "<= threshold 0.1" in es[2]["why"]


def test_top_fraction_keeps_the_best_share():
    es = chosen(edits({"a": [0.1, 0.9, 0.5], "b": [0.7, 0.2, 0.3]}), SelectionConfig(rule="top_fraction",
                                                                                   fraction=1 / 3))
    assert kept(es) == [("a", 1), ("b", 0)]
    assert "rank 1 of 6" in next(e["why"] for e in es if e["kept"] and e["score"] == 0.9)


def test_bad_selection_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="selection.rule"):
        run(tmp_path / "r", "selection.rule=luck")
    with pytest.raises(ConfigError, match="need 8 training passages"):
        run(tmp_path / "r2", "restem.contexts_per_round=4")


# ------------------------------------------------------------------------------------------ full runs

def inner_loop_count(path) -> int:
    """Inner loops recorded in a run: eval/<r>/<self_edit|passage>/<uid> and estep/<r>/<uid>/<i>/<s>."""
    n = 0
    for line in (path / "records.jsonl").read_text().splitlines():
        parts = json.loads(line)["key"].split("/")
        n += (parts[0] == "eval" and parts[2] in ("self_edit", "passage")) or (parts[0] == "estep" and len(parts) == 5)
    return n


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "run"
    return path, run(path)


def test_uninterrupted_run_outputs(uninterrupted):
    path, results = uninterrupted
    assert [r["round"] for r in results["rounds"]] == [0, 1, 2]
    for f in ("report.md", "results.json", "accuracy_per_round.png", "rewards.png", "records.jsonl"):
        assert (path / f).is_file()
    for r in (1, 2):
        assert (path / f"policy_round{r}" / "model.safetensors").is_file()
        assert not list((path / f"policy_round{r}").glob("*.bin"))
    recs = [json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()]
    inner = [x for x in recs if x["key"].startswith("estep/") and "seed_index" in x]
    assert len(inner) == 2 * 2 * 2 * 2  # rounds x contexts x k x seeds, each keyed and seeded
    assert len({x["seed"] for x in inner}) == len(inner)
    sel = [x for x in recs if x["key"].startswith("select/")]
    assert all(e["why"] and "kept" in e for s in sel for e in s["edits"])
    assert all(s["n_kept"] == 2 for s in sel)  # top half of 4 edits
    assert results["rounds"][0]["e_step"]["n_kept"] == 2
    # the M-step changed the policy
    from safetensors.torch import load_file

    w1 = load_file(path / "policy_round1" / "model.safetensors")
    w2 = load_file(path / "policy_round2" / "model.safetensors")
    assert any(not (w1[k] == w2[k]).all() for k in w1)


def test_diversity_per_round_and_the_paired_verdict(uninterrupted):
    """Each policy's self-edits are measured for collapse (held-out always, training contexts where it
    had an E-step); results.json carries the final-minus-round-0 paired interval and the report ends
    with it in one line."""
    from seal.eval.diversity import diversity
    from seal.infra.records_file import read_records

    path, results = uninterrupted
    records = read_records(path / "records.jsonl")[0]
    for e in results["rounds"]:
        r = e["round"]
        held = {uid: t for k, rec in records.items() if k.startswith(f"eval/{r}/completions")
                for uid, t in rec["completions"].items()}
        want = diversity({uid: [t] if isinstance(t, str) else t for uid, t in held.items()})
        assert e["diversity"]["held_out"] == want and want["n_texts"] == 2
        assert ("e_step" in e["diversity"]) == (r < 2)
    h = results["paired"]["final_minus_round0"]
    comp = next(c for c in results["comparisons"] if (c["a"], c["b"]) == ("round0_self_edit", "round2_self_edit"))
    assert h["mean"] == comp["diff"] and h["ci95"] == [comp["lo"], comp["hi"]]
    report = (path / "report.md").read_text()
    assert "## Diversity of the policy's self-edits" in report and (path / "diversity_per_round.png").is_file()
    last = report.rstrip().splitlines()[-1]
    assert last.startswith("Held-out self-edit accuracy, policy 2 − policy 0:") and h["verdict"] in last


def test_resume_after_kill_in_e_step(uninterrupted, tmp_path, monkeypatch):
    # round 0's eval took chunks of 3 and 1, the E-step's first chunk of 3 is done
    finished = kill_on_call(monkeypatch, 4)
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(path)
    assert not (path / "policy_round1").exists()
    assert finished["items"] == 7 and inner_loop_count(path) == 7
    counter = count_items(monkeypatch)
    resumed = run(path, resume=True)
    assert comparable(resumed) == comparable(uninterrupted[1])
    assert counter["items"] == inner_loop_count(uninterrupted[0]) - 7  # only the unfinished inner loops ran again


def test_resume_after_kill_in_m_step(uninterrupted, tmp_path, monkeypatch):
    import trl

    real_step = trl.SFTTrainer.training_step
    calls = {"n": 0}

    def dying(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill in the M-step")
        return real_step(self, *a, **kw)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", dying)
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(path)
    assert not (path / "policy_round1").exists()  # no half-written policy
    monkeypatch.setattr(trl.SFTTrainer, "training_step", real_step)
    resumed = run(path, resume=True)
    assert comparable(resumed) == comparable(uninterrupted[1])


def test_a_lost_policy_folder_is_trained_again_and_checked_against_the_recorded_losses(uninterrupted, tmp_path):
    """The run folder copied without its policy folders (they are large) and resumed with a longer
    held-out list: the new held-out passages need policies 1 and 2, so both M-steps run again from the
    recorded pairs; they give the very weights the run first trained, and the records say so."""
    from safetensors.torch import load_file

    from seal.infra.records_file import read_records

    src, _ = uninterrupted
    path = tmp_path / "copy"
    shutil.copytree(src, path, ignore=shutil.ignore_patterns("policy_round*"))
    resumed = run(path, "eval_data.num_passages=3", "restem.eval_passages=3", "force_resume=true", resume=True)
    assert resumed["rounds"][0]["eval"]["self_edit"]["n_clusters"] == 3
    records = read_records(path / "records.jsonl")[0]
    for r in (0, 1):
        check = records[f"m_step/{r}"]["retrained"]
        assert check["matches"] and check["max_abs_loss_diff"] == 0.0 and check["recorded_steps"] > 0
        first = load_file(src / f"policy_round{r + 1}" / "model.safetensors")
        again = load_file(path / f"policy_round{r + 1}" / "model.safetensors")
        assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_longer_held_out_list_on_resume_runs_only_the_new_passages(uninterrupted, tmp_path, monkeypatch):
    """A finished run resumed with one more held-out passage: only that passage's inner loops run (its
    self-edit and passage reference in every round); every recorded one is kept as it was, none written twice
    (before, a chunk that mixed recorded and new jobs was computed again whole)."""
    src, _ = uninterrupted
    path = tmp_path / "grown"
    shutil.copytree(src, path)
    before = [json.loads(x)["key"] for x in (path / "records.jsonl").read_text().splitlines()]
    counter = count_items(monkeypatch)
    run(path, "eval_data.num_passages=3", "restem.eval_passages=3", "force_resume=true", resume=True)
    after = [json.loads(x)["key"] for x in (path / "records.jsonl").read_text().splitlines()]
    assert after[:len(before)] == before and len(set(after)) == len(after)  # nothing recorded twice
    new_loops = [k for k in after[len(before):] if k.split("/")[0] == "eval" and k.split("/")[2] in ("self_edit", "passage")]
    assert counter["items"] == len(new_loops) == 3 * 2  # rounds 0-2: the new passage's self-edit and passage reference


def test_retrain_check_flags_losses_that_differ(caplog):
    from seal.rl.outer_loop import retrain_check

    recorded = {"losses": [2.0, 1.5, 1.0], "train_loss": 1.5}
    assert retrain_check(recorded, {"losses": [2.0, 1.5, 1.0]}, 0)["matches"]
    off = retrain_check(recorded, {"losses": [2.0, 1.6, 1.0]}, 1)
    assert not off["matches"] and abs(off["max_abs_loss_diff"] - 0.1) < 1e-9
    assert "round 1 was trained again" in caplog.text
    assert retrain_check(recorded, {"losses": [2.0, 1.5]}, 0)["max_abs_loss_diff"] == float("inf")
    # trained again a second time: still compared with the run's first training, not with the retrain
    again = {"losses": [2.0, 1.6, 1.0], "train_loss": 1.53, "retrained": off}
    second = retrain_check(again, {"losses": [2.0, 1.6, 1.0]}, 1)
    assert not second["matches"] and second["recorded_losses"] == [2.0, 1.5, 1.0] and second["recorded_train_loss"] == 1.5


def test_resume_refuses_changed_config(uninterrupted):
    path, _ = uninterrupted
    with pytest.raises(ResumeError, match="m_step.lr"):
        run(path, "m_step.lr=0.1", resume=True)


def test_sigkill_and_resume_through_the_cli(uninterrupted, tmp_path):
    """A real SIGKILL of the `seal` process mid-run, then `resume=`: same results."""
    path = tmp_path / "cli"
    args = [sys.executable, "-m", "seal.cli", *FAST, f"hydra.run.dir={path}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    records = path / "records.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= 12:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resume = subprocess.run(args[:-1] + [f"hydra.run.dir={path}", f"resume={path}"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert comparable(json.loads((path / "results.json").read_text())) == comparable(uninterrupted[1])


def test_nothing_kept_carries_the_policy_over(tmp_path):
    path = tmp_path / "run"
    results = run(path, "selection.rule=improves_baseline", "selection.threshold=2.0", "restem.rounds=1",
                  "restem.seeds_per_edit=1")
    assert "kept no self-edit" in results["rounds"][0]["m_step"]["skipped"]
    assert not (path / "policy_round1").exists()
    assert [r["round"] for r in results["rounds"]] == [0, 1]  # the unchanged policy is still evaluated


def test_locality_per_round_on_a_model_that_knows_general_questions(tmp_path):
    """Round 0 finds the general questions the base model knows and records them; every round asks the
    same ones of its policy (unadapted) and of the adapted models of the first held-out contexts."""
    from tests.chat.knowing import knowing_model

    folder = knowing_model(tmp_path / "knowing")
    path = tmp_path / "run"
    results = run(path, f"model.name={folder}", "model.chat=false", "restem.rounds=1", "restem.locality.bank_sample=0", "restem.locality.questions=5",
                  "restem.locality.bleed_questions=3", "restem.locality_contexts=1", "m_step.lr=5e-3",
                  "m_step.epochs=3")
    from seal.infra.records_file import read_records

    records = read_records(path / "records.jsonl")[0]
    loc = [records[f"locality/{r}"] for r in (0, 1)]
    assert 1 <= len(loc[0]["known_ids"]) <= 5 and loc[1]["known_ids"] == loc[0]["known_ids"]
    assert loc[0]["policy"] == 1.0  # the base model knows them by construction
    for rec in loc:
        assert rec["n_adapted"] == 1 and isinstance(rec["adapted_locality"], float)
        (adapted,) = rec["adapted"]
        assert adapted["passage"] == records["eval/0/self_edit/" + adapted["passage"]]["passage"]
        assert adapted["n_locality"] == len(loc[0]["known_ids"]) and adapted["n_bleed"] >= 1
    for e in results["rounds"]:
        assert e["locality"]["policy"] == records[f"locality/{e['round']}"]["policy"]
    report = (path / "report.md").read_text()
    assert "## Locality per round" in report and "policy locality" in report
    # off: nothing asked, nothing recorded
    off = run(tmp_path / "off", "restem.rounds=0", "restem.locality.questions=0")
    assert "locality" not in off["rounds"][0]
    assert not any(k.startswith("locality/") for k in read_records(tmp_path / "off" / "records.jsonl")[0])
