"""ki_cpt on the tiny model: one pooled update per condition over all passages' documents, every
question answered, and a resume that redoes only unfinished conditions."""

from __future__ import annotations

import json

import pytest
from conftest import compose

from seal.cli import run_experiment
from seal.infra.config import ConfigError

FAST = ["experiment=ki_cpt", "model=tiny-random", "wandb.mode=disabled", "data.num_passages=3",
        "self_edit.max_new_tokens=12", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "inner_loop.epochs=1",
        "qa_eval.max_new_tokens=6"]


def run(path, *overrides, resume=False):
    return run_experiment(compose(*FAST, *overrides, *([f"resume={path}"] if resume else [])), path)


def test_pooled_update_per_condition_and_resume(tmp_path):
    out = run(tmp_path / "a")
    conds = out["conditions"]
    assert list(conds) == ["base", "passage", "self_edit"]
    n_q = conds["base"]["n_questions"]
    assert n_q > 3 and all(v["n_questions"] == n_q for v in conds.values())
    assert conds["passage"]["n_docs"] == 3  # the three passages, pooled into one update
    assert conds["self_edit"]["n_docs"] + conds["self_edit"]["skipped_docs"] == 3 + 3 * 2  # + k=2 whole completions
    assert conds["self_edit"]["train"]["tokens"] > conds["passage"]["train"]["tokens"]
    assert (tmp_path / "a" / "accuracy.png").is_file() and "pooled" in (tmp_path / "a" / "report.md").read_text()
    # killed before the self_edit update: the resumed run redoes only that condition, with the same result
    lines = (tmp_path / "a" / "records.jsonl").read_text().splitlines()
    keep = [x for x in lines if json.loads(x)["key"] != "cpt/self_edit"]
    (tmp_path / "b").mkdir()
    for name in ("config.yaml", "run.json"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(keep) + "\n")
    again = run(tmp_path / "b", resume=True)

    def same(r):  # wall-clock seconds aside, everything is identical
        return json.dumps({c: {**v, "train": {k: x for k, x in (v["train"] or {}).items() if k != "seconds"}}
                           for c, v in r["conditions"].items()}, sort_keys=True)
    assert same(again) == same(out)


def test_bad_cpt_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="from_files is empty"):
        run(tmp_path / "r", "conditions=[base,from_file]")
    with pytest.raises(ConfigError, match="conditions: unknown"):
        run(tmp_path / "r2", "conditions=[base,magic]")


def test_full_fine_tuning_updates_every_weight_and_restores_the_base(tmp_path):
    out = run(tmp_path / "f", "cpt.update=full", "cpt.full_lr=1e-3", "cpt.full_epochs=2", "cpt.full_batch_size=2")
    conds = out["conditions"]
    assert conds["passage"]["train"]["update"] == "full" and conds["passage"]["train"]["steps"] == 4  # 3 docs in batches of 2, 2 epochs
    assert conds["self_edit"]["train"]["final_loss"] < conds["self_edit"]["train"]["first_loss"]
    assert "full fine-tuning" in (tmp_path / "f" / "report.md").read_text()
    # each condition starts from the base weights: the self_edit update equals a run of that condition alone
    alone = run(tmp_path / "g", "cpt.update=full", "cpt.full_lr=1e-3", "cpt.full_epochs=2", "cpt.full_batch_size=2",
                "conditions=[self_edit]")
    a, b = conds["self_edit"]["train"], alone["conditions"]["self_edit"]["train"]
    assert (a["first_loss"], a["final_loss"]) == (b["first_loss"], b["final_loss"])
    with pytest.raises(ConfigError, match="cpt.update"):
        run(tmp_path / "h", "cpt.update=half")


def test_multi_call_formats_pool_one_document_per_part_with_their_cost(tmp_path):
    from seal.data.sources import load_passages
    from seal.domains.knowledge.self_edit import completion_to_documents

    out = run(tmp_path / "m", "conditions=[base,self_edit]", "formats=[implications,prompt_set]", "self_edit.k=1",
              "self_edit.generators.prompt_set=[set_summary,set_key_facts]")
    conds = out["conditions"]
    assert list(conds) == ["base", "self_edit:implications", "self_edit:prompt_set"]
    recs = [json.loads(x) for x in (tmp_path / "m" / "records.jsonl").read_text().splitlines()]
    comps = next(r for r in recs if r["key"].startswith("completions/prompt_set"))
    assert all(c[0]["calls"] == 2 for c in comps["cost"].values())
    # the documents ki_eval trains on, by generators.split (paragraphs: one per part), without the passage
    from seal.cli import recipe_config, resolved

    typed, _ = recipe_config(resolved(compose(*FAST, "formats=[implications,prompt_set]", "self_edit.k=1",
                                              "self_edit.generators.prompt_set=[set_summary,set_key_facts]")))
    by_uid = {p.uid: p for p in load_passages(typed.data)}
    docs = [d for uid, ts in comps["completions"].items() for t in ts
            for d in completion_to_documents(t, by_uid[uid], "prompt_set", typed.self_edit)[:-1]]
    assert all(len(t.split("\n\n")) <= 2 for ts in comps["completions"].values() for t in ts)  # a part each call
    assert conds["self_edit:prompt_set"]["n_docs"] == 3 + len(docs)
    # what the self-edits cost to generate, per passage, in results.json and the report
    for fmt in ("implications", "prompt_set"):
        costs = next(r for r in recs if r["key"].startswith(f"completions/{fmt}"))["cost"]
        want = sum(c[0]["tokens"] for c in costs.values()) / 3
        assert conds[f"self_edit:{fmt}"]["tokens_per_passage"] == pytest.approx(want) and want > 0
    assert conds["base"]["tokens_per_passage"] is None
    assert "generated tokens / passage" in (tmp_path / "m" / "report.md").read_text()
    # generators.split is honoured: whole keeps each self-edit as one document
    whole = run(tmp_path / "w", "conditions=[self_edit]", "formats=[prompt_set]", "self_edit.k=1",
                "self_edit.generators.prompt_set=[set_summary,set_key_facts]", "self_edit.generators.split=whole")
    assert whole["conditions"]["self_edit:prompt_set"]["n_docs"] == 3 + 3


def test_formats_that_carry_their_own_training_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"self_edit.format=implications-hp: .*training directive.*ki_cpt pools"):
        run(tmp_path / "d", "self_edit.format=implications-hp")
    with pytest.raises(ConfigError, match=r"formats=implications-hp: .*training directive"):
        run(tmp_path / "d2", "formats=[implications,implications-hp]")
    with pytest.raises(ConfigError, match=r"formats=\['prompt_set'\] .*has no self_edit"):
        run(tmp_path / "d3", "conditions=[base,passage]", "formats=[prompt_set]")
    assert not any((tmp_path / d / "records.jsonl").exists() for d in ("d", "d2", "d3"))
