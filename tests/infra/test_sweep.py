"""`seal -m` (Hydra multirun): a failing job is recorded and the sweep goes on, each job returns its
headline to the sweeper, folders and names, resume refused, wandb groups; Optuna where it is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from cli_runs import probe, run_seal, world, write_world
from conftest import compose

from seal.infra import sweep
from seal.infra.config import ConfigError
from seal.infra.headline import metric_path, metric_value


def jobs(sweep_dir: Path) -> list[Path]:
    return sweep.job_folders(sweep_dir)


def passage_accuracy(job: Path) -> float:
    return json.loads((job / "results.json").read_text())["conditions"]["passage"]["accuracy"]


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path, monkeypatch, capsys):
    a, b = write_world(tmp_path / "a.json"), write_world(tmp_path / "b.json", start=2)
    missing = tmp_path / "missing.json"
    code, out, err = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": f"{a},{missing},{b}"}),
                              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 1, err[-2000:]
    found = jobs(tmp_path / "sweep")
    assert len(found) == 3
    ok, bad, ok2 = found
    for job in (ok, ok2):
        assert (job / "results.json").is_file() and not (job / sweep.FAILED).exists()
        assert passage_accuracy(job) == 1.0  # lr 1e-2 learns every passage of the world
    failed = json.loads((bad / sweep.FAILED).read_text())
    assert failed["type"] == "DataError" and str(missing) in failed["error"]
    assert "traceback" not in failed  # a user error is one line, here and in the log
    assert f"data.path={missing}" in failed["overrides"]
    assert "Traceback" not in (bad / "cli.log").read_text() and str(missing) in (bad / "cli.log").read_text()
    # the summary: one line per job, and where they are
    assert f"3 job(s) in {tmp_path / 'sweep'}: 2 ok, 1 failed" in out
    assert f"FAILED  {bad.name}  DataError: {missing}" in out
    assert f"seal compare {tmp_path / 'sweep'}" in out
    # job folders are named by their number and swept value only, with no path separator in the name
    assert [j.name.split("_", 1)[0] for j in found] == ["0", "1", "2"]
    assert all(j.name.startswith(f"{i}_data.path=") and "model" not in j.name for i, j in enumerate(found))


def test_any_other_exception_fails_its_job_only_with_its_traceback_in_the_log(tmp_path, monkeypatch, capsys):
    from seal.recipes import ki_eval

    real = ki_eval.run

    def breaks_on_one_passage(cfg, rd):
        if cfg.data.limit == 1:
            raise RuntimeError("a bug in the recipe")
        return real(cfg, rd)

    monkeypatch.setattr(ki_eval, "run", breaks_on_one_passage)
    world_file = write_world(tmp_path / "w.json")
    code, out, _ = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": world_file, "data.limit": "1,2"}),
                              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 1
    bad, ok = jobs(tmp_path / "sweep")
    failed = json.loads((bad / sweep.FAILED).read_text())
    assert failed["type"] == "RuntimeError" and failed["error"] == "a bug in the recipe"
    assert "RuntimeError: a bug in the recipe" in failed["traceback"]
    assert "Traceback" in (bad / "cli.log").read_text()
    assert (bad / "config.yaml").is_file()  # the record of what ran stays (a single run's refusal removes it)
    assert (ok / "results.json").is_file() and "2 job(s)" in out and "1 ok, 1 failed" in out


def test_the_sweeper_receives_each_jobs_headline(tmp_path, monkeypatch, capsys):
    """The basic sweeper with a test-only Hydra callback that records what each job returned."""
    world_file = write_world(tmp_path / "w.json")
    returns = tmp_path / "returns.jsonl"
    code, out, err = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": world_file,
                                                                   "inner_loop.lr": "0.01,0.000001"}),
                              *probe(returns), f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, err[-2000:]
    got = {Path(r["dir"]).name: r["value"] for r in map(json.loads, returns.read_text().splitlines())}
    assert len(got) == 2
    for job in jobs(tmp_path / "sweep"):  # ki_eval's headline: its last condition's accuracy
        assert got[job.name] == passage_accuracy(job)
    assert sorted(got.values()) == [0.0, 1.0]  # lr 1e-6 learns nothing, lr 1e-2 everything
    assert "2 ok, 0 failed" in out and "conditions.passage.accuracy = 1" in out


def test_sweep_metric_names_what_jobs_return_and_a_wrong_one_fails_the_job(tmp_path, monkeypatch, capsys):
    world_file = write_world(tmp_path / "w.json")
    returns = tmp_path / "returns.jsonl"
    code, _, _ = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": world_file, "data.limit": "1,2"}),
                            "sweep_metric=conditions.base.n_questions,nope.accuracy", *probe(returns),
                            f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 1
    values = [json.loads(line)["value"] for line in returns.read_text().splitlines()]
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 2.0 and math.isnan(values[3])
    failed = json.loads((jobs(tmp_path / "sweep")[1] / sweep.FAILED).read_text())
    assert failed["type"] == "ConfigError" and "sweep_metric=nope.accuracy" in failed["error"]
    assert "(it has: conditions" in failed["error"]
    # the record of the run is not changed by the key: same config as a run without it
    recorded = [yaml.safe_load((j / "config.yaml").read_text()) for j in jobs(tmp_path / "sweep")]
    assert all("sweep_metric" not in c for c in recorded)


def test_resume_is_refused_in_a_sweep_before_anything_is_written(tmp_path, monkeypatch, capsys):
    for resume in ("resume=runs/x", "resume=runs/x,runs/y"):
        code, _, err = run_seal(monkeypatch, capsys, "-m", "experiment=ki_eval", "data.limit=1,2", resume,
                                  f"hydra.sweep.dir={tmp_path / 'sweep'}")
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "resume= cannot be combined with -m" in lines[0], err
        assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("swept, named", [("inner_loop.lrr=1,2", "lrr"), ("inner_loop.lr=0.001,abc", "abc")])
def test_a_value_that_fails_when_composed_stops_the_sweep_before_any_job(tmp_path, monkeypatch, capsys, swept,
                                                                        named):
    """Hydra's basic sweeper composes every job before the first runs: one bad value among good ones
    refuses the whole sweep, and no job folder is written."""
    code, out, err = run_seal(monkeypatch, capsys, "-m", "experiment=ki_eval", swept,
                              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("seal: error: ") and named in lines[0], err
    assert not (tmp_path / "sweep").exists() and "job(s)" not in out


def test_showing_the_config_of_a_sweep_is_one_line_naming_the_way_out(tmp_path, monkeypatch, capsys):
    code, out, err = run_seal(monkeypatch, capsys, "-m", "experiment=ki_eval", "inner_loop.lr=0.001,0.002",
                              f"hydra.sweep.dir={tmp_path / 'sweep'}", "--cfg", "job")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "drop -m" in lines[0] and not out, err
    assert not (tmp_path / "sweep").exists()


def test_metric_paths_read_keys_that_hold_dots():
    results = {"conditions": {"proxy(alpha=0.5)": {"A": 0.25}, "proxy(alpha=0.5)x": {"A": 0.5}, "M": {"A": None}}}
    assert metric_value(results, metric_path("ki_decoding", results, "conditions.proxy(alpha=0.5).A")) == 0.25
    assert math.isnan(metric_value(results, ["conditions", "M", "A"]))
    with pytest.raises(ConfigError, match=r"no 'proxy\(alpha=0' under 'conditions' \(it has: proxy"):
        metric_path("ki_decoding", results, "conditions.proxy(alpha=0.75).A")
    with pytest.raises(ConfigError, match="not a number"):
        metric_value(results, metric_path("ki_eval", results, "conditions.M"))
    # the defaults: the last condition (ki_eval), Co-LLM at the configured threshold (ki_decoding)
    assert metric_path("ki_eval", {"conditions": {"base": {}, "self_edit": {}}}, None) == \
        ["conditions", "self_edit", "accuracy"]
    decoding = {"conditions": {"base": {}, "co_llm(rate=0.5)": {}, "co_llm(chosen:val)": {}, "oracle routing": {}}}
    assert metric_path("ki_decoding", decoding, None) == ["conditions", "co_llm(chosen:val)", "mean"]
    assert metric_path("tool_use", {"conditions": {"none": {"0": {}}, "online": {"10": {}, "4": {}}}}, None) == \
        ["conditions", "online", "10", "exact"]


def test_job_folder_names_are_short_safe_and_distinct():
    long = [f"data.path=/data/{'x' * 200}/{i}.json" for i in range(2)]
    names = [sweep.job_folder_name(3, [o]) for o in long]
    assert names[0] != names[1] and all(len(n) <= sweep.MAX_NAME + 2 and "/" not in n for n in names)
    assert sweep.job_folder_name(0, ["inner_loop.lr=0.001", "conditions=[base,passage]"]) == \
        "0_inner_loop.lr=0.001,conditions=_base,passage_"
    assert sweep.job_folder_name(7, []) == "7"


@pytest.mark.parametrize("mode,group,want", [("offline", None, "sweeps-2026-01-01_00-00-00"),
                                             ("offline", "mine", "mine"), ("disabled", None, None)])
def test_sweep_jobs_share_a_wandb_group_unless_one_is_set(mode, group, want):
    from seal.infra.tracking import WandbConfig

    if "group" not in WandbConfig.__dataclass_fields__:
        pytest.skip("this WandbConfig has no group")
    cfg = compose("experiment=ki_eval", f"wandb.mode={mode}", *([f"wandb.group={group}"] if group else []))
    sweep.share_wandb_group(cfg, Path("runs/sweeps/2026-01-01_00-00-00"))
    assert cfg.wandb.group == want


def test_optuna_sweep_optimises_the_jobs_headline(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed "
                        "(pip install -e '.[sweep]')")
    world_file = write_world(tmp_path / "w.json")
    code, _, err = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": world_file,
                                                                   "inner_loop.lr": "choice(0.01,0.000001)"}),
                              "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                              "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=0",
                              f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, err[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    found = jobs(tmp_path / "sweep")
    assert len(found) == 2
    headlines = {j.name: passage_accuracy(j) for j in found}
    assert best["best_value"] == max(headlines.values())
    lr = best["best_params"]["inner_loop.lr"]
    assert any(f"inner_loop.lr={lr}" in name and value == best["best_value"] for name, value in headlines.items())
