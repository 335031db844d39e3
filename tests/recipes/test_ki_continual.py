"""ki_continual on the tiny model: the retention matrix is filled row by row along each sequence,
the probe is measured after every edit, replay keeps the compute, and a cut sequence is redone."""

from __future__ import annotations

import json

import pytest
from conftest import compose

from seal.cli import run_experiment
from seal.infra.config import ConfigError

FAST = ["experiment=ki_continual", "model=tiny-random", "wandb.mode=disabled", "continual.sequences=2",
        "continual.length=3", "data.num_passages=6", "self_edit.max_new_tokens=12", "inner_loop.lora_r=4",
        "inner_loop.lora_alpha=8", "inner_loop.epochs=2", "qa_eval.max_new_tokens=6", "continual.probe_docs=4",
        "~continual.variants.infinite", "~continual.variants.replay_edits", "~continual.variants.replay_both",
        "~continual.variants.rewarm_cosine", "~continual.variants.replay_edits_75", "~continual.variants.replay_past"]


def run(path, *overrides, resume=False):
    return run_experiment(compose(*FAST, *overrides, *([f"resume={path}"] if resume else [])), path)


def test_retention_bookkeeping_replay_compute_and_resume(tmp_path):
    out = run(tmp_path / "a")
    assert list(out["variants"]) == ["plain", "replay"]
    recs = [json.loads(x) for x in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    seqs = [r for r in recs if r["key"].startswith("sequence/")]
    assert len(seqs) == 4
    for r in seqs:
        assert [len(row) for row in r["rows"]] == [1, 2, 3]  # after edit i: passages 0..i
        assert len(r["perplexity"]) == 3 and len(r["steps"]) == 3
    plain, replay = out["variants"]["plain"], out["variants"]["replay"]
    assert [len(row) for row in plain["rows"]] == [1, 2, 3]
    # replay keeps each update's steps and step tokens; the sequences' self-edits differ after the
    # first edit (different models write them), so totals agree closely, not exactly
    assert abs(replay["train_tokens"] - plain["train_tokens"]) <= 0.05 * plain["train_tokens"]
    assert plain["perplexity_drift"] != replay["perplexity_drift"]
    assert (tmp_path / "a" / "retention_replay.png").is_file()
    assert "held_vs_reference" not in plain and replay["held_vs_reference"]["sequences"] == 2
    assert "held of what plain loses" in (tmp_path / "a" / "report.md").read_text()
    # cut after the first sequence of the replay variant: only the missing sequence is redone, identically
    lines = (tmp_path / "a" / "records.jsonl").read_text().splitlines()
    keep = [x for x in lines if json.loads(x)["key"] != "sequence/replay/1"]
    (tmp_path / "b").mkdir()
    for name in ("config.yaml", "run.json"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(keep) + "\n")
    again = run(tmp_path / "b", resume=True)
    for name in ("plain", "replay"):
        for k in ("rows", "first_retention", "off_diagonal", "perplexity_drift", "train_tokens"):
            assert again["variants"][name][k] == out["variants"][name][k]


def test_impossible_continual_configs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="need 12 passages"):
        run(tmp_path / "r", "continual.length=6")
    with pytest.raises(ConfigError, match="replay_fraction"):
        run(tmp_path / "r2", "continual.variants.replay.replay_fraction=1.5")
    with pytest.raises(ConfigError, match=r"variants.replay.replay_sources: 'no/such.txt' is neither"):
        run(tmp_path / "r4", "continual.variants.replay.replay_sources=[general,no/such.txt]")
    with pytest.raises(ConfigError, match=r"continual.reference: unknown variant 'plan' \(choose one of '', plain, replay\)"):
        run(tmp_path / "r3", "continual.reference=plan")
    with pytest.raises(ConfigError, match=r"self_edit.format=implications-hp: .*training directive.*ki_continual"):
        run(tmp_path / "r5", "self_edit.format=implications-hp")
    assert not (tmp_path / "r5" / "records.jsonl").exists()


