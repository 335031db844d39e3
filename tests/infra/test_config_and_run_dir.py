"""Typed configs, seed derivation, and the run folder (records, resume, refusal on config change)."""

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from seal.infra.config import ConfigError, derive_seed, plain, to_dataclass
from seal.infra.records_file import checksum
from seal.infra.run_dir import RESUME_NEUTRAL, RunDir, fingerprint
from seal.infra.run_folder import MARKER, ResumeError

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# to_dataclass
# ---------------------------------------------------------------------------------------------


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    name: str = "adam"
    flag: bool = False
    maybe: int | None = None


@dataclass
class Outer:
    seed: int = 0
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


@dataclass
class Deep:
    outer: Outer = field(default_factory=Outer)
    label: str = "x"


@pytest.mark.parametrize("node,key", [
    ({"outer": "offline"}, "outer"),
    ({"outer": {"inner": 3}}, "outer.inner"),
    ({"outer": {"inner": ["a"]}}, "outer.inner"),
    ({"outer": {"inner": {"typo": 1}}}, "outer.inner.typo"),
    ({"outer": {"inner": {"steps": "many"}}}, "outer.inner.steps"),
    ({"outer": None}, "outer"),
])
def test_nested_sections_name_the_key(node, key):
    with pytest.raises(ConfigError) as e:
        to_dataclass(Deep, OmegaConf.create(node), "root")
    assert f"key '{key}'" in str(e.value)
    assert to_dataclass(Deep, {"outer": {"inner": {"steps": 4}}}, "root").outer.inner.steps == 4


def test_to_dataclass_builds_typed_objects():
    node = OmegaConf.create({"seed": 3, "tags": ["a"], "inner": {"lr": "1e-4", "steps": 5, "flag": True,
                                                                  "maybe": 7}})
    out = to_dataclass(Outer, node, "root")
    assert out == Outer(seed=3, tags=["a"], inner=Inner(lr=1e-4, steps=5, name="adam", flag=True, maybe=7))
    assert isinstance(out.inner, Inner) and isinstance(out.inner.lr, float)
    assert to_dataclass(Outer, None, "root") == Outer()
    assert to_dataclass(Inner, {"maybe": None}, "inner") == Inner()


@pytest.mark.parametrize("node,key", [
    ({"bogus": 1}, "bogus"),
    ({"inner": {"bogsu": 1}}, "inner.bogsu"),
])
def test_unknown_key_is_named(node, key):
    with pytest.raises(ConfigError) as e:
        to_dataclass(Outer, node, "root")
    assert f"key '{key}'" in str(e.value) and "section 'root'" in str(e.value)


@pytest.mark.parametrize("node,key", [
    ({"seed": "zero"}, "seed"),
    ({"seed": None}, "seed"),
    ({"inner": {"lr": "fast"}}, "inner.lr"),
    ({"inner": {"steps": 2.5}}, "inner.steps"),
    ({"inner": {"flag": "maybe"}}, "inner.flag"),
    ({"inner": {"maybe": "x"}}, "inner.maybe"),
    ({"inner": 5}, "inner"),
])
def test_wrong_type_is_named(node, key):
    with pytest.raises(ConfigError) as e:
        to_dataclass(Outer, node, "root")
    assert f"key '{key}'" in str(e.value)


def test_real_sections_validate():
    from seal.data.sources import DataConfig
    from seal.domains.knowledge.self_edit import SelfEditConfig

    se = to_dataclass(SelfEditConfig, yaml.safe_load((ROOT / "seal/configs/self_edit/default.yaml").read_text()),
                      "self_edit")
    assert se.format == "implications" and "self-qa" in se.templates
    data = to_dataclass(DataConfig, yaml.safe_load((ROOT / "seal/configs/data/squad.yaml").read_text()), "data")
    assert data.source == "squad" and data.limit is None
    with pytest.raises(ConfigError, match="key 'limt'"):
        to_dataclass(DataConfig, {"limt": 3}, "data")
    with pytest.raises(ConfigError, match="key 'limit'"):
        to_dataclass(DataConfig, {"limit": "all"}, "data")


def test_plain_resolves_interpolations():
    node = OmegaConf.create({"a": 2, "b": "${a}", "c": {"d": "${b}"}})
    assert plain(node) == {"a": 2, "b": 2, "c": {"d": 2}}
    assert plain({"x": 1}) == {"x": 1}


# ---------------------------------------------------------------------------------------------
# derive_seed
# ---------------------------------------------------------------------------------------------


def test_derive_seed_range_and_repeatability():
    s = derive_seed(0, "inner_loop", "passage", "squad_val.json#3", 0)
    assert isinstance(s, int) and 0 <= s < 2**31
    assert s == derive_seed(0, "inner_loop", "passage", "squad_val.json#3", 0)


