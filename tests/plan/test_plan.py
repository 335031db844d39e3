"""`plan=true`: what a paper-scale run will do, written without loading weights. Checked on the two
paper recipes (with the released data when it is there), on a tiny model whose tokenizer adds a BOS
(the token view must be exactly the M-step row), and on every other recipe."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED, compose

from seal.cli import run_experiment

SQUAD = SHARED / "general-knowledge" / "data"
needs_data = pytest.mark.skipif(not (SQUAD / "squad_val.json").is_file(),
                                reason=f"the released SEAL data is not at {SQUAD}")


@pytest.fixture(autouse=True)
def no_weights(monkeypatch):
    """A plan must not load a model: any attempt fails the test."""
    import sys

    import seal.models.loading
    from seal.cli import recipes

    def refuse(*a, **k):
        raise AssertionError("plan=true loaded a model")

    recipes()  # imported before patching: a module first imported now would keep the stand-in for good
    real = seal.models.loading.load_model
    for name, module in list(sys.modules.items()):
        if name.startswith("seal.") and getattr(module, "load_model", None) is real:
            monkeypatch.setattr(module, "load_model", refuse)
    monkeypatch.setattr(seal.models.loading, "_embedded_folder", refuse)


def plan(tmp_path, *overrides) -> dict:
    run_experiment(compose(*overrides, "plan=true"), tmp_path)
    assert (tmp_path / "plan.md").is_file() and not (tmp_path / "records.jsonl").exists()
    return json.loads((tmp_path / "plan.json").read_text())


@needs_data
@pytest.mark.parametrize("nproc", [1, 8])
def test_ki_restem_plan_is_the_papers_setting(tmp_path, nproc):
    p = plan(tmp_path, "experiment=ki_restem", f"data.path={SQUAD / 'synthetic_data/train/iter0_train.json'}",
             f"eval_data.path={SQUAD / 'squad_val.json'}", "m_step.launcher=torchrun" if nproc > 1 else "seed=0",
             f"m_step.nproc={nproc}")
    r0 = p["rounds"][0]
    assert len(r0["contexts"]) == 50 and r0["distinct_titles"] >= 20
    assert not {c["uid"] for c in r0["contexts"]} & {c["uid"] for c in p["rounds"][1]["contexts"]}
    assert p["grader"]["kind"] == "openai" and p["grader"]["judge"].startswith("gpt-4.1")
    ms = p["m_step"]
    assert (ms["effective_batch"], ms["optimizer_steps"], ms["processes"]) == (10, 10, nproc)
    assert ms["processes"] * ms["batch_size_per_process"] * ms["grad_accum"] >= 10
    adapter = p["model"]["inner_loop_adapter"]
    # Qwen2.5-7B: 28 layers x r=32 x ((3584 + 3584) + (3584 + 512)) on q_proj and v_proj
    assert adapter["target_modules"] == ["q_proj", "v_proj"] and adapter["trainable_params"] == 28 * 32 * 11264
    assert p["held_out"] == {"passages": 200, "questions": 974, "distinct_titles": p["held_out"]["distinct_titles"]}
    assert p["inner_loops_per_round"]["e_step"] == 750
    assert p["estimates"]["gpu_hours_per_round"] > 0


def test_arc_restem_plan(tmp_path):
    p = plan(tmp_path, "experiment=arc_restem")
    assert [len(r["contexts"]) for r in p["rounds"]] == [11]
    assert p["inner_loops_per_round"]["e_step"] == 165 and p["inner_loops_per_round"]["held_out"] == 48
    assert all(t["within_budget"] for t in p["ttt_per_task_oracle_config"])
    assert p["model"]["inner_loop_adapter"]["trainable_params"] == 16 * 128 * (
        (2048 + 2048) + (2048 + 512) + 2 * (2048 + 8192) + (8192 + 2048))


def test_token_view_is_the_m_step_row_with_one_bos(tmp_path):
    from seal.models.tiny import tiny_tokenizer
    from seal.rl.m_step import m_step_examples

    p = plan(tmp_path, "experiment=restem", "model.name=tiny-random-bos", "model.chat=false",
             "data.num_passages=4", "restem.contexts_per_round=2", "restem.eval_passages=2",
             "eval_data.num_passages=2", "m_step.effective_batch=2")
    tok = tiny_tokenizer(add_bos=True)
    ex = p["m_step_example"]
    row = m_step_examples(tok, [{"prompt": ex["prompt_text"], "completion": ex["completion_text"] or "…"}], 10**6)[0][0]
    view = ex["tokens"]
    assert view["prompt_tokens"] == row["completion_mask"].index(1)
    assert view["leading_bos"] == 1 and view["tokenizer_adds_bos"] and view["eos_last"]
    assert all(row["input_ids"][pos] == tid for pos, tid, _, _ in view["rows"])
    assert [loss == "yes" for pos, _, _, loss in view["rows"]] == [bool(row["completion_mask"][pos])
                                                                    for pos, *_ in view["rows"]]
    assert p["self_edit_prompt"]["text"].endswith("Implications:")  # a base model: the raw template


@pytest.mark.parametrize("experiment", ["ki_eval", "ki_cpt", "ki_continual", "ki_decoding", "tool_use", "arc_demo"])
def test_every_recipe_plans_without_weights(tmp_path, experiment):
    p = plan(tmp_path, f"experiment={experiment}", "model.name=tiny-random")
    assert p["model"]["params"] > 0 and p["model"]["inner_loop_adapter"]["trainable_params"] > 0
