"""ki_decoding on the tiny model: every condition answers the same held-out questions, the ends of
the Co-LLM sweep reproduce M and S exactly, and a resumed run gives the same results."""

from __future__ import annotations

import json

import pytest
from conftest import compose
from safetensors.torch import load_file

from seal.cli import run_experiment
from seal.infra.config import ConfigError

FAST = ["experiment=ki_decoding", "model=tiny-random", "wandb.mode=disabled", "data.num_passages=6",
        "decoding.set_size=3", "decoding.head_passages=1", "decoding.val_passages=1",
        "self_edit.max_new_tokens=12", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8", "inner_loop.epochs=2",
        "inner_loop.lr=1e-2", "qa_eval.max_new_tokens=6", "decoding.co_llm.sweep_rates=[0.0,0.5,1.0]",
        "decoding.co_llm.eta=rate", "decoding.co_llm.init_epochs=1", "decoding.co_llm.epochs=1"]


def run(path, *overrides, resume=False):
    return run_experiment(compose(*FAST, *overrides, *([f"resume={path}"] if resume else [])), path)


def answers(path, cond):
    for line in (path / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["key"] == f"eval/{cond}":
            return [q["answer"] for qs in rec["questions"] for q in qs]
    raise KeyError(cond)


def test_conditions_sweep_ends_and_resume(tmp_path):
    out = run(tmp_path / "a")
    conds = out["conditions"]
    assert {"base", "M", "S", "M+B", "proxy(alpha=1)", "co_llm(rate=0)", "co_llm(rate=1)",
            "co_llm(chosen:rate)"} <= set(conds)
    n = conds["base"]["n_A"] + conds["base"]["n_B"]
    assert n > 2 and all(v["n_A"] + v["n_B"] == n for v in conds.values())
    # eta from rate 0 never defers and answers as M; rate 1 always defers and answers as S
    a = tmp_path / "a"
    assert conds["co_llm(rate=0)"]["deferred"] == 0.0 and answers(a, "co_llm(rate=0)") == answers(a, "M")
    assert conds["co_llm(rate=1)"]["deferred"] == 1.0 and answers(a, "co_llm(rate=1)") == answers(a, "S")
    assert 0.0 < conds["co_llm(rate=0.5)"]["deferred"] < 1.0
    for name in ("A", "B", "M_B", "deferral_head"):
        state = load_file(str(a / "adapters" / f"{name}.safetensors"))
        assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k or "proj" in k)  # trained
    assert (a / "deferral.png").is_file() and "proxy(alpha=1)" in (a / "report.md").read_text()
    # killed after the B update: the resumed run loads what was saved and redoes the rest identically
    lines = (a / "records.jsonl").read_text().splitlines()
    keep = [x for x in lines if not json.loads(x)["key"].startswith(("eval/", "co_llm/"))]
    b = tmp_path / "b"
    b.mkdir()
    for name in ("config.yaml", "run.json"):
        (b / name).write_bytes((a / name).read_bytes())
    (b / "adapters").mkdir()
    for f in (a / "adapters").glob("[ABM]*.safetensors"):
        (b / "adapters" / f.name).write_bytes(f.read_bytes())
    (b / "records.jsonl").write_text("\n".join(keep) + "\n")
    again = run(b, resume=True)
    assert json.dumps(again["conditions"], sort_keys=True) == json.dumps(conds, sort_keys=True)


def test_impossible_splits_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least one passage for the head"):
        run(tmp_path / "r", "decoding.head_passages=2", "decoding.val_passages=1")
    with pytest.raises(ConfigError, match="need 8"):
        run(tmp_path / "r2", "decoding.set_size=4")
    with pytest.raises(ConfigError, match=r"self_edit.format=implications-hp: .*training directive.*pools"):
        run(tmp_path / "r3", "self_edit.format=implications-hp")
    assert not (tmp_path / "r3" / "records.jsonl").exists()
