"""`seal compare`: one table (markdown, CSV) of real runs' headline figures and of the config keys that
differ, one plot, read from run folders only; sweep folders, failed jobs and clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import learning
import pytest
from cli_runs import run_seal, world, write_world
from conftest import compose
from tiny_restem import restem

from seal.cli import run_experiment
from seal.infra.compare import main as compare

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ki_runs(tmp_path_factory) -> list[Path]:
    """Three ki_eval runs of the learning world: lr 1e-2 (learns), lr 1e-6 (does not), lr 1e-2 for 2 epochs."""
    root = tmp_path_factory.mktemp("ki")
    data = write_world(root / "world.json")
    out = []
    for name, lr, epochs in (("fast", 1e-2, 10), ("slow", 1e-6, 10), ("short", 1e-2, 2)):
        cfg = learning.learning_cfg(compose, "ki_eval", "wandb.mode=disabled", "conditions=[base,passage]",
                                    "data=file", f"data.path={data}")
        cfg.inner_loop.lr, cfg.inner_loop.epochs = lr, epochs
        run_experiment(cfg, root / name)
        out.append(root / name)
    return out


@pytest.fixture(scope="module")
def restem_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("restem") / "run"
    run_experiment(compose(*restem(**{"restem.rounds": 1})), path)
    return path


def results(path: Path) -> dict:
    return json.loads((path / "results.json").read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def md_row(table: str, label: str) -> dict:
    lines = [line for line in table.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return dict(zip(headers, cells))
    raise AssertionError(f"no row {label} in\n{table}")


def test_table_shows_each_runs_figures_and_the_keys_that_differ(ki_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare([*map(str, ki_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "compare.md").read_text()
    rows = read_csv(out / "compare.csv")
    headers = list(rows[0])
    assert "inner_loop.lr" in headers and "inner_loop.epochs" in headers
    assert "model.name" not in headers and "data.path" not in headers  # the same in every run
    for run, row in zip(ki_runs, rows):
        res = results(run)["conditions"]
        assert row["run"] == run.name and row["state"] == "ok" and row["recipe"] == "ki_eval"
        for cond in ("base", "passage"):
            assert float(row[cond]) == res[cond]["accuracy"]
            assert float(row[f"{cond} stderr"]) == res[cond]["stderr"]
            want = f"{res[cond]['accuracy']:.3f} ± {res[cond]['stderr']:.3f}"
            assert md_row(md, run.name)[cond] == want and md_row(printed, run.name)[cond] == want
    assert [float(r["passage"]) for r in rows[:2]] == [1.0, 0.0]  # the lr that learns, the one that does not
    assert [r["inner_loop.lr"] for r in rows] == ["0.01", "1e-06", "0.01"]
    assert (out / "compare.png").read_bytes().startswith(PNG) and "![compare](compare.png)" in md


def test_runs_are_paired_over_their_shared_passages_against_a_reference(ki_runs, tmp_path, capsys):
    """Each run minus the reference, per condition, from the runs' per-passage accuracies (weighed by
    questions); 2 passages are too few to call a difference, and the table says so."""
    fast, slow, short = ki_runs
    assert compare([*map(str, ki_runs), "--out", str(tmp_path), "--against", "slow"]) == 0
    rows = {(r["run"], r["condition"]): r for r in read_csv(tmp_path / "compare_paired.csv")}
    assert {r["reference"] for r in rows.values()} == {"slow"} and ("slow", "passage") not in rows
    for run in (fast, short):
        per = results(run)["per_passage"]
        ref = results(slow)["per_passage"]
        n = sum(p["n_questions"] for p in per.values())
        want = sum(p["n_questions"] * (p["passage"] - ref[u]["passage"]) for u, p in per.items()) / n
        row = rows[(run.name, "passage")]
        assert float(row["diff"]) == pytest.approx(want) and row["passages"] == str(len(per))
        assert float(row["ci95 low"]) <= float(row["diff"]) <= float(row["ci95 high"])
    assert float(rows[("fast", "passage")]["diff"]) == 1.0  # learns all of it, against nothing learned
    md = (tmp_path / "compare.md").read_text()
    assert "## Paired differences against `slow`" in md and "too few to call" in md
    assert compare([*map(str, ki_runs), "--out", str(tmp_path), "--against", "nope"]) == 2
    assert "--against nope: no such run (runs: fast, slow, short)" in capsys.readouterr().err


def test_only_the_keys_asked_for(ki_runs, tmp_path):
    assert compare([*map(str, ki_runs[:2]), "--out", str(tmp_path), "--keys", "inner_loop.lr", "model.name"]) == 0
    headers = list(read_csv(tmp_path / "compare.csv")[0])
    assert headers[-2:] == ["inner_loop.lr", "model.name"] and "inner_loop.epochs" not in headers


def test_default_output_folder_for_run_folders(ki_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert compare([str(p) for p in ki_runs[:2]]) == 0
    written = list((tmp_path / "runs" / "compare").glob("*/compare.csv"))
    assert len(written) == 1 and f"to runs/compare/{written[0].parent.name}" in capsys.readouterr().out


def test_a_sweep_folder_stands_for_its_jobs_and_failed_jobs_are_rows(tmp_path, monkeypatch, capsys):
    good = write_world(tmp_path / "w.json")
    sweep_dir = tmp_path / "sweep"
    code, _, _ = run_seal(monkeypatch, capsys, "-m", *world(**{"data.path": f"{good},{tmp_path / 'nope.json'}"}),
                          f"hydra.sweep.dir={sweep_dir}")
    assert code == 1
    code, out, err = run_seal(monkeypatch, capsys, "compare", str(sweep_dir))  # through the `seal` command
    assert code == 0, err
    rows = read_csv(sweep_dir / "compare.csv")  # written into the sweep folder
    assert [r["state"] for r in rows] == ["ok", "failed"]
    assert rows[1]["error"].startswith("DataError: ") and "nope.json" in rows[1]["error"]
    assert rows[1]["passage"] == "" and float(rows[0]["passage"]) == 1.0
    assert "data.path" in rows[0]  # the one key the jobs differ in
    assert md_row(out, rows[1]["run"])["state"].startswith("failed: DataError")
    assert (sweep_dir / "compare.png").is_file()


def test_restem_runs_plot_per_round_and_not_beside_ki_eval(restem_run, ki_runs, tmp_path, capsys):
    alone = tmp_path / "alone"
    assert compare([str(restem_run), "--out", str(alone)]) == 0
    h = results(restem_run)["paired"]["final_minus_round0"]
    row = read_csv(alone / "compare.csv")[0]
    assert float(row["final − round 0"]) == h["mean"]
    assert [float(row["final − round 0 ci95 low"]), float(row["final − round 0 ci95 high"])] == h["ci95"]
    assert float(row["final self_edit"]) == results(restem_run)["final"]["self_edit"]["accuracy"]
    assert (alone / "compare.png").read_bytes().startswith(PNG)
    capsys.readouterr()
    mixed = tmp_path / "mixed"
    assert compare([str(restem_run), str(ki_runs[0]), "--out", str(mixed)]) == 0
    out, err = capsys.readouterr()
    assert [r["recipe"] for r in read_csv(mixed / "compare.csv")] == ["restem", "ki_eval"]  # still tabled
    assert not (mixed / "compare.png").exists()
    assert "restem runs are plotted per round" in err and "cannot share one plot" in err
    assert "experiment.recipe" in out.splitlines()[0]


def test_errors_are_one_line_naming_the_folder_or_file(ki_runs, tmp_path, capsys):
    def error(*args) -> str:
        assert compare([*map(str, args), "--out", str(tmp_path / "out")]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("seal compare: error: "), lines
        return lines[0]

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("not a run")
    assert f"{notes}: not a run folder" in error(notes) and "nor a sweep folder" in error(notes)
    assert f"{tmp_path / 'gone'}: no such folder" in error(tmp_path / "gone")
    broken = tmp_path / "broken"
    shutil.copytree(ki_runs[0], broken)
    (broken / "results.json").write_text('{"conditions": ')
    assert f"{broken / 'results.json'}: unreadable" in error(ki_runs[1], broken)
    assert "--keys nope: no run's config has it" in error(ki_runs[0], "--keys", "nope")


def test_restem_runs_are_paired_per_round_and_keys_of_another_version_are_a_note(restem_run, tmp_path, capsys):
    """Two ReST-EM runs on the same held-out passages are paired per round and condition from their
    outcomes; a key only one run's config has (an older seal version wrote the other) is not a column but
    a note; a long value (a prompt template) is cut in the markdown table and whole in the CSV."""
    import yaml

    from seal.eval.stats import paired_bootstrap

    other = tmp_path / "other"
    run_experiment(compose(*restem(**{"restem.rounds": 1, "m_step.lr": 0.05,
                                      "self_edit.templates.implications": "'Restate every fact of {title}: " + "x" * 80
                                      + " {context}'"})), other)
    older = tmp_path / "older"
    shutil.copytree(restem_run, older)
    cfg = yaml.safe_load((older / "config.yaml").read_text())
    del cfg["self_questions"]  # as if written before self_questions existed
    (older / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cmp"
    capsys.readouterr()
    assert compare([str(older), str(other), "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    header = printed.splitlines()[0]
    assert "m_step.lr" in header and "self_edit.templates.implications" in header
    assert not any(h.strip().startswith("self_questions") for h in header.split("|"))
    assert "config keys are in some runs' configs only" in err and "self_questions (" in err
    assert "`self_questions.max_questions`" in (out / "compare.md").read_text()
    cell = md_row(printed, "other")["self_edit.templates.implications"]
    assert len(cell) == 60 and cell.endswith("…")
    assert read_csv(out / "compare.csv")[1]["self_edit.templates.implications"].endswith("x {context}")
    paired = {r["condition"]: r for r in read_csv(out / "compare_paired.csv")}
    assert {"round 0 self_edit", "round 1 self_edit", "round 0 base"} <= set(paired)
    a = results(older)["rounds"][1]["eval"]["self_edit"]["outcomes"]
    b = results(other)["rounds"][1]["eval"]["self_edit"]["outcomes"]
    want = paired_bootstrap([a[u] for u in a], [b[u] for u in a], 0)
    assert float(paired["round 1 self_edit"]["diff"]) == pytest.approx(want["diff"])
    assert float(paired["round 1 self_edit"]["ci95 low"]) == pytest.approx(want["lo"])