def test_derive_seed_sensitive_to_every_name():
    base = (0, "inner_loop", "passage", "uid#3", 0)
    seeds = {derive_seed(*base)}
    variants = [(1, "inner_loop", "passage", "uid#3", 0), (0, "inner_loop2", "passage", "uid#3", 0),
                (0, "inner_loop", "self_edit", "uid#3", 0), (0, "inner_loop", "passage", "uid#4", 0),
                (0, "inner_loop", "passage", "uid#3", 1), (0, "passage", "inner_loop", "uid#3", 0),
                (0, "inner_loop", "passage", "uid#3"), (0, "inner_loop", "passage", "uid#3", 0, 0),
                (0, "inner_looppassage", "uid#3", 0)]
    for v in variants:
        seeds.add(derive_seed(*v))
    assert len(seeds) == len(variants) + 1
    assert len({derive_seed(0, "x", i) for i in range(200)}) == 200


def test_derive_seed_stable_across_processes():
    """No dependence on Python's per-process string hashing (PYTHONHASHSEED)."""
    args = (7, "self_edit_sampling", "implications", "a#1", "b#2")
    code = f"from seal.infra.config import derive_seed; print(derive_seed(*{args!r}))"
    outs = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        res = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=True)
        outs.add(int(res.stdout.strip()))
    assert outs == {derive_seed(*args)}


# ---------------------------------------------------------------------------------------------
# RunDir
# ---------------------------------------------------------------------------------------------

CONFIG = {"seed": 0, "model": {"name": "tiny-random"}, "inner_loop": {"lr": 1e-3, "epochs": 3},
          "data": {"source": "fictional", "limit": 4}, "wandb": {"mode": "offline"}, "resume": None,
          "force_resume": False}


def cfg(**changes) -> dict:
    out = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def lines(run: Path) -> list[str]:
    return (run / "records.jsonl").read_text().splitlines()


def test_new_run_writes_config_and_meta(tmp_path):
    rd = RunDir(tmp_path / "run", CONFIG)
    assert yaml.safe_load((rd.path / "config.yaml").read_text()) == CONFIG
    meta = json.loads((rd.path / "run.json").read_text())
    assert meta["fingerprint"] == fingerprint(CONFIG) and "started_at" in meta
    assert rd.records == {} and not rd.has("x") and rd.get("x") is None


def test_put_has_get_round_trip(tmp_path):
    rd = RunDir(tmp_path / "run", CONFIG)
    key = RunDir.key("self_edit", "squad#3", 2)
    assert key == "self_edit/squad#3/2"
    rec = rd.put(key, {"accuracy": 0.5, "questions": [{"q": "a", "correct": True}]})
    assert rec == {"key": key, "accuracy": 0.5, "questions": [{"q": "a", "correct": True}]}
    assert rd.has(key) and rd.get(key) == rec
    tagged = {**rec, "_cfg": fingerprint(CONFIG)}  # on disk with the config that made it, and its checksum
    assert [json.loads(x) for x in lines(rd.path)] == [{**tagged, "_sum": checksum(tagged)}]
    rd.metric(condition="base", accuracy=0.25)
    (m,) = [json.loads(x) for x in (rd.path / "metrics.jsonl").read_text().splitlines()]
    assert m["condition"] == "base" and m["accuracy"] == 0.25 and "time" in m
    out = rd.write_json("results.json", {"a": [1, 2]})
    assert json.loads(out.read_text()) == {"a": [1, 2]} and not (rd.path / "results.json.tmp").exists()


def test_records_survive_reopening(tmp_path):
    rd = RunDir(tmp_path / "run", CONFIG)
    for i in range(3):
        rd.put(RunDir.key("base", i), {"i": i})
    rd.put(RunDir.key("base", 1), {"i": 10})  # a later record for the same key wins
    rd.close()
    with RunDir(tmp_path / "run", CONFIG, resume=True) as again:
        assert set(again.records) == {"base/0", "base/1", "base/2"}
        assert again.get("base/1")["i"] == 10 and again.get("base/2")["i"] == 2
        again.put("base/3", {"i": 3})
    third = RunDir(tmp_path / "run", CONFIG, resume=True)
    assert set(third.records) == {"base/0", "base/1", "base/2", "base/3"}
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert len(meta["resumed_at"]) == 2


def test_torn_last_line_dropped_and_file_cut(tmp_path):
    with RunDir(tmp_path / "run", CONFIG) as rd:
        rd.put("a", {"v": 1})
        rd.put("b", {"v": 2})
    before = (rd.path / "records.jsonl").read_text()
    with open(rd.path / "records.jsonl", "a") as f:
        f.write('{"key": "c", "v": 3, "questi')  # killed mid-write, no newline
    with pytest.warns(UserWarning, match="torn"):
        again = RunDir(rd.path, CONFIG, resume=True)
    assert set(again.records) == {"a", "b"}
    assert (rd.path / "records.jsonl").read_text() == before  # the whole records exactly as they were
    assert not (rd.path / "records.jsonl.tmp").exists()
    again.put("c", {"v": 3})
    again.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file: no warning the next time
        third = RunDir(rd.path, CONFIG, resume=True)
    assert third.get("c") == {"key": "c", "v": 3} and set(third.records) == {"a", "b", "c"}


