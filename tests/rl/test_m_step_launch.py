"""The M-step in launched processes (`m_step.launcher=torchrun`): two data-parallel processes (gloo on
CPU) train the tiny policy, the main process writes the merged policy folder, and the next round's
workers read it by path."""

from __future__ import annotations

import json

import pytest
from conftest import compose
from safetensors.torch import load_file

from seal.cli import run_experiment
from seal.infra.config import ConfigError
from seal.rl.m_step import MStepConfig, optimizer_steps

FAST = ["experiment=restem", "model=tiny-random", "wandb.mode=disabled", "data.num_passages=2",
        "eval_data.num_passages=1", "restem.rounds=1", "restem.contexts_per_round=2", "self_edit.k=2",
        "restem.seeds_per_edit=1", "restem.eval_passages=1", "self_edit.max_new_tokens=12", "inner_loop.epochs=1",
        "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=6", "m_step.effective_batch=1",
        "m_step.epochs=2", "m_step.lora_r=4", "m_step.lora_alpha=8", "m_step.lr=0.05", "selection.rule=top_fraction",
        "selection.fraction=1.0"]


def test_two_process_m_step_writes_a_merged_policy(tmp_path):
    from seal.models.tiny import tiny_model_and_tokenizer

    path = tmp_path / "run"
    results = run_experiment(compose(*FAST, "m_step.launcher=torchrun", "m_step.nproc=2"), path)
    m = results["rounds"][0]["m_step"]
    assert m["processes"] == 2 and m["pairs"] == 4
    # 2 epochs of 4 pairs at effective batch 1 whatever the process count: one real pair and one empty
    # (no-loss) padding slot per step over the two processes
    assert m["steps"] == optimizer_steps(4, MStepConfig(effective_batch=1, epochs=2)) == 8
    recorded = next(json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()
                    if json.loads(x)["key"] == "m_step/0")
    assert (recorded["effective_batch"], recorded["grad_accum"], recorded["padding_slots"]) == (1, 1, 1)
    policy = path / "policy_round1"
    weights = load_file(str(policy / "model.safetensors"))
    base, _ = tiny_model_and_tokenizer()
    changed = [k for k, v in base.state_dict().items() if k in weights and not v.equal(weights[k])]
    assert changed and not any("lora" in k for k in weights)  # trained, and merged into plain weights
    assert [r["round"] for r in results["rounds"]] == [0, 1]  # the next round loaded it by path
    assert not any(p.name.startswith(".policy_round1") for p in path.iterdir())  # no job leftovers
    assert "'loss'" in (path / "m_step_round0.log").read_text()  # the processes' output is kept
    records = [json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()]
    assert sum(r["key"] == "m_step/0" for r in records) == 1


def test_bad_launcher_is_refused_before_any_work(tmp_path):
    from hydra.errors import HydraException

    with pytest.raises(HydraException, match="m_step.launcher"):  # refused while the config is composed
        run_experiment(compose(*FAST, "m_step.launcher=slurm"), tmp_path / "r")
    assert not (tmp_path / "r" / "records.jsonl").exists()
    with pytest.raises(ConfigError, match="no such file"):
        run_experiment(compose(*FAST, "m_step.launcher=accelerate", "m_step.accelerate_config=nope.yaml"),
                       tmp_path / "r2")
