"""The config a run folder records is every value that takes effect (the typed config, defaults
included), and a run folder written before that (it recorded the composed YAML) still resumes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml
from conftest import compose

from seal import cli
from seal.cli import recipe_config, resolved, run_experiment
from seal.recipes.ki_eval import KIEvalConfig

TINY = ["experiment=ki_eval", "model=tiny-random", "wandb.mode=disabled", "self_edit.max_new_tokens=8",
        "self_edit.k=1", "inner_loop.epochs=1", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8",
        "qa_eval.max_new_tokens=4", "data.limit=2", "conditions=[base,passage]"]


def test_config_yaml_lists_every_field_of_the_typed_config(tmp_path):
    cfg = compose(*TINY, "inner_loop.lr=0.005")
    run_experiment(cfg, tmp_path / "run")
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    typed, _ = recipe_config(resolved(cfg))
    want = json.loads(json.dumps(dataclasses.asdict(typed), default=str))
    assert {k: recorded[k] for k in want} == want  # every section, every field, with the values used
    assert recorded["experiment"]["recipe"] == "ki_eval" and recorded["inner_loop"]["lr"] == 0.005
    fields = {f.name for f in dataclasses.fields(KIEvalConfig)}
    assert fields <= set(recorded)
    # a field no YAML file names is recorded too (its dataclass default)
    grader_yaml = (Path(cli.CONFIG_DIR) / "grader" / "match.yaml").read_text()
    assert "prompt:" not in grader_yaml and recorded["grader"]["prompt"] == typed.grader.prompt


def test_a_folder_that_recorded_the_composed_yaml_resumes_without_redoing_work(tmp_path, monkeypatch):
    """A run started by a seal that wrote the composed YAML as config.yaml: resuming it with a seal that
    writes the typed config must recognise the same config (no refusal, no force) and reuse its records."""
    path = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(cli, "effective_config", lambda raw, typed: raw)  # the older behaviour
        first = run_experiment(compose(*TINY), path)
    old_text = (path / "config.yaml").read_text()
    lines_before = (path / "records.jsonl").read_text().count("\n")
    again = run_experiment(compose(*TINY, f"resume={path}"), path)
    assert again == first
    assert (path / "records.jsonl").read_text().count("\n") == lines_before  # nothing recomputed
    assert (path / "config.yaml").read_text() == old_text  # the folder's own record is left as it was


def test_a_real_change_is_still_refused_on_resume(tmp_path, monkeypatch):
    import pytest

    from seal.infra.run_folder import ResumeError

    path = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(cli, "effective_config", lambda raw, typed: raw)
        run_experiment(compose(*TINY), path)
    with pytest.raises(ResumeError, match="inner_loop.lr"):
        run_experiment(compose(*TINY, "inner_loop.lr=0.5", f"resume={path}"), path)