def test_a_failed_cut_of_a_torn_line_loses_no_records(tmp_path, monkeypatch):
    with RunDir(tmp_path / "run", CONFIG) as rd:
        rd.put("a", {"v": 1})
        rd.put("b", {"v": 2})
    with open(rd.path / "records.jsonl", "a") as f:
        f.write('{"key": "c", "v": 3, "questi')
    before = (rd.path / "records.jsonl").read_text()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "truncate", read_only)
    with pytest.warns(UserWarning, match="torn"), pytest.raises(ResumeError, match="torn last line.*untouched"):
        RunDir(rd.path, CONFIG, resume=True)
    monkeypatch.undo()
    assert (rd.path / "records.jsonl").read_text() == before
    with pytest.warns(UserWarning, match="torn"):
        assert set(RunDir(rd.path, CONFIG, resume=True).records) == {"a", "b"}


def test_corrupt_middle_line_refuses(tmp_path):
    with RunDir(tmp_path / "run", CONFIG) as rd:
        rd.put("a", {"v": 1})
    path = rd.path / "records.jsonl"
    path.write_text(path.read_text() + '{"key": "b", "v": \n' + json.dumps({"key": "c", "v": 3}) + "\n")
    before = path.read_text()
    with pytest.raises(ResumeError, match=r"records.jsonl:2: corrupt"):
        RunDir(rd.path, CONFIG, resume=True)
    assert path.read_text() == before  # nothing is thrown away


def test_resume_with_changed_config_names_the_key(tmp_path):
    RunDir(tmp_path / "run", CONFIG).put("a", {"v": 1})
    with pytest.raises(ResumeError) as e:
        RunDir(tmp_path / "run", cfg(inner_loop__lr=5e-4), resume=True)
    msg = str(e.value)
    assert "inner_loop.lr" in msg and "0.001" in msg and "0.0005" in msg and "force_resume" in msg
    assert "inner_loop.epochs" not in msg and "wandb" not in msg
    with pytest.raises(ResumeError, match=r"data\.new_key"):
        RunDir(tmp_path / "run", cfg(data__new_key=1), resume=True)
    with pytest.raises(ResumeError, match=r"seed"):
        RunDir(tmp_path / "run", cfg(seed=1), resume=True)
    # the refusals changed nothing
    again = RunDir(tmp_path / "run", CONFIG, resume=True)
    assert set(again.records) == {"a"}


def test_force_allows_a_changed_config(tmp_path):
    RunDir(tmp_path / "run", CONFIG).put("a", {"v": 1})
    with RunDir(tmp_path / "run", cfg(inner_loop__lr=5e-4), resume=True, force=True) as rd:
        assert rd.has("a")
    # the folder now describes the new config; the old one is kept beside it and the next resume needs no force
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["inner_loop"]["lr"] == 5e-4
    kept = list((tmp_path / "run").glob("config.*.yaml"))
    assert len(kept) == 1 and yaml.safe_load(kept[0].read_text())["inner_loop"]["lr"] != 5e-4
    assert RunDir(tmp_path / "run", cfg(inner_loop__lr=5e-4), resume=True).has("a")


@pytest.mark.parametrize("key", RESUME_NEUTRAL)
def test_resume_neutral_keys_may_change(tmp_path, key):
    RunDir(tmp_path / "run", CONFIG).put("a", {"v": 1})
    changed = cfg(**{key: "keep" if key == "resume_inputs" else {"mode": "online", "project": "other"}})
    assert fingerprint(changed) == fingerprint(CONFIG)
    rd = RunDir(tmp_path / "run", changed, resume=True)
    assert rd.has("a")


def test_new_run_in_a_folder_with_records_refuses(tmp_path):
    with RunDir(tmp_path / "run", CONFIG) as rd:
        rd.put("a", {"v": 1})
    before = (rd.path / "records.jsonl").read_text()
    with pytest.raises(ResumeError, match="already holds a run"):
        RunDir(tmp_path / "run", CONFIG)
    assert (rd.path / "records.jsonl").read_text() == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ResumeError, match="not a run folder.*no such folder"):
        RunDir(tmp_path / "missing", CONFIG, resume=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResumeError, match="not a run folder.*it is empty"):
        RunDir(tmp_path / "empty", CONFIG, resume=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_of_a_run_killed_at_start_up_starts_it(tmp_path):
    """Killed after seal made the folder (its marker) but before run.json: resume starts the run instead of
    failing. A folder with only Hydra's files is not a run: seal never started there."""
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    with pytest.raises(ResumeError, match="only Hydra's start-up files"):
        RunDir(tmp_path / "run", CONFIG, resume=True)
    (tmp_path / "run" / MARKER).write_text("{}")
    with pytest.warns(UserWarning, match="never started"), RunDir(tmp_path / "run", CONFIG, resume=True) as rd:
        rd.put("a", {"v": 1})
    assert RunDir(tmp_path / "run", CONFIG, resume=True).has("a")
