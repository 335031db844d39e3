"""The tool_use recipe on the tiny model: every (condition, n) is one record scored on held-out
calls, online learning goes through the chat session's gate, and a killed run resumes exactly."""

from __future__ import annotations

import json

import pytest
from conftest import compose

from seal.cli import run_experiment
from seal.infra.config import ConfigError

FAST = ["experiment=tool_use", "model=tiny-random", "wandb.mode=disabled", "tools.counts=[2,4]", "tools.test=3",
        "tools.probes=2", "tools.max_new_tokens=6", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8",
        "inner_loop.epochs=2", "inner_loop.lr=1e-2", "inner_loop.max_seq_len=4096", "chat.gate.general_docs=2",
        "chat.gate.min_gain=-100", "chat.gate.max_chat_drop=100", "chat.gate.max_ppl_increase=100"]


def run(path, *overrides, resume=False):
    return run_experiment(compose(*FAST, *overrides, *([f"resume={path}"] if resume else [])), path)


def test_conditions_records_and_resume(tmp_path):
    out = run(tmp_path / "a")
    conds = out["conditions"]
    assert list(conds) == ["none", "in_context", "online"]
    assert list(conds["none"]) == [0] and list(conds["in_context"]) == [2, 4] == list(conds["online"])
    for by_n in conds.values():
        for v in by_n.values():
            assert 0 <= v["exact"] <= v["tool"] <= v["parsed"] <= 1  # an exact call is a parsed call of the right tool
    for n in (2, 4):
        learn = conds["online"][n]["learn"]
        assert learn["accepted"] and learn["documents"] == n + 1  # the gate let it through; the docs + one per example
    # each online condition committed into its own store, starting from the base model
    for n in (2, 4):
        store = tmp_path / "a" / f"store_online_{n}"
        assert (store / "HEAD").read_text() == "v0001"
        assert json.loads((store / "versions" / "v0001" / "meta.json").read_text())["parent"] is None
    recs = [json.loads(x) for x in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    prompts_seen = {r["key"]: len(r["answers"]) for r in recs}
    assert all(v == 3 for v in prompts_seen.values()) and len(prompts_seen) == 5
    assert (tmp_path / "a" / "accuracy.png").is_file() and "tool_use" in (tmp_path / "a" / "report.md").read_text()

    # killed before the last online condition: the resumed run redoes only it, with the same answers
    keep = [json.dumps(r) for r in recs if r["key"] != "tool_use/online/4"]
    (tmp_path / "b").mkdir()
    for name in ("config.yaml", "run.json"):
        (tmp_path / "b" / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(keep) + "\n")
    again = run(tmp_path / "b", resume=True)
    def strip(r):
        return {c: {n: {k: x for k, x in v.items() if k != "learn"} for n, v in by.items()}
                for c, by in r["conditions"].items()}
    assert strip(again) == strip(out)
    gain = out["conditions"]["online"][4]["learn"]["gain"]
    assert again["conditions"]["online"][4]["learn"]["gain"] == pytest.approx(gain, abs=1e-5)


def test_gate_rejection_leaves_the_base_model(tmp_path):
    out = run(tmp_path / "r", "tools.counts=[2]", "tools.conditions=[none,online]", "chat.gate.min_gain=100")
    learn = out["conditions"]["online"][2]["learn"]
    assert not learn["accepted"] and "min_gain=100" in learn["reason"]
    # nothing was committed, so online answers are the base model's
    assert out["conditions"]["online"][2]["exact"] == out["conditions"]["none"][0]["exact"]
    assert not (tmp_path / "r" / "store_online_2" / "versions" / "v0001").exists()


def test_bad_tool_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        run(tmp_path / "x", "tools.conditions=[none,magic]")
    with pytest.raises(ConfigError, match="counts"):
        run(tmp_path / "y", "tools.counts=[0]")
