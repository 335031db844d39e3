"""Every recipe, run with fixed seeds on the tiny random model, writes the same `results.json` and
`records.jsonl` as the recorded golden copies in `tests/suites/golden/`, from the same typed config
(every value that takes effect, defaults included). A restructuring of the package must leave these
equal in content (wall-clock fields aside; floats to 6 significant digits), so this test is what lets
the code move without the behaviour moving.

Re-record (only when a behaviour change is intended, and say so in the commit):
    SEAL_GOLDEN_WRITE=1 python -m pytest -q tests/suites/test_golden_runs.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import pytest
from conftest import compose

from seal.cli import recipe_config, resolved, run_experiment

GOLDEN = Path(__file__).resolve().parent / "golden"
TINY = ["model=tiny-random", "wandb.mode=disabled", "inner_loop.lora_r=4", "inner_loop.lora_alpha=8"]

RUNS = {
    "ki_eval": ["experiment=ki_eval", "self_edit.max_new_tokens=16", "self_edit.k=2", "inner_loop.epochs=2",
                "qa_eval.max_new_tokens=6", "data.limit=2"],
    "ki_cpt": ["experiment=ki_cpt", "data.num_passages=3", "self_edit.max_new_tokens=12", "inner_loop.epochs=1",
               "qa_eval.max_new_tokens=6"],
    "ki_decoding": ["experiment=ki_decoding", "data.num_passages=6", "decoding.set_size=3", "decoding.head_passages=1",
                    "decoding.val_passages=1", "self_edit.max_new_tokens=12", "inner_loop.epochs=2",
                    "inner_loop.lr=1e-2", "qa_eval.max_new_tokens=6", "decoding.co_llm.sweep_rates=[0.0,0.5,1.0]",
                    "decoding.co_llm.eta=rate", "decoding.co_llm.init_epochs=1", "decoding.co_llm.epochs=1"],
    "ki_continual": ["experiment=ki_continual", "continual.sequences=2", "continual.length=3", "data.num_passages=6",
                     "self_edit.max_new_tokens=12", "inner_loop.epochs=2", "qa_eval.max_new_tokens=6",
                     "continual.probe_docs=4", "~continual.variants.infinite", "~continual.variants.replay_edits",
                     "~continual.variants.replay_both", "~continual.variants.rewarm_cosine",
                     "~continual.variants.replay_edits_75", "~continual.variants.replay_past"],
    "restem": ["experiment=restem", "data.num_passages=4", "eval_data.num_passages=2", "restem.rounds=2",
               "restem.contexts_per_round=2", "self_edit.k=2", "restem.seeds_per_edit=2", "restem.eval_passages=2",
               "self_edit.max_new_tokens=12", "inner_loop.epochs=2", "qa_eval.max_new_tokens=6",
               "m_step.effective_batch=1", "m_step.epochs=1", "m_step.lora_r=4", "m_step.lora_alpha=8",
               "selection.rule=top_fraction", "selection.fraction=0.5", "inner_loop.adapters_per_batch=3"],
    "arc_restem": ["experiment=arc_demo", "restem.eval_passages=2", "restem.eval_samples=2",
                   "restem.contexts_per_round=2", "arc.k=2", "arc.max_attempts=1", "arc.max_new_tokens=8",
                   "arc.ttt.max_examples=4", "arc.ttt.max_steps=4", "arc.eval.tta=1", "arc.eval.orderings=1",
                   "inner_loop.adapters_per_batch=3", "inner_loop.max_seq_len=512", "m_step.epochs=1",
                   "m_step.lora_r=4", "m_step.lora_alpha=8", "selection.rule=top_fraction", "selection.fraction=0.5"],
    "tool_use": ["experiment=tool_use", "tools.counts=[2,4]", "tools.test=3", "tools.probes=2",
                 "tools.max_new_tokens=6", "inner_loop.epochs=2", "inner_loop.lr=1e-2", "inner_loop.max_seq_len=4096",
                 "chat.gate.general_docs=2", "chat.gate.min_gain=-100", "chat.gate.max_chat_drop=100",
                 "chat.gate.max_ppl_increase=100"],
}

# Fields that measure the machine, not the method: wall-clock durations and rates, and the
# per-record checksums that cover them.
# `_cfg` is a hash of the composed config's text; the typed config it stands for is compared whole.
CLOCK = re.compile(r"(seconds|_s$|^time|_time|elapsed|wall|per_hour|per_second|_sum$|_cfg$|throughput|tokens_per)")


def is_clock(key: str) -> bool:
    return bool(CLOCK.search(key))


def normalise(value):
    """The run's content without its clock: floats rounded to 6 significant digits (CPU kernels may
    differ in the last bits between machines), keys that hold durations dropped."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if not is_clock(k)}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.6g}")
    return value


def outputs(path: Path, typed) -> dict:
    config = json.loads(json.dumps(dataclasses.asdict(typed), default=str))
    results = json.loads((path / "results.json").read_text())
    records = [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines()]
    return {"config": normalise(config), "results": normalise(results), "records": normalise(records)}


def differences(want, got, where="") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} items recorded, {len(got)} now"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        return [] if math.isclose(want, got, rel_tol=1e-4, abs_tol=1e-6) else [f"{where}: {want} -> {got}"]
    return [] if want == got else [f"{where}: {want!r} -> {got!r}"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_recipe_output_matches_its_golden_copy(name, tmp_path):
    path = tmp_path / name
    cfg = compose(*TINY, *RUNS[name])
    typed, _ = recipe_config(resolved(cfg))  # every value that takes effect, defaults included
    run_experiment(cfg, path)
    got = outputs(path, typed)
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("SEAL_GOLDEN_WRITE"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(golden.read_text())
    diff = differences(want, got)
    assert not diff, f"{name} differs from {golden}:\n" + "\n".join(diff[:20])
