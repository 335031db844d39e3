"""Range checks of every numeric config value before a run folder is written (seal/infra/config_checks.py), the
`seal` command's one-line errors and stub-folder clean-up (seal/cli.py), and self-edits sampled and
recorded in fixed chunks so a killed run redoes at most one chunk (seal/infra/sample_records.py)."""

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
from seal.infra.config import ConfigError
from seal.infra.config_checks import CONSTRAINTS, check_ranges, parse_rule, problems
from seal.infra.run_dir import RunDir
from seal.infra.sample_records import contexts_per_chunk, read_samples, sample_chunked

ROOT = Path(__file__).resolve().parents[2]
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


# ------------------------------------------------------------------------------ the constraint table

def field_paths(cls: type, prefix: str = "") -> set[str]:
    """Every dotted key of a typed config, `*` for the names of a dict of sections."""
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, key = hints[f.name], prefix + f.name
        out.add(key)
        if dataclasses.is_dataclass(hint):
            out |= field_paths(hint, key + ".")
        for arg in typing.get_args(hint):  # dict[str, Section]
            if dataclasses.is_dataclass(arg):
                out |= field_paths(arg, key + ".*.")
    return out


def test_every_table_key_is_a_real_config_key_and_every_rule_reads():
    known = set().union(*(field_paths(cls) for cls, _ in recipes().values()))
    from seal.chat.config import SessionConfig

    known |= field_paths(SessionConfig)
    assert not [k for k in CONSTRAINTS if k not in known]  # a typo in the table would silently check nothing
    for text in CONSTRAINTS.values():
        parse_rule(text)


EXPERIMENTS = sorted(p.stem for p in (ROOT / "seal" / "configs" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_shipped_experiment_passes_the_checks(experiment):
    check_ranges(typed(f"experiment={experiment}"))


@dataclass
class _Inner:
    batch_size: int = 1
    rate: float = 0.5
    label: str = "x"


@dataclass
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    sections: dict[str, _Inner] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)
    k: int = 1


def test_generic_rules_cover_keys_the_table_does_not_name():
    assert problems(_Outer()) == []
    bad = _Outer(inner=_Inner(batch_size=0, rate=math.nan), sections={"a": _Inner(rate=math.inf)},
                 weights=[0.5, math.nan], k=0)
    found = " | ".join(problems(bad))
    for key in ("inner.batch_size=0", "inner.rate=nan", "sections.a.rate=inf", "weights[1]=nan", "k=0"):
        assert key in found
    assert "label" not in found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["inner_loop.epochs", "inner_loop.lr", "inner_loop.batch_size", "inner_loop.lora_alpha",
                            "inner_loop.warmup_ratio", "qa_eval.batch_size", "self_edit.k", "self_edit.top_p",
                            "self_edit.temperature", "data.limit", "data.offset", "seed", "inner_loop.max_grad_norm",
                            "inner_loop.lora_dropout"]),
       value=st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from(["abc", "''", "[1,2]", "null", "1e400", "-0.0"])))
def test_random_overrides_run_or_exit_2_in_one_line_and_leave_no_folder(monkeypatch, capsys, tmp_path_factory, key,
                                                                       value):
    """Any value for a numeric key either runs (exit 0) or is refused in one `seal: error:` line naming the
    key (exit 2); a refused run leaves no run folder."""
    run = tmp_path_factory.mktemp("prop") / "run"
    text = repr(value) if isinstance(value, float) else str(value)
    code, err = seal_cli(monkeypatch, capsys, run, f"{key}={text}", "qa_eval.max_new_tokens=2")
    if code == 0:
        assert (run / "results.json").is_file()
    else:
        assert code == 2 and len(err) == 1 and err[0].startswith("seal: error:"), err
        assert key.split(".")[-1] in err[0] or "cannot parse" in err[0], err
        assert not run.exists()


# ------------------------------------------------------------------------------ sampling in recorded chunks

def test_sample_chunked_draws_only_missing_chunks_and_reads_old_whole_records(tmp_path):
    rd = RunDir(tmp_path / "run", {"seed": 0})
    contexts = [SimpleNamespace(uid=f"c{i}") for i in range(5)]
    drawn = []

    def draw(j, group):
        drawn.append(j)
        return {"chunk": j, "seed": j, "completions": {c.uid: [f"{c.uid}-{j}"] for c in group}}

    rd.put("s/1", draw(1, contexts[2:4]))  # chunk 1 was recorded before a kill
    drawn.clear()
    merged = sample_chunked(rd, "s", contexts, contexts_per_chunk(1, 2), draw)
    assert drawn == [0, 2] and merged["seeds"] == [0, 1, 2]
    assert merged["completions"] == {f"c{i}": [f"c{i}-{i // 2}"] for i in range(5)}
    rd.put("old", {"completions": {"c0": ["whole batch"]}})  # a run from before chunking
    assert read_samples(rd, "old")["completions"] == {"c0": ["whole batch"]}
    assert contexts_per_chunk(5, 0) == 64 // 5 and contexts_per_chunk(500, 0) == 1
    rd.close()


