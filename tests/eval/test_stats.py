"""Passage-clustered standard errors and paired bootstrap comparisons (`seal.eval.stats`), and the reports
that use them: ReST-EM (comparisons, references measured for the round-0 policy only, a re-render from
the records equal to the live run), ki_eval and ki_cpt."""

from __future__ import annotations

import json
import math
import random
import sys
import time

import pytest
from conftest import REPO, compose
from tiny_restem import RESTEM as FAST

from seal.cli import run_experiment
from seal.eval.qa import mean_stderr
from seal.eval.stats import WITHIN_NOISE, clustered_mean_se, format_interval, paired_bootstrap

sys.path.insert(0, str(REPO / "scripts"))


def coin_clusters(n: int, size: int, seed: int, p: float = 0.5) -> list[list[float]]:
    rng = random.Random(seed)
    return [[float(rng.random() < p) for _ in range(size)] for _ in range(n)]


# ------------------------------------------------------------------------------------------ clustered SE

def test_singleton_clusters_reproduce_the_iid_standard_error():
    values = [v for c in coin_clusters(37, 1, seed=3, p=0.3) for v in c]
    assert clustered_mean_se([[v] for v in values]) == pytest.approx(mean_stderr(values), rel=1e-12)


def test_perfectly_correlated_passages_inflate_the_se_by_the_expected_factor():
    # 4 passages x 3 questions, every question of a passage right or every one wrong
    clusters = [[1.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3]
    mean, se = clustered_mean_se(clusters)
    _, se_iid = mean_stderr([v for c in clusters for v in c])
    # by hand: residual sums +-1.5, se^2 = 4/3 * 4 * 2.25 / 12^2 = 1/12; iid se^2 = (12 * .25 / 11) / 12 = 1/44
    assert mean == 0.5 and se == pytest.approx(math.sqrt(1 / 12)) and se_iid == pytest.approx(math.sqrt(1 / 44))
    assert se / se_iid == pytest.approx(math.sqrt((12 - 1) / (4 - 1)))  # sqrt((N-1)/(G-1)), about 1.91


def test_clustered_se_edge_cases():
    assert all(math.isnan(x) for x in clustered_mean_se([]))
    assert all(math.isnan(x) for x in clustered_mean_se([[], []]))
    assert clustered_mean_se([[1.0, 0.0, 1.0]]) == (pytest.approx(2 / 3), 0.0)
    assert clustered_mean_se([[1.0, 0.0], []]) == (0.5, 0.0)  # an empty cluster is no cluster


# ------------------------------------------------------------------------------------------ paired bootstrap

def test_identical_conditions_give_zero_and_within_noise():
    a = coin_clusters(30, 5, seed=1)
    c = paired_bootstrap(a, [list(x) for x in a], seed=0)
    assert (c["diff"], c["lo"], c["hi"], c["verdict"]) == (0.0, 0.0, 0.0, WITHIN_NOISE)
    assert c["n_clusters"] == 30 and c["n_boot"] == 10000 and c["level"] == 0.95


def test_one_more_question_per_passage_is_higher():
    rng = random.Random(7)
    a = [[1.0] * rng.randint(0, 3) + [0.0] * rng.randint(2, 5) for _ in range(30)]
    b = [sorted(x)[1:] + [1.0] for x in a]  # one wrong answer per passage becomes right
    c = paired_bootstrap(a, b, seed=0)
    assert c["diff"] == pytest.approx(30 / sum(map(len, a)))
    assert 0 < c["lo"] <= c["diff"] <= c["hi"] and c["verdict"] == "higher"
    flipped = paired_bootstrap(b, a, seed=0)
    assert flipped["hi"] < 0 and flipped["verdict"] == "lower"


def test_noise_spans_zero_and_seeds_are_reproducible():
    rng = random.Random(5)  # uneven passage sizes, so resampled differences are not a coarse lattice
    a = [[float(rng.random() < 0.5) for _ in range(rng.randint(2, 9))] for _ in range(40)]
    b = [[float(rng.random() < 0.5) for _ in x] for x in a]
    c = paired_bootstrap(a, b, seed=11)
    assert c["lo"] < c["diff"] < c["hi"] and c["verdict"] == WITHIN_NOISE
    assert paired_bootstrap(a, b, seed=11) == c
    other = paired_bootstrap(a, b, seed=12)
    assert other["diff"] == c["diff"] and (other["lo"], other["hi"]) != (c["lo"], c["hi"])


def test_unequal_cluster_sizes_use_each_clusters_own_values():
    a = [[1.0, 0.0, 0.0], [1.0, 1.0]] * 6
    b = [[1.0, 1.0, 0.0], [1.0]] * 6  # a record skipped in b: that passage has fewer outcomes
    c = paired_bootstrap(a, b, seed=0)
    assert c["diff"] == pytest.approx(18 / 24 - 18 / 30)
    with pytest.raises(ValueError, match="pair the same clusters"):
        paired_bootstrap(a, b[:-1], seed=0)


def test_few_passages_are_never_a_result():
    a = [[0.0] * 5 for _ in range(4)]
    b = [[1.0] * 5 for _ in range(4)]
    c = paired_bootstrap(a, b, seed=0)
    assert c["lo"] == 1.0 and c["few_clusters"] and c["verdict"] == WITHIN_NOISE
    one = paired_bootstrap(a[:1], b[:1], seed=0)
    assert one["diff"] == 1.0 and math.isnan(one["lo"]) and one["verdict"] == WITHIN_NOISE


def test_bootstrap_is_vectorised():
    a, b = coin_clusters(200, 5, seed=1), coin_clusters(200, 5, seed=2)
    t0 = time.perf_counter()
    paired_bootstrap(a, b, seed=0)
    assert time.perf_counter() - t0 < 1.0


def test_format_interval():
    assert format_interval({"diff": 0.052, "lo": 0.01, "hi": 0.094}) == "+0.052 [+0.010, +0.094]"
    assert format_interval({"diff": -0.1, "lo": -0.25, "hi": 0.013}) == "-0.100 [-0.250, +0.013]"


# ------------------------------------------------------------------------------------------ ki_eval summary

def test_ki_eval_summary_clusters_per_question_sample_means_by_passage(tmp_path):
    from seal.data.passage import Passage, Question
    from seal.infra.run_dir import RunDir
    from seal.recipes.ki_eval import KIEvalConfig, summarise, write_report

    passages = [Passage(f"t{i}", "c", [Question("q", "a")] * 2, uid=f"p{i}") for i in range(12)]
    rd = RunDir(tmp_path / "run", {"seed": 0})

    def rec(cond, p, sample, correct):
        qs = [{"passage": p.uid, "q": j, "correct": c, "f1": float(c)} for j, c in enumerate(correct)]
        acc = sum(correct) / len(correct)
        return rd.key(cond, p.uid, sample), {"condition": cond, "passage": p.uid, "sample": sample, "questions": qs,
                                             "accuracy": acc, "gain": acc, "self_edit": "text"}

    items = []
    for i, p in enumerate(passages):
        items.append(rec("base", p, 0, [False, False]))
        items.append(rec("passage", p, 0, [i % 2 == 0] * 2))  # both questions of a passage agree
        items += [rec("self_edit", p, s, [i % 3 == 0, s == 0]) for s in range(2)]
    rd.put_many(items)
    cfg = KIEvalConfig(conditions=["base", "passage", "self_edit"])
    out = summarise(cfg, rd, passages, [], {p.uid: p for p in passages})
    se = out["conditions"]["self_edit"]
    # per question: the first is 1 on every third passage, the second 1/2 (one of two samples) everywhere
    assert se["accuracy"] == pytest.approx((4 / 12 + 0.5) / 2) and se["n_questions"] == 24 and se["n_clusters"] == 12
    clusters = [[float(i % 3 == 0), 0.5] for i in range(12)]
    assert se["stderr"] == pytest.approx(clustered_mean_se(clusters)[1])
    assert se["stderr_iid"] == pytest.approx(mean_stderr([v for c in clusters for v in c])[1])
    ps = out["conditions"]["passage"]
    assert ps["stderr"] > ps["stderr_iid"]  # questions of a passage agree: clustering widens the SE
    assert [(c["b"], c["a"]) for c in out["comparisons"]] == [("passage", "base"), ("self_edit", "base"),
                                                              ("self_edit", "passage")]
    assert out["comparisons"][0]["verdict"] == "higher" and out["comparisons"][0]["diff"] == 0.5
    write_report(cfg, rd, out)
    report = (rd.path / "report.md").read_text()
    assert "## Paired comparisons" in report and "+0.500 [" in report and "clustered by passage" in report


# ------------------------------------------------------------------------------------------ ReST-EM run

@pytest.fixture(scope="module")
def first_round_run(tmp_path_factory):
    """A tiny live ReST-EM run (2 rounds) whose references are measured for the round-0 policy only."""
    path = tmp_path_factory.mktemp("stats") / "run"
    results = run_experiment(compose(*FAST, "restem.references=first_round", "eval_data.num_passages=3",
                                     "restem.eval_passages=3"), path)
    return path, results


def test_restem_results_hold_clustered_ses_and_paired_comparisons(first_round_run):
    path, _ = first_round_run
    saved = json.loads((path / "results.json").read_text())
    r0 = saved["rounds"][0]["eval"]["self_edit"]
    assert {"stderr", "stderr_iid", "n_clusters", "outcomes"} <= set(r0) and r0["n_clusters"] == 3
    assert r0["stderr"] == pytest.approx(clustered_mean_se(list(r0["outcomes"].values()))[1])
    assert "outcomes" not in saved["conditions"]["round0_self_edit"]
    pairs = [(c["b"], c["a"]) for c in saved["comparisons"]]
    assert pairs == [("round0_self_edit", "round0_base"), ("round0_self_edit", "round0_passage"),
                     ("round1_self_edit", "round0_self_edit"), ("round1_self_edit", "round0_base"),
                     ("round1_self_edit", "round0_passage"), ("round2_self_edit", "round0_self_edit"),
                     ("round2_self_edit", "round1_self_edit"), ("round2_self_edit", "round0_base"),
                     ("round2_self_edit", "round0_passage")]
    for c in saved["comparisons"]:
        b, a = (saved["conditions"][x]["accuracy"] for x in (c["b"], c["a"]))
        assert c["diff"] == pytest.approx(b - a) and c["n_clusters"] == 3 and c["verdict"] == WITHIN_NOISE
    report = (path / "report.md").read_text()
    assert "## Paired comparisons" in report and "± clustered SE" in report and "bootstrap resamples" in report


def test_first_round_references_are_not_claimed_for_later_rounds(first_round_run):
    from seal.rl.report import plot_series

    path, results = first_round_run
    assert results["reference_rounds"] == {"self_edit": [0, 1, 2], "base": [0], "passage": [0]}
    assert all(set(e["eval"]) == {"self_edit"} for e in results["rounds"][1:])
    report = (path / "report.md").read_text()
    assert "measured for the round-0 policy only" in report
    rows = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |"))][:2]
    assert len(rows) == 2 and all(line.split(" | ")[2:4] == ["—", "—"] for line in rows)
    series = {s["label"]: s for s in plot_series(results, ["self_edit", "base", "passage"],
                                                 {"self_edit": "self-edit", "base": "base", "passage": "passage only"})}
    assert series["passage only (round-0 policy)"]["dashed"] and series["passage only (round-0 policy)"]["xs"] == [0]
    assert not series["self-edit"]["dashed"] and series["self-edit"]["xs"] == [0, 1, 2]


def test_rerender_of_a_live_run_equals_it(first_round_run, tmp_path):
    from rerender import rerender

    path, _ = first_round_run
    rerender(path, out=tmp_path / "re")
    assert (tmp_path / "re" / "results.json").read_text() == (path / "results.json").read_text()
    assert (tmp_path / "re" / "report.md").read_text() == (path / "report.md").read_text()
    assert (tmp_path / "re" / "accuracy_per_round.png").is_file()


def test_rerender_refuses_changed_accuracies(first_round_run, tmp_path):
    from rerender import rerender

    path, _ = first_round_run
    run = tmp_path / "copy"
    run.mkdir()
    for f in ("config.yaml", "records.jsonl"):
        (run / f).write_text((path / f).read_text())
    old = json.loads((path / "results.json").read_text())
    old["conditions"]["round1_self_edit"]["accuracy"] += 0.25
    (run / "results.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="round1_self_edit"):
        rerender(run)
    assert json.loads((run / "results.json").read_text()) == old and not (run / "report.md").exists()


@pytest.mark.parametrize("overrides", [
    ["experiment=ki_eval", "self_edit.k=2", "self_edit.max_new_tokens=16", "data.limit=2"],
    ["experiment=ki_cpt", "data.num_passages=3", "self_edit.max_new_tokens=12", "inner_loop.epochs=1"],
], ids=["ki_eval", "ki_cpt"])
def test_rerender_of_live_ki_eval_and_ki_cpt_runs_equals_them(tmp_path, overrides):
    from rerender import rerender

    path = tmp_path / "run"
    run_experiment(compose(*overrides, "model=tiny-random", "wandb.mode=disabled", "inner_loop.lora_r=4",
                           "inner_loop.lora_alpha=8", "qa_eval.max_new_tokens=6"), path)
    live = json.loads((path / "results.json").read_text())
    assert {"stderr", "stderr_iid", "n_clusters"} <= set(live["conditions"]["base"])
    assert [c["a"] for c in live["comparisons"]] == ["base", "base", "passage"]
    rerender(path, out=tmp_path / "re")
    assert (tmp_path / "re" / "results.json").read_text() == (path / "results.json").read_text()
    assert (tmp_path / "re" / "report.md").read_text() == (path / "report.md").read_text()