def test_replay_sources_remember_lines_or_everything():
    from seal.data.passage import Passage
    from seal.domains.knowledge.self_edit import SelfEditConfig, completion_to_documents
    from seal.recipes.ki_continual import remember

    p = Passage(uid="p0", title="Orla Vent", context="Orla Vent was founded in 1901.", questions=[])
    past = {"self_edits": [], "past_documents": []}
    docs = completion_to_documents("It is old.\nIt is a town.", p, "implications", SelfEditConfig())
    remember(past, docs, p)
    assert past["self_edits"] == ["Orla Vent\nIt is old.", "Orla Vent\nIt is a town."]
    assert past["past_documents"] == [*past["self_edits"], "Orla Vent\nOrla Vent was founded in 1901."]
    remember(past, completion_to_documents("", p, "none", SelfEditConfig()), p)  # an unusable self-edit
    assert past["self_edits"][-1] == past["past_documents"][-1] == "Orla Vent\nOrla Vent was founded in 1901."
    lines_only = completion_to_documents("It is old.", p, "implications", SelfEditConfig(append_passage=False))
    past = {"self_edits": [], "past_documents": []}
    remember(past, lines_only, p)
    assert past["self_edits"] == past["past_documents"] == ["Orla Vent\nIt is old."]


@pytest.fixture(scope="module")
def knowing_folder(tmp_path_factory):
    from tests.chat.knowing import knowing_model

    return knowing_model(tmp_path_factory.mktemp("knowing") / "model")


def test_locality_and_bleed_after_every_edit(tmp_path, knowing_folder):
    model = [f"model.name={knowing_folder}", "model.chat=false", "continual.locality.bank_sample=0", "continual.locality.questions=6",
             "continual.locality.bleed_questions=4", "~continual.variants.replay", "continual.reference=''",
             "continual.sequences=1"]
    gentle = run(tmp_path / "gentle", *model, "inner_loop.lr=1e-9")
    harsh = run(tmp_path / "harsh", *model, "inner_loop.lr=0.2", "inner_loop.epochs=6")
    recs = [json.loads(x) for x in (tmp_path / "harsh" / "records.jsonl").read_text().splitlines()]
    known = next(r for r in recs if r["key"] == "locality/known")["ids"]
    assert 1 <= len(known) <= 6
    (seq,) = [r for r in recs if r["key"].startswith("sequence/")]
    for step in seq["steps"]:
        loc = step["locality"]
        assert loc["n_locality"] == len(known) and loc["n_bleed"] >= 1
        assert isinstance(loc["locality"], float) and isinstance(loc["bleed"], float)
    # an update too small to change a greedy answer keeps every known answer; a harsh one loses some
    assert gentle["variants"]["plain"]["locality_by_edit"] == [1.0, 1.0, 1.0]
    harsh_loc = harsh["variants"]["plain"]["locality_by_edit"]
    assert len(harsh_loc) == 3 and min(harsh_loc) < 1.0
    assert harsh["variants"]["plain"]["locality_after_last"] == harsh_loc[-1]
    report = (tmp_path / "harsh" / "report.md").read_text()
    assert "Locality after each edit" in report and "plain locality" in report and "locality after last edit" in report
    # the resumed run asks the recorded questions again and measures the same
    lines = (tmp_path / "harsh" / "records.jsonl").read_text().splitlines()
    (tmp_path / "again").mkdir()
    for name in ("config.yaml", "run.json"):
        (tmp_path / "again" / name).write_bytes((tmp_path / "harsh" / name).read_bytes())
    (tmp_path / "again" / "records.jsonl").write_text(
        "\n".join(x for x in lines if not json.loads(x)["key"].startswith("sequence/")) + "\n")
    again = run(tmp_path / "again", *model, "inner_loop.lr=0.2", "inner_loop.epochs=6", resume=True)
    assert again["variants"]["plain"]["locality_by_edit"] == harsh_loc
