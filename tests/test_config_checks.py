"""Range checks of every numeric config value before a run folder is written (seal/config_checks.py), the
`seal` command's one-line errors and stub-folder clean-up (seal/cli.py), and self-edits sampled and
recorded in fixed chunks so a killed run redoes at most one chunk (seal/sample_records.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import compose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seal import cli
from seal.cli import recipe_config, recipes, resolved, run_experiment
from seal.config import ConfigError, derive_seed
from seal.config_checks import CONSTRAINTS, check_ranges, parse_rule, problems
from seal.run_dir import RunDir
from seal.sample_records import contexts_per_chunk, read_samples, sample_chunked

ROOT = Path(__file__).resolve().parents[1]
BASE_ONLY = ["experiment=ki_eval", "model=tiny-random", "data.limit=1", "conditions=[base]", "wandb.mode=disabled"]


def seal_cli(monkeypatch, capsys, run_dir: Path, *overrides: str) -> tuple[int, list[str]]:
    """`seal <BASE_ONLY> hydra.run.dir=<run_dir> <overrides>` in this process: (exit code, stderr lines)."""
    monkeypatch.setattr(sys, "argv", ["seal", *BASE_ONLY, f"hydra.run.dir={run_dir}", *overrides])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def typed(*overrides: str):
    raw = resolved(compose(*overrides))
    raw.pop("hydra", None)
    return recipe_config(raw)[0]


# ------------------------------------------------------------------------------ finding 4, through the CLI

FINDING_4 = [("inner_loop.epochs", "-1"), ("inner_loop.lr", "nan"), ("inner_loop.batch_size", "0"),
             ("inner_loop.lora_r", "0"), ("qa_eval.max_new_tokens", "-1"), ("self_edit.k", "100000")]


@pytest.mark.parametrize("key,value", FINDING_4)
def test_out_of_range_values_are_refused_in_one_line_and_leave_no_folder(monkeypatch, capsys, tmp_path, key, value):
    run = tmp_path / "run"
    code, err = seal_cli(monkeypatch, capsys, run, f"{key}={value}")
    assert code == 2
    assert len(err) == 1 and err[0].startswith("seal: error:") and f"{key}={value}" in err[0], err
    assert not run.exists()  # Hydra's .hydra/ and cli.log went with it
    assert list(tmp_path.iterdir()) == []


def test_the_limit_on_k_says_how_to_go_beyond_it(monkeypatch, capsys, tmp_path):
    code, err = seal_cli(monkeypatch, capsys, tmp_path / "run", "self_edit.k=100000")
    assert code == 2 and "[1, self_edit.max_k=64]" in err[0] and "raise self_edit.max_k" in err[0]
    code, _ = seal_cli(monkeypatch, capsys, tmp_path / "ok", "self_edit.k=100", "self_edit.max_k=100")
    assert code == 0 and (tmp_path / "ok" / "results.json").is_file()


def test_every_problem_is_listed_in_one_message():
    with pytest.raises(ConfigError) as e:
        check_ranges(typed(*BASE_ONLY, "inner_loop.epochs=-1", "inner_loop.lr=nan"))
    msg = str(e.value)
    assert msg.startswith("2 config values out of range:") and "\n" not in msg
    assert "inner_loop.epochs=-1 (must be an integer >= 1)" in msg
    assert "inner_loop.lr=nan (must be a finite number > 0)" in msg


@pytest.mark.parametrize("override,key", [
    ("inner_loop.lr=[1", "inner_loop.lr"),  # Hydra's override grammar
    ("inner_loop.lr=1,2", "inner_loop.lr"),
    ("inner_loop.bogus=1", "inner_loop.bogus"),  # not a key
    ("inner_loop.lr=${oops}", "inner_loop.lr"),  # an interpolation to nowhere
    ("inner_loop.epochs=many", "inner_loop.epochs"),  # OmegaConf's type check
    ("experiment=nope", "experiment/nope"),
])
def test_hydra_and_omegaconf_errors_are_one_line_too(monkeypatch, capsys, tmp_path, override, key):
    code, err = seal_cli(monkeypatch, capsys, tmp_path / "run", override)
    assert code == 2 and len(err) == 1 and err[0].startswith("seal: error:") and key in err[0], err
    assert not (tmp_path / "run").exists()
    assert "HYDRA_FULL_ERROR" not in cli.os.environ


def test_a_folder_that_held_anything_else_is_left_alone(monkeypatch, capsys, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, _ = seal_cli(monkeypatch, capsys, mine, "inner_loop.epochs=-1")
    assert code == 2 and (mine / "notes.txt").read_text() == "mine"
    done = tmp_path / "done"
    assert seal_cli(monkeypatch, capsys, done)[0] == 0
    before = sorted(p.name for p in done.iterdir())
    code, err = seal_cli(monkeypatch, capsys, done, f"resume={done}", "inner_loop.epochs=-1")
    assert code == 2 and "inner_loop.epochs=-1" in err[0]
    assert sorted(p.name for p in done.iterdir()) == before


def test_a_refused_run_removes_only_hydras_files(tmp_path):
    stub = tmp_path / "stub"
    (stub / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (stub / ".hydra" / name).write_text("x")
    (stub / "cli.log").write_text("")
    assert cli.new_run_folder(stub, resume=None) and not cli.new_run_folder(stub, resume=str(stub))
    (stub / ".hydra" / "extra.txt").write_text("x")
    cli.remove_stub(stub)
    assert (stub / ".hydra" / "extra.txt").is_file() and (stub / "cli.log").is_file()
    (stub / ".hydra" / "extra.txt").unlink()
    (stub / ".seal-run").write_text("x")
    (stub / ".seal-lock").write_text("x")
    assert not cli.new_run_folder(stub, resume=None)  # the marker: not Hydra's
    cli.remove_stub(stub)  # another process may hold a folder with seal's lock: never removed here
    assert (stub / ".seal-lock").is_file() and (stub / ".seal-run").is_file()
    (stub / ".seal-run").unlink()
    (stub / ".seal-lock").unlink()
    cli.remove_stub(stub)
    assert not stub.exists()


def test_a_config_the_recipe_refuses_leaves_no_run_folder(monkeypatch, capsys, tmp_path):
    """ki_eval refuses `self_edit.format=from_file` in its own validation, once the run folder exists: the
    run's own files go (its lock last, while held), then Hydra's."""
    path = tmp_path / "refused"
    code, err = seal_cli(monkeypatch, capsys, path, "conditions=[base,self_edit]", "self_edit.format=from_file")
    assert code == 2 and len(err) == 1 and "self_edit.format=from_file" in err[0]
    assert not path.exists()
