"""scripts/locality_sequence.py on tiny models: two facts learned through the chat API under two
mitigations, every measure recorded per fact and mitigation in the JSON, the markdown tables and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
MEASURES = ("reliability", "reliability_new", "generalisation", "locality", "bleed", "perplexity")


def test_two_facts_two_mitigations_every_measure(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "locality_sequence.py"), "--out", str(out), "--tiny",
                          "--facts", "2", "--mitigations", "default,self_distill"], capture_output=True, text=True,
                         cwd=REPO, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "locality.json").read_text())
    assert list(data["mitigations"]) == ["default", "self_distill"] and data["facts"] == 2
    assert "distill" in data["mitigations"]["self_distill"]["replay_sources"]
    assert "distill" not in data["mitigations"]["default"]["replay_sources"]
    for name, m in data["mitigations"].items():
        assert [r["facts"] for r in m["rows"]] == [1, 2]
        for row in m["rows"]:
            assert row["committed"], row  # report-only: the gate measures every update and refuses none
            for measure in MEASURES:
                assert isinstance(row[measure], float) and 0 <= row[measure] <= (1 if measure != "perplexity"
                                                                                  else float("inf")), (name, measure)
            assert row["counts"]["locality"] >= 1 and row["counts"]["bleed"] >= 1
    # the two mitigations trained differently
    assert data["mitigations"]["default"]["rows"][1]["perplexity"] != \
        data["mitigations"]["self_distill"]["rows"][1]["perplexity"]
    md = (out / "locality.md").read_text()
    for name, m in data["mitigations"].items():
        section = md.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        header = next(line for line in section.splitlines() if line.startswith("| facts"))
        assert all(measure in header for measure in MEASURES)
        rows = [line for line in section.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
        assert len(rows) == 2 and rows[-1].startswith("| 2 ")  # the last row: after N facts
        assert f"{m['rows'][-1]['locality']:.2f}" in rows[-1] and "n/a" not in rows[-1]
    with Image.open(out / "locality.png") as img:
        assert img.size[0] > 800 and img.size[1] > 500


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "locality_sequence.py"), "--out", str(out), "--tiny",
                           *args], capture_output=True, text=True, cwd=REPO, timeout=600, check=False)


def _measures(row: dict) -> dict:
    return {k: row[k] for k in (*MEASURES, "committed", "fact", "counts", "wrong")}


def test_a_stopped_sequence_continues_where_it_stopped_and_matches_an_unbroken_one(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert _run(whole, "--facts", "2", "--mitigations", "default").returncode == 0
    first = _run(parts, "--facts", "2", "--mitigations", "default", "--stop-after", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    row1 = (parts / "rows_default.jsonl").read_text()
    assert len(row1.splitlines()) == 1
    assert json.loads((parts / "settings_default.json").read_text())["command"].endswith("--mitigations default")
    second = _run(parts, "--facts", "2", "--mitigations", "default")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming after 1 fact" in second.stdout and "default fact 1/2" not in second.stdout
    rows = [json.loads(line) for line in (parts / "rows_default.jsonl").read_text().splitlines()]
    assert (parts / "rows_default.jsonl").read_text().startswith(row1)  # fact 1's row kept, not measured again
    expected = json.loads((whole / "locality.json").read_text())["mitigations"]["default"]["rows"]
    assert [_measures(r) for r in rows] == [_measures(r) for r in expected]

    # killed after fact 2 was committed but before its row was written: HEAD moves back, fact 2 is learned again
    (parts / "rows_default.jsonl").write_text(row1)
    again = _run(parts, "--facts", "2", "--mitigations", "default")
    assert again.returncode == 0, again.stderr[-3000:]
    rows = [json.loads(line) for line in (parts / "rows_default.jsonl").read_text().splitlines()]
    assert [_measures(r) for r in rows] == [_measures(r) for r in expected]

    # other settings under the same folder: refused, naming the file, nothing lost
    refused = _run(parts, "--facts", "2", "--mitigations", "default", "inner_loop.lr=5e-3")
    assert refused.returncode != 0 and "rows_default.jsonl" in refused.stderr and "--fresh" in refused.stderr
    assert len((parts / "rows_default.jsonl").read_text().splitlines()) == 2


def test_mlp_band_trains_only_the_band(tmp_path):
    res = _run(tmp_path, "--facts", "1", "--mitigations", "mlp_band")
    assert res.returncode == 0, res.stderr[-3000:]
    settings = json.loads((tmp_path / "locality.json").read_text())["mitigations"]["mlp_band"]["inner_loop"]
    band = settings["layers_to_transform"]
    assert band and settings["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    from safetensors.torch import load_file

    (version,) = (tmp_path / "stores" / "mlp_band" / "versions").iterdir()
    names = {k.split(".lora_")[0] for k in load_file(str(version / "adapter_model.safetensors"))}
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n in names}
    assert layers == set(band) and all(n.rsplit(".", 1)[-1] in settings["target_modules"] for n in names)
    config = json.loads((version / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == band


def test_the_chat_defaults_are_the_settings_measured_as_scoped_strong():
    # the default seal-chat config is exactly what experiments/locality_smollm2 measured as scoped_strong
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import locality_sequence as ls
    finally:
        sys.path.remove(str(REPO / "scripts"))
    from seal.chat.cli import load_config

    before = load_config(ls.BEFORE)
    assert ls.MITIGATIONS["scoped_strong"](before) == load_config([])
    assert ls.MITIGATIONS["default"](before) != load_config([])