def test_sample_chunked_draws_contexts_added_on_resume_without_redrawing_recorded_ones(tmp_path):
    # a run started on 5 contexts in chunks of 4 (chunk 1 holds only c4) and resumed on 8: c5..c7 are drawn
    # in a new chunk 2; chunk 1 is not redrawn, though a fresh run on 8 would have put c4..c7 in it
    rd = RunDir(tmp_path / "run", {"seed": 0})
    contexts = [SimpleNamespace(uid=f"c{i}") for i in range(8)]
    drawn = []

    def draw(j, group):
        drawn.append((j, [c.uid for c in group]))
        return {"chunk": j, "seed": 10 + j, "completions": {c.uid: [f"{c.uid}-{j}"] for c in group}}

    first = sample_chunked(rd, "s", contexts[:5], 4, draw)
    assert drawn == [(0, ["c0", "c1", "c2", "c3"]), (1, ["c4"])] and len(first["completions"]) == 5
    drawn.clear()
    grown = sample_chunked(rd, "s", contexts, 4, draw)
    assert drawn == [(2, ["c5", "c6", "c7"])]
    assert grown["completions"] == {**first["completions"], **{f"c{i}": [f"c{i}-2"] for i in (5, 6, 7)}}
    assert grown["seeds"] == [10, 11, 12]
    drawn.clear()
    assert sample_chunked(rd, "s", contexts, 4, draw) == grown and drawn == []  # a third call draws nothing
    rd.close()


class Killed(Exception):
    pass


@pytest.mark.parametrize("experiment,prefix", [("restem", "estep/0/completions"),
                                               ("ki_eval", "completions/implications")])
def test_a_kill_after_the_first_sampling_chunk_resumes_to_identical_results(monkeypatch, tmp_path, experiment, prefix):
    """`self_edit.sample_chunk=1`: one context per chunk. Killed right after chunk 0 is recorded, the
    resumed run keeps chunk 0 (not resampled) and ends with the uninterrupted run's results."""
    common = ["model=tiny-random", "wandb.mode=disabled", "self_edit.max_new_tokens=8", "self_edit.k=2",
              "self_edit.sample_chunk=1", "inner_loop.epochs=1", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8",
              "qa_eval.max_new_tokens=4"]
    if experiment == "restem":
        common += ["data.num_passages=2", "eval_data.num_passages=1", "restem.rounds=1", "restem.contexts_per_round=2",
                   "restem.seeds_per_edit=1", "restem.eval_passages=1", "m_step.effective_batch=1", "m_step.epochs=1",
                   "m_step.lora_r=4", "m_step.lora_alpha=8"]
    else:
        common += ["data.limit=2", "conditions=[base,self_edit]"]
    cfg = [f"experiment={experiment}", *common]
    full = run_experiment(compose(*cfg), tmp_path / "full")

    path = tmp_path / "killed"
    real = RunDir.put_many

    def dying(self, items):
        out = real(self, items)
        if any(key == f"{prefix}/0" for key, _ in items):
            raise Killed
        return out

    monkeypatch.setattr(RunDir, "put_many", dying)
    with pytest.raises(Killed):
        run_experiment(compose(*cfg), path)
    monkeypatch.setattr(RunDir, "put_many", real)
    before = [json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()]
    assert [r["key"] for r in before if r["key"].startswith(prefix)] == [f"{prefix}/0"]
    resumed = run_experiment(compose(*cfg, f"resume={path}"), path)
    after = [json.loads(x)["key"] for x in (path / "records.jsonl").read_text().splitlines()]
    assert after.count(f"{prefix}/0") == 1 and after.count(f"{prefix}/1") == 1  # chunk 0 not resampled

    def clockless(value):  # wall-clock seconds aside (the generation cost's share), everything is identical
        if isinstance(value, dict):
            return {k: clockless(v) for k, v in value.items() if "seconds" not in k}
        return [clockless(v) for v in value] if isinstance(value, list) else value

    assert json.dumps(clockless(resumed), sort_keys=True) == json.dumps(clockless(full), sort_keys=True)
