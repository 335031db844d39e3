"""Configs checked when composed (seal/infra/schemas.py, seal/infra/name_checks.py): Hydra composes against each
recipe's typed schema, so a wrong type fails before any run folder exists, `--cfg job` shows every key that
takes effect, and names are refused with the valid choices before anything is written."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, compose
from hydra.errors import HydraException
from omegaconf import OmegaConf

from seal import cli
from seal.cli import recipe_config, recipes, resolved
from seal.eval.graders import GRADERS
from seal.infra.config import ConfigError, to_dataclass
from seal.infra.config_checks import check_ranges
from seal.infra.hydra_config import one_line
from seal.infra.run_dir import RunDir
from seal.infra.schemas import RunOptions
from seal.rl.selection import RULES

EXPERIMENTS = sorted(p.stem for p in (REPO / "seal" / "configs" / "experiment").glob("*.yaml"))
TINY = ["experiment=ki_demo", "model=tiny-random", "wandb.mode=disabled"]


@pytest.fixture
def own_logging():
    """`seal` in this process points the root logger at its run folder's cli.log (Hydra's job logging); a
    refused run removes that folder, so the handlers are put back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def seal(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The installed `seal` entry point, run in its own process from `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-c", "from seal.cli import main; main()", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_wrong_type_fails_when_composed_naming_the_key_and_leaves_no_run_folder(tmp_path):
    proc = seal(tmp_path, *TINY, "inner_loop.lr=abc")  # Hydra's own run folder: runs/ki_demo/<time>
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert err[0].startswith("seal: error:") and "inner_loop.lr" in err[0] and "abc" in err[0]
    assert list(tmp_path.iterdir()) == []  # Hydra never made the folder (nor runs/ki_demo/ above it)


def test_cfg_job_shows_every_key_that_takes_effect(tmp_path):
    proc = seal(tmp_path, "experiment=ki_demo", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    raw = resolved(compose("experiment=ki_demo"))
    typed, _ = recipe_config(raw)
    used = json.loads(json.dumps(dataclasses.asdict(typed)))
    for section in ("backend", "grader", "inner_loop", "m_step", "runtime", "selection"):
        assert shown[section] == used[section], section  # every field, the defaults no YAML names included
    assert "prompt" in shown["grader"] and "start_timeout_s" in shown["backend"]
    assert "scheduler_kwargs" in shown["inner_loop"]  # a field only the dataclass defines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override,key,choices", [
    ("selection.rule=best_of_3", "selection.rule", list(RULES)),
    ("grader.kind=gpt", "grader.kind", list(GRADERS)),
    ("restem.reward=luck", "restem.reward", ["accuracy", "binary", "likelihood", "self_questions"]),
    ("self_edit.format=poetry", "self_edit.format", ["implications", "self-qa", "entigraph"]),
    ("data.source=web", "data.source", ["fictional", "file", "squad"]),
    ("inner_loop.scheduler=cosine_typo", "inner_loop.scheduler", ["linear", "warmup_stable_decay", "infinite"]),
    ("m_step.launcher=slurm", "m_step.launcher", ["inline", "torchrun", "accelerate"]),
    ("runtime.name=slurm", "runtime.name", ["local", "ray"]),
    ("resume_inputs=maybe", "resume_inputs", ["check", "redo", "keep"]),
])
def test_an_unknown_name_is_refused_before_any_run_folder(monkeypatch, capsys, own_logging, tmp_path, override, key,
                                                          choices):
    run = tmp_path / "run"
    opened = []  # every RunDir the run opens (none: the name was refused first)
    real_init = RunDir.__init__
    monkeypatch.setattr(RunDir, "__init__", lambda self, *a, **kw: (opened.append(a), real_init(self, *a, **kw))[1])
    monkeypatch.setattr(sys, "argv", ["seal", *TINY, f"hydra.run.dir={run}", override])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("seal: error:"), err
    assert key in err[0] and all(c in err[0] for c in choices), err[0]
    assert opened == [] and not run.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_against_its_recipes_schema(experiment):
    cfg = compose(f"experiment={experiment}")
    cls, _ = recipes()[cfg.experiment.recipe]
    assert OmegaConf.get_type(cfg).__name__ == cls.__name__  # its own recipe's fields, no other's
    assert {f.name for f in dataclasses.fields(cls)} | {"experiment"} | set(cli.RUN_KEYS) == set(cfg)


def test_the_run_options_are_the_clis_run_keys():
    assert tuple(f.name for f in dataclasses.fields(RunOptions)) == cli.RUN_KEYS


def test_a_typo_in_a_shipped_experiment_file_names_the_key(tmp_path):
    """A bad value in a YAML file (not an override) fails at composition with its key in the one line."""
    configs = tmp_path / "configs"
    import shutil

    shutil.copytree(REPO / "seal" / "configs", configs)
    (configs / "experiment" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - ki_demo\n  - _self_\n"
                                                      "experiment:\n  name: mine\nm_step:\n  launcher: slurm\n")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(configs), version_base=None), pytest.raises(HydraException) as e:
        hydra_compose(config_name="config", overrides=["experiment=mine"])
    assert "m_step.launcher: Invalid value 'slurm'" in one_line(e.value)  # the file's own line names no key


def test_names_reach_the_library_as_plain_strings_in_frozen_dataclasses():
    typed, _ = recipe_config(resolved(compose(*TINY, "inner_loop.scheduler=cosine", "runtime.name=local")))
    assert type(typed.inner_loop.scheduler) is str and type(typed.runtime.name) is str
    assert type(typed.self_edit.split) is str and typed.m_step.launcher == "inline"
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.inner_loop.lr = 1.0  # type: ignore[misc]


def test_a_dict_of_sections_takes_new_entries_and_checks_them():
    from seal.recipes.ki_continual import ContinualConfig

    cfg = to_dataclass(ContinualConfig, {"variants": {"mine": {"scheduler": "rewarm_cosine"}}}, "continual")
    assert cfg.variants["mine"].scheduler == "rewarm_cosine" and cfg.variants["plain"].scheduler is None
    with pytest.raises(ConfigError, match="variants.mine.scheduler"):
        to_dataclass(ContinualConfig, {"variants": {"mine": {"scheduler": "cosine_typo"}}}, "continual")
    with pytest.raises(ConfigError, match="variants.mine.typo"):
        to_dataclass(ContinualConfig, {"variants": {"mine": {"typo": 1}}}, "continual")


def test_schedule_arguments_are_checked_with_the_schedule():
    ok = compose(*TINY, "inner_loop.scheduler=cosine_with_restarts", "inner_loop.scheduler_kwargs.num_cycles=2")
    check_ranges(recipe_config(resolved(ok))[0])  # a new key of the dict without Hydra's `+`
    bad = compose(*TINY, "inner_loop.scheduler_kwargs.num_cycles=2")  # linear has no cycles
    with pytest.raises(ConfigError, match=r"inner_loop.scheduler=linear .*num_cycles"):
        check_ranges(recipe_config(resolved(bad))[0])
    wsd = compose(*TINY, "m_step.scheduler=warmup_stable_decay")  # the Trainer fills in nothing
    with pytest.raises(ConfigError, match=r"m_step.scheduler=warmup_stable_decay .*num_decay_steps"):
        check_ranges(recipe_config(resolved(wsd))[0])
    wsd = compose(*TINY, "m_step.scheduler=warmup_stable_decay", "m_step.scheduler_kwargs.num_decay_steps=2")
    check_ranges(recipe_config(resolved(wsd))[0])


def test_seal_chat_composes_against_its_schema():
    from seal.chat.cli import load_config

    cfg = load_config(["chat.scheduler=rewarm_cosine"])
    assert cfg.chat.scheduler == "rewarm_cosine" and cfg.self_edit.max_new_tokens == 128
    with pytest.raises(ConfigError, match="inner_loop.lr"):
        load_config(["inner_loop.lr=abc"])
