"""The ki_eval recipe end to end on the tiny random model: outputs, skips, errors and resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, compose

from seal.cli import run_experiment
from seal.data.fictional import generate_passages
from seal.data.sources import DataError
from seal.infra.config import ConfigError
from seal.infra.run_folder import ResumeError

FAST = ["model=tiny-random", "wandb.mode=disabled", "self_edit.max_new_tokens=24", "self_edit.k=2",
        "inner_loop.epochs=2", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=8",
        "data.limit=2"]


def run(tmp_path, *overrides, name="run", resume=False):
    path = tmp_path / name
    extra = [f"resume={path}"] if resume else []
    cfg = compose("experiment=ki_eval", *FAST, *overrides, *extra)
    return run_experiment(cfg, path), path


def records(path):
    return [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines()]


def test_outputs_and_base_computed_once(tmp_path):
    results, path = run(tmp_path)
    for f in ("config.yaml", "run.json", "records.jsonl", "metrics.jsonl", "results.json", "report.md", "accuracy.png"):
        assert (path / f).is_file(), f
    on_disk = json.loads((path / "results.json").read_text())
    assert set(on_disk["conditions"]) == {"base", "passage", "self_edit"}
    recs = records(path)
    for name, c in on_disk["conditions"].items():
        assert c["n_questions"] == sum(len(p.questions) for p in generate_passages(2))
        per_q: dict = {}  # each question's correctness averaged over its samples, then over questions
        for r in recs:
            if r.get("condition") == name and "questions" in r:
                for q in r["questions"]:
                    per_q.setdefault((q["passage"], q["q"]), []).append(float(q["correct"]))
        assert c["accuracy"] == pytest.approx(sum(sum(v) / len(v) for v in per_q.values()) / len(per_q))
    base = [r for r in recs if r.get("condition") == "base"]
    assert len(base) == 2  # once per passage, not once per self-edit
    by_passage = {r["passage"]: r["accuracy"] for r in base}
    se = [r for r in recs if r.get("condition") == "self_edit"]
    assert len(se) == 4  # 2 passages x k=2
    for r in se:
        assert r["gain"] == pytest.approx(r["accuracy"] - by_passage[r["passage"]])
        assert len(r["questions"]) > 0 and {"answer", "gold", "correct", "f1"} <= set(r["questions"][0])
    seeds = {r["seed"] for r in se}
    assert len(seeds) == 4  # every inner loop seeded separately, and recorded
    assert "| condition |" in (path / "report.md").read_text()
    # the diversity of each condition's self-edits; `passage` trains on no self-edit, so it has none
    from seal.eval.diversity import diversity

    texts: dict = {}
    for r in se:
        texts.setdefault(r["passage"], []).append(r["self_edit"])
    assert on_disk["conditions"]["self_edit"]["diversity"] == diversity(texts)
    assert "diversity" not in on_disk["conditions"]["passage"]
    assert "## Diversity of the self-edits" in (path / "report.md").read_text()


def test_conditions_override_and_limit(tmp_path):
    results, _ = run(tmp_path, "conditions=[base,passage]", "data.limit=1")
    assert set(results["conditions"]) == {"base", "passage"}
    assert results["n_passages"] == 1


def test_from_file_and_recorded_skips(tmp_path):
    passages = generate_passages(2)
    recs = []
    for i, p in enumerate(passages):
        d = p.to_dict()
        d["completions"] = [f"{p.title} is described in the passage.\n{p.questions[0].answer} is a fact.", ""]
        recs.append(d)
    f = tmp_path / "edits.json"
    f.write_text(json.dumps(recs))
    results, path = run(tmp_path, "conditions=[base,from_file]", f"+from_files.mine={f}")
    cond = results["conditions"]["from_file:mine"]
    assert cond["n_inner_loops"] == 2 and cond["n_skipped"] == 2
    reasons = [s["reason"] for s in results["skipped"] if s.get("condition") == "from_file:mine"]
    assert reasons and all("empty completion" in r for r in reasons)


def test_passage_longer_than_limit_is_skipped_with_reason(tmp_path):
    results, _ = run(tmp_path, "conditions=[base,passage]", "inner_loop.max_seq_len=40", "data.limit=3")
    assert results["n_passages"] < 3
    assert any("more than inner_loop.max_seq_len=40" in s["reason"] for s in results["skipped"])


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown \\['nope'\\]"):
        run(tmp_path, "conditions=[base,nope]")
    with pytest.raises(ConfigError, match="unknown format 'poetry'"):
        run(tmp_path, "self_edit.format=poetry", name="r2")
    with pytest.raises(ConfigError, match="from_files is empty"):
        run(tmp_path, "conditions=[from_file]", name="r3")
    with pytest.raises(ConfigError, match="inner_loop"):
        run(tmp_path, "+inner_loop.learning_rate=3", name="r4")


def test_data_path_with_a_users_file(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(p.to_dict()) for p in generate_passages(2, seed=5)) + "\n")
    results, _ = run(tmp_path, "data=file", f"data.path={f}", "conditions=[base,passage]")
    assert results["n_passages"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "x", "questions": []}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: missing field 'context'"):
        run(tmp_path, "data=file", f"data.path={bad}", name="r2")


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    k2 = "inner_loop.adapters_per_batch=2"  # chunks: [passage x2], [self_edit x2], [self_edit x2]
    full, full_path = run(tmp_path, k2, name="full")
    # simulate a kill: base x2, completions, the known general questions, the first chunk, then a torn line
    lines = (full_path / "records.jsonl").read_text().splitlines()
    trained = [i for i, ln in enumerate(lines) if json.loads(ln).get("condition") in ("passage", "self_edit")]
    cut = trained[1] + 1
    assert cut == 6
    killed = tmp_path / "killed"
    killed.mkdir()
    for f in ("config.yaml", "run.json"):
        (killed / f).write_text((full_path / f).read_text())
    (killed / "records.jsonl").write_text("\n".join(lines[:cut]) + "\n" + lines[cut][: len(lines[cut]) // 2])
    resumed, _ = run(tmp_path, k2, name="killed", resume=True)
    assert resumed["conditions"] == full["conditions"]
    # only the missing inner loops ran again
    metrics = (killed / "metrics.jsonl").read_text().splitlines()
    done_before = sum(1 for ln in lines[:cut] if json.loads(ln).get("condition") in ("passage", "self_edit"))
    assert done_before == 2
    total = sum(1 for ln in lines if json.loads(ln).get("condition") in ("passage", "self_edit"))
    assert len(metrics) == total - done_before


def test_resume_refuses_a_changed_config(tmp_path):
    _, path = run(tmp_path, "conditions=[base]")
    with pytest.raises(ResumeError, match="inner_loop.lr"):
        run(tmp_path, "conditions=[base]", "inner_loop.lr=0.5", resume=True)
    with pytest.raises(ResumeError, match="already holds a run"):
        run(tmp_path, "conditions=[base]")


def test_cli_end_to_end_and_clear_errors(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "seal.cli", "experiment=ki_eval", *FAST, "conditions=[base,passage]",
           "data.limit=1", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())["conditions"]["passage"]["n_questions"] > 0
    bad = subprocess.run(cmd[:-1] + ["conditions=[base,nope]", f"hydra.run.dir={tmp_path / 'bad'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "seal: error: conditions: unknown ['nope']" in bad.stderr


def test_data_path_alone_reads_the_users_file(tmp_path):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps([p.to_dict() for p in generate_passages(1, seed=9)]))
    results, _ = run(tmp_path, f"data.path={f}", "conditions=[base]")
    assert results["n_passages"] == 1


def test_passage_longer_than_model_context_is_skipped(tmp_path):
    results, _ = run(tmp_path, "conditions=[base,passage]", "model.max_context=40", "data.limit=3")
    assert any("more than the model's context of 40" in s["reason"] for s in results["skipped"])


def test_self_edit_format_none_trains_on_the_passage_alone(tmp_path):
    results, path = run(tmp_path, "conditions=[base,self_edit]", "self_edit.format=none", "self_edit.k=1",
                        "data.limit=1")
    rec = next(r for r in records(path) if r.get("condition") == "self_edit")
    assert rec["n_docs"] == 1 and rec["self_edit"] == ""


COMPARE = ["formats=[implications,entigraph]", "self_edit.generators.max_calls=2"]


def test_formats_compare_generators_with_their_costs_and_resume_redoes_nothing(tmp_path):
    results, path = run(tmp_path, *COMPARE, name="cmp")
    conds = results["conditions"]
    assert list(conds) == ["base", "passage", "self_edit:implications", "self_edit:entigraph"]
    recs = records(path)
    for fmt in ("implications", "entigraph"):
        costs = {uid: cs for r in recs if r["key"].startswith(f"completions/{fmt}") for uid, cs in r["cost"].items()}
        assert len(costs) == 2 and all(len(cs) == 2 for cs in costs.values())  # 2 passages x k=2, own records
        tokens = [sum(e["tokens"] for e in cs) for cs in costs.values()]  # a passage's k self-edits summed
        assert conds[f"self_edit:{fmt}"]["tokens_per_passage"] == pytest.approx(sum(tokens) / 2) and sum(tokens) > 0
        assert conds[f"self_edit:{fmt}"]["gen_seconds_per_passage"] >= 0
        loops = [r for r in recs if r.get("condition") == f"self_edit:{fmt}"]
        assert len(loops) == 4 and all(r["gen_tokens"] == costs[r["passage"]][r["sample"]]["tokens"] for r in loops)
        calls = [e["calls"] for cs in costs.values() for e in cs]
        assert all(c == 1 for c in calls) if fmt == "implications" else all(1 <= c <= 3 for c in calls)
    assert conds["base"]["tokens_per_passage"] is None and conds["passage"]["tokens_per_passage"] is None
    pairs = {(c["b"], c["a"]) for c in results["comparisons"]}
    assert {(f"self_edit:{f}", a) for f in ("implications", "entigraph") for a in ("base", "passage")} <= pairs
    report = (path / "report.md").read_text()
    assert "generated tokens / passage" in report and "self_edit:entigraph" in report
    assert "(accuracy_vs_tokens.png)" in report and (path / "accuracy_vs_tokens.png").stat().st_size > 0
    # a resumed finished run samples and trains nothing again, and summarises to the same results
    before = {f: (path / f).read_text() for f in ("records.jsonl", "metrics.jsonl")}
    resumed, _ = run(tmp_path, *COMPARE, name="cmp", resume=True)
    assert {f: (path / f).read_text() for f in before} == before
    assert resumed["conditions"] == conds


def test_formats_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"formats: unknown format 'poetry' \(choose one of .*entigraph"):
        run(tmp_path, "formats=[implications,poetry]")
    with pytest.raises(ConfigError, match="formats: a format is listed twice"):
        run(tmp_path, "formats=[rewrite,rewrite]", name="r2")
    with pytest.raises(ConfigError, match="formats: from_file is read, not generated"):
        run(tmp_path, "formats=[from_file]", name="r3")
    with pytest.raises(ConfigError, match=r"formats=\['entigraph'\] .*conditions=\['base', 'passage'\] has no "
                                          r"self_edit"):
        run(tmp_path, "conditions=[base,passage]", "formats=[entigraph]", name="r4")
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_a_generator_with_nothing_to_say_falls_back_to_the_passage_alone(tmp_path, monkeypatch):
    """The model's entity list is scripted empty (only that text: every other call is the tiny model's own),
    so entigraph has fewer than 2 entities: each such self-edit trains on the passage alone, recorded as a
    fallback with its reason, so the condition covers the same passages as the others; its one call's cost
    is still recorded."""
    from seal.generation.hf import HFGenerator

    real = HFGenerator.generate

    def no_entities(self, prompts, sampling, seed=0, desc=None, adapters=None, with_ids=False):
        out = real(self, prompts, sampling, seed, desc, adapters, with_ids)
        return [(("", ids[:1]) if with_ids else "") if "List the important entities" in p else o
                for p, o, ids in zip(prompts, out, [o[1] if with_ids else [] for o in out])]

    monkeypatch.setattr(HFGenerator, "generate", no_entities)
    results, path = run(tmp_path, "conditions=[base,self_edit]", "formats=[implications,entigraph]",
                        "self_edit.generators.title_entity=false")
    cond = results["conditions"]["self_edit:entigraph"]
    assert cond["n_inner_loops"] == 4 and cond["n_skipped"] == 0
    assert cond["n_fallback"] == 4 and cond["fallback_share"] == 1.0
    assert cond["n_clusters"] == results["conditions"]["self_edit:implications"]["n_clusters"] == 2
    assert results["conditions"]["self_edit:implications"]["n_fallback"] == 0
    assert "n_fallback" not in results["conditions"]["base"]
    assert len(results["fallbacks"]) == 4 and all("fewer than 2 entities" in f["reason"] for f in results["fallbacks"])
    recs = [r for r in records(path) if r.get("condition") == "self_edit:entigraph"]
    assert len(recs) == 4
    for r in recs:
        assert r["fallback"] == "passage" and "fewer than 2 entities" in r["why"]
        assert r["self_edit"] == "" and r["n_docs"] == 1 and "accuracy" in r and "skipped" not in r
        assert r["gen_tokens"] == 1
    assert cond["tokens_per_passage"] == 2  # k=2 self-edits of one 1-token call each
    report = (path / "report.md").read_text()
    assert "passage-only fallbacks" in report and "4 (100%)" in report and "fewer than 2 entities" in report


def test_locality_of_the_adapted_models_of_the_first_passages(tmp_path):
    """The first passages' adapted models answer the general questions the base model knew while their adapters
    are live: an update too small to change a greedy answer keeps them all, a harsh one loses some."""
    from tests.chat.knowing import knowing_model

    folder = knowing_model(tmp_path / "knowing")
    common = [f"model.name={folder}", "model.chat=false", "conditions=[base,passage]", "locality_passages=1",
              "locality.bank_sample=0", "locality.questions=6", "locality.bleed_questions=3"]
    gentle, _ = run(tmp_path, *common, "inner_loop.lr=1e-9", name="gentle")
    harsh, path = run(tmp_path, *common, "inner_loop.lr=0.2", "inner_loop.epochs=6", name="harsh")
    recs = records(path)
    known = next(r for r in recs if r["key"] == "locality/known")["ids"]
    assert 1 <= len(known) <= 6
    with_loc = [r for r in recs if "locality" in r and r.get("condition") == "passage"]
    assert len(with_loc) == 1 and with_loc[0]["locality"]["n_locality"] == len(known)  # the first passage only
    assert gentle["conditions"]["passage"]["locality"] == 1.0
    assert harsh["conditions"]["passage"]["locality"] < 1.0
    assert harsh["conditions"]["passage"]["n_locality_passages"] == 1 and "locality" not in harsh["conditions"]["base"]
    assert "## Locality and bleed of the adapted models" in (path / "report.md").read_text()
    # seal compare shows each run's locality beside its accuracies
    from seal.infra.compare import main as compare

    assert compare([str(tmp_path / "gentle"), str(path), "--out", str(tmp_path / "cmp")]) == 0
    header, *rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    column = header.split(",").index("passage locality")
    assert [float(r.split(",")[column]) for r in rows] == [1.0, harsh["conditions"]["passage"]["locality"]]
