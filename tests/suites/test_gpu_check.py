"""`scripts/gpu_check.py` (issue 25's GPU check) run on the CPU with tiny models: every step leaves real numbers in
one JSON and a markdown table; a step that raises is recorded with its traceback while later steps still run;
a step the wall-clock budget cannot hold is skipped with the reason."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess

import pytest
from conftest import REPO

STEPS = ["bench", "paper_7b", "restem", "multi_adapter"]


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    gpu_check().main(["--device", "cpu", "--tiny", "--out", str(out)])
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_every_step_runs_and_the_report_lists_it(full):
    report, md = full
    assert list(report["steps"]) == STEPS
    assert {n: s["status"] for n, s in report["steps"].items()} == dict.fromkeys(STEPS, "ok"), report["steps"]
    assert report["device"] == "cpu" and report["environment"]["packages"]["trl"]
    assert "| step | status | seconds | result |" in md
    for name in STEPS:
        assert f"| {name} | ok |" in md
    assert "| pipeline | inner loops / hour |" in md and "| job seed | step | seal | plain | abs diff |" in md


def test_bench_compares_the_three_pipelines_and_their_loss_curves(full):
    r = full[0]["steps"]["bench"]["result"]
    ph = r["inner_loops_per_hour"]
    assert all(ph[k] > 0 for k in ("seal", "plain", "reference"))
    assert math.isclose(r["speedup_vs_plain"], ph["seal"] / ph["plain"])
    assert math.isclose(r["speedup_vs_reference"], ph["seal"] / ph["reference"])
    assert r["matmul_peak_tflops"] > 0 and 0 < r["mfu_train"] and 0 < r["mfu_train_plain"]
    assert all(v > 0 for v in r["peak_memory_gb"].values())
    curves = r["loss_curves"]
    assert len(curves) >= 2
    for c in curves:  # the same job (documents, seed, hyperparameters) in both pipelines
        assert len(c["seal"]) == len(c["plain"]) == c["steps"][0] > 1
        assert all(math.isfinite(x) for x in c["seal"] + c["plain"])
        seal, plain = c["epoch_means"]["seal"], c["epoch_means"]["plain"]
        assert seal[-1] < seal[0] - 0.05 and plain[-1] < plain[0] - 0.05  # both really train
        assert c["max_rel_epoch_diff"] < 0.02, c  # and learn alike
        assert c["max_abs_step_diff"] == max(abs(a - b) for a, b in zip(c["seal"], c["plain"]))


def test_paper_7b_projects_a_round_from_one_chunk_of_k(full):
    r = full[0]["steps"]["paper_7b"]["result"]
    assert r["inner_loop"]["target_modules"] == ["q_proj", "v_proj"] and r["inner_loop"]["lora_r"] == 32
    assert r["inner_loop"]["batch_size"] == 1
    # tiny: the memory budget holds thousands of these adapters, so K is the cap the tiny run sets
    assert r["K"] == r["inner_loop"]["max_adapters"] == 4
    assert r["chunk_seconds"] > r["train_seconds"] > 0 and r["train_tokens_per_loop"] > 0
    assert math.isclose(r["seconds_per_loop"], r["chunk_seconds"] / r["K"])
    assert math.isclose(r["projected_round_seconds"], 750 * r["chunk_seconds"] / r["K"])
    assert r["steps_per_loop"] == r["docs_per_loop"] * r["inner_loop"]["epochs"]  # batch 1: one document a step


def test_restem_round_runs_end_to_end_and_releases_the_model_before_the_m_step(full):
    r = full[0]["steps"]["restem"]["result"]
    assert set(r["held_out_accuracy"]) == {"0", "1"}
    for by_condition in r["held_out_accuracy"].values():
        assert {"self_edit", "base", "passage"} <= set(by_condition)
        assert all(0.0 <= v <= 1.0 for v in by_condition.values())
    assert {"estep/0", "select/0", "m_step/0", "eval/0", "eval/1"} <= set(r["record_groups"])
    assert r["m_step"]["steps"] >= 1 and r["e_step"]["n_kept"] >= 1
    assert r["at_m_step"]["live_models"] == r["live_models_before_run"] and r["released_before_m_step"]
    assert r["policy_saved_dtypes"] == ["F32"]  # CPU: float32 (bf16 on a GPU)


def test_batched_adapters_match_separate_runs_in_bf16_within_the_stated_tolerance(full):
    r = full[0]["steps"]["multi_adapter"]["result"]
    tol = r["tolerance"]
    assert r["dtype"] == "bfloat16" and r["passed"]
    assert len(r["jobs"]) == 3
    for j in r["jobs"]:
        assert j["update_norm"] > 0.1  # training moved the adapter
        assert j["rel_update_diff"] <= tol["rel_update_diff"] and j["max_loss_diff"] <= tol["max_loss_diff"]
        assert len(j["losses_batched"]) == len(j["losses_separate"]) == j["steps"]


def test_a_failing_step_is_recorded_and_later_steps_still_run(tmp_path):
    report = gpu_check().main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--steps", "bench,multi_adapter",
                               "--fail-step", "bench"])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["steps"]["bench"]["status"] == report["steps"]["bench"]["status"] == "failed"
    assert "failure injected by --fail-step bench" in saved["steps"]["bench"]["traceback"]
    assert saved["steps"]["multi_adapter"]["status"] == "ok" and saved["steps"]["multi_adapter"]["result"]["passed"]
    assert "| bench | failed |" in (tmp_path / "gpu_check.md").read_text()


def test_a_step_the_budget_cannot_hold_is_skipped_with_the_reason(tmp_path):
    report = gpu_check().main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--steps", "restem",
                               "--budget", "0"])
    step = report["steps"]["restem"]
    assert step["status"] == "skipped" and "budget" in step["reason"]
    assert "| restem | skipped |" in (tmp_path / "gpu_check.md").read_text()


def test_the_gpu_command_is_named_and_its_shell_scripts_parse():
    doc = gpu_check().__doc__
    assert 'run(command="bash scripts/gpu_check.sh", carry=[".whl"]' in doc
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)
