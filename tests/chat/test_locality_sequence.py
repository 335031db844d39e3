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
