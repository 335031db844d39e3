"""wandb, offline in a temporary folder: a tiny ReST-EM run's own run files hold the loop's axes
(`round`, the inner-loop counter, the M-step's step), a table of every E-step self-edit per round,
and the report as an artifact; a recipe that raises still finishes its run, marked failed, so the
next run in the process (the next job of a sweep) gets a run of its own."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import compose
from tiny_restem import restem

from seal.cli import run_experiment

wandb = pytest.importorskip("wandb")

OFFLINE = ["wandb.mode=offline", "wandb.tags=[ablation]"]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wandb_home"),
                        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
                        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
                        "WANDB_DATA_DIR": str(tmp_path / "wandb_data")}.items():
        monkeypatch.setenv(name, value)
    yield
    assert wandb.run is None


def run_records(run: Path) -> list:
    """The protobuf records of the run's offline `.wandb` file (a LevelDB-style log: a 7-byte file
    header, then 32 KiB blocks of chunks, each with a 7-byte header: checksum, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    wandb.teardown()  # a finished run's file is closed by wandb's service a moment later; wait for it
    [path] = run.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


def of_kind(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def test_offline_run_holds_the_loop_axes_the_self_edit_table_and_the_report(offline, tmp_path):
    path = tmp_path / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1}), *OFFLINE), path)
    records = run_records(path)
    axes = {m.name: m.step_metric for m in of_kind(records, "metric") if m.name}
    assert axes["round"] == "" and axes["inner_loop"] == ""
    assert {k: axes[k] for k in ("eval/self_edit", "m_step/loss", "estep/self_edits")} == dict.fromkeys(
        ("eval/self_edit", "m_step/loss", "estep/self_edits"), "round")
    assert axes["estep/accuracy"] == "inner_loop"
    assert axes["m_step/train/loss"] == "m_step/train/step"  # the M-step Trainer's curve, live

    [run] = of_kind(records, "run")
    assert run.run_group == "restem" and set(run.tags) == {"ablation", "restem"}

    # the table of round 0's self-edits: one row per E-step self-edit, as selection recorded them
    [table_file] = path.glob("wandb/offline-run-*/files/media/table/estep/self_edits_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["context", "sample", "self_edit", "reward", "gain", "kept", "why"]
    select = next(json.loads(x) for x in (path / "records.jsonl").read_text().splitlines()
                  if json.loads(x)["key"] == "select/0")
    assert len(table["data"]) == len(select["edits"]) == 2 * 2  # contexts_per_round x k
    assert [[r[0], r[1], r[5]] for r in table["data"]] == [[e["context"], e["sample"], e["kept"]]
                                                           for e in select["edits"]]

    [report] = [a for a in of_kind(records, "artifact") if a.type == "report"]
    assert {"report.md", "accuracy_per_round.png"} <= {f.path for f in report.manifest.contents}
    [end] = of_kind(records, "exit")
    assert end.exit_code == 0


def test_a_recipe_that_raises_finishes_its_run_and_the_next_gets_its_own(offline, tmp_path, monkeypatch):
    from seal.recipes import ki_eval

    def fail(*args, **kwargs):
        raise RuntimeError("a job of the sweep failed")

    tiny = ["experiment=ki_eval", "model=tiny-random", "data.limit=1", "conditions=[base]", "qa_eval.max_new_tokens=4",
            *OFFLINE]
    with monkeypatch.context() as m:
        m.setattr(ki_eval, "record_base_accuracies", fail)
        with pytest.raises(RuntimeError, match="sweep failed"):
            run_experiment(compose(*tiny), tmp_path / "failed")
    assert wandb.run is None
    [end] = of_kind(run_records(tmp_path / "failed"), "exit")
    assert end.exit_code == 1

    run_experiment(compose(*tiny), tmp_path / "next")
    [first], [second] = (of_kind(run_records(tmp_path / p), "run") for p in ("failed", "next"))
    assert first.run_id != second.run_id
    assert of_kind(run_records(tmp_path / "next"), "exit")[0].exit_code == 0
