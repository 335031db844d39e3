"""`seal compare <run folders or sweep folders> [--out DIR] [--keys KEY ...]`: finished runs side by side.

It reads only run folders: each run's `config.yaml` (every value that took effect), `results.json` and, for
a failed sweep job, `failed.json`; a sweep folder stands for its job folders. It writes one table,
`compare.md` and `compare.csv`, of every run's headline figures with their intervals (what the recipe wrote
in results.json: clustered standard errors, paired-bootstrap intervals; `seal.infra.headline`) and of the
config keys whose values differ between the runs; each run's paired difference from one reference run over
the passages both scored (`seal.infra.compare_paired`; compare_paired.csv); and one plot, `compare.png`: accuracy per round, one line
per run (ReST-EM), or per condition, one group of bars per run. The table is printed too. Runs whose
results cannot share a plot (per round and per condition) are still tabled, and the plot is left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seal.infra.headline import FIGURES, POINTS, Figure
from seal.infra.report import md_table
from seal.infra.sweep import RUN_MARKS, job_folders, job_state

# root keys about how a run was run or logged, not about the experiment: never columns unless asked for
NOT_COMPARED = ("resume", "force_resume", "resume_inputs", "plan", "sweep_metric", "wandb", "hydra", "progress")


class CompareError(Exception):
    pass


@dataclass
class Run:
    path: Path
    state: str  # ok | failed | unfinished (`seal.infra.sweep.job_state`)
    why: str
    recipe: str | None
    config: dict  # dotted key -> value
    complete: bool  # the config is seal's config.yaml (every key that took effect), not Hydra's composed one
    figures: list[Figure] = field(default_factory=list)
    points: tuple[str, list[tuple]] | None = None
    label: str = ""


# ------------------------------------------------------------------------------------------------- reading


def collect(paths: list[Path]) -> list[Run]:
    """The runs named: a run folder is one run; a sweep folder is each of its job folders."""
    runs = []
    for path in paths:
        if not path.exists():
            raise CompareError(f"{path}: no such folder")
        if not path.is_dir():
            raise CompareError(f"{path}: not a folder (give run folders or sweep folders)")
        if is_run(path):
            runs.append(read_run(path))
            continue
        jobs = job_folders(path)
        if not jobs:
            raise CompareError(f"{path}: not a run folder (none of {', '.join(RUN_MARKS)} in it) nor a sweep folder "
                               f"(no job folders in it)")
        runs += [read_run(p) for p in jobs]
    if not runs:
        raise CompareError("no run folders given")
    parents = [str(r.path.resolve().parent) for r in runs]
    common = os.path.commonpath(parents)
    for r in runs:
        r.label = os.path.relpath(r.path.resolve(), common)
    return runs


def is_run(path: Path) -> bool:
    return any((path / m).exists() for m in RUN_MARKS)


def read_run(path: Path) -> Run:
    state, why = job_state(path)
    raw, complete = _read_yaml(path / "config.yaml"), True
    if raw is None:
        raw, complete = _read_yaml(path / ".hydra" / "config.yaml") or {}, False
    experiment = raw.get("experiment")
    recipe = experiment.get("recipe") if isinstance(experiment, dict) else None
    run = Run(path, state, why, recipe, flatten({k: v for k, v in raw.items() if k not in NOT_COMPARED}), complete)
    results_file = path / "results.json"
    if results_file.is_file():
        try:
            results = json.loads(results_file.read_text())
        except (OSError, ValueError) as e:
            raise CompareError(f"{results_file}: unreadable ({e})") from None
        if not isinstance(results, dict):
            raise CompareError(f"{results_file}: not a JSON object")
        try:
            if recipe in FIGURES:
                run.figures = FIGURES[recipe](results)
            if recipe in POINTS:
                kind, points = POINTS[recipe]
                run.points = (kind, points(results))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CompareError(f"{results_file}: not what recipe {recipe} writes ({type(e).__name__}: {e})") from None
    return run


def _read_yaml(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CompareError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CompareError(f"{path}: not a config (a YAML mapping)")
    return data


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------------- the table


def config_columns(runs: list[Run], asked: list[str] | None) -> tuple[list[str], list[str]]:
    """(columns, keys some runs lack): the keys asked for (`--keys`: a key, or a section holding keys), else
    every key whose value differs between the runs that have it. A key that only some runs of a recipe have,
    with one value among them, is not a column: those runs were made by a seal version with that setting and
    the others by one without it (recipes have keys of their own; a failed job's composed config omits
    defaults), and the caller lists such keys in a note."""
    every = sorted({k for r in runs for k in r.config})
    if asked:
        cols = [k for k in every if any(k == a or k.startswith(a + ".") for a in asked)]
        missing = [a for a in asked if not any(k == a or k.startswith(a + ".") for k in every)]
        if missing:
            raise CompareError(f"--keys {' '.join(missing)}: no run's config has it")
        return cols, []
    has = {(r.recipe, k) for r in runs for k in r.config}
    out, partial = [], []
    for k in every:
        values = {json.dumps(r.config[k], sort_keys=True) for r in runs if k in r.config}
        lacking = any(r.complete and k not in r.config and (r.recipe, k) in has for r in runs)
        if len(values) > 1:
            out.append(k)
        elif lacking:
            partial.append(k)
    return out, partial


def sections(keys: list[str]) -> str:
    """Keys summarised by their first part: "self_edit (12), grader (3)"."""
    counts: dict[str, int] = {}
    for k in keys:
        counts[k.split(".")[0]] = counts.get(k.split(".")[0], 0) + 1
    return ", ".join(f"{s} ({n})" for s, n in counts.items())


def _cell(v) -> str:
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return "—" if v is None else str(v)


MD_CELL = 60  # a config value longer than this (a prompt template) is cut in the markdown table; the CSV has it whole


def _md_cell(v) -> str:
    text = " ".join(_cell(v).split())
    return text if len(text) <= MD_CELL else text[:MD_CELL - 1] + "…"


def figure_names(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for r in runs:
        names += [f.name for f in r.figures if f.name not in names]
    return names


def state_text(r: Run) -> str:
    return "ok" if r.state == "ok" else f"{r.state}: {r.why.splitlines()[0][:80] if r.why else ''}"


def md_rows(runs: list[Run], names: list[str], keys: list[str]) -> tuple[list[str], list[list]]:
    headers = ["run", "state", *names, *keys]
    rows = []
    for r in runs:
        figs = {f.name: f.text() for f in r.figures}
        rows.append([r.label, state_text(r), *(figs.get(n, "—") for n in names), *(_md_cell(r.config.get(k)) for k in keys)])
    return headers, rows


def csv_rows(runs: list[Run], names: list[str], keys: list[str]) -> tuple[list[str], list[list]]:
    """Numbers as numbers: each figure's value, and its standard error and interval where any run has one."""
    has_se = {f.name for r in runs for f in r.figures if f.stderr is not None}
    has_ci = {f.name for r in runs for f in r.figures if f.ci95 is not None}
    headers = ["run", "path", "state", "error", "recipe"]
    for n in names:
        headers += [n] + ([f"{n} stderr"] if n in has_se else []) + ([f"{n} ci95 low", f"{n} ci95 high"] if n in has_ci else [])
    headers += keys
    rows = []
    for r in runs:
        figs = {f.name: f for f in r.figures}
        row = [r.label, str(r.path), r.state, r.why if r.state != "ok" else "", r.recipe or ""]
        for n in names:
            f = figs.get(n)
            row.append("" if f is None or f.value is None else f.value)
            if n in has_se:
                row.append("" if f is None or f.stderr is None else f.stderr)
            if n in has_ci:
                row += ["", ""] if f is None or f.ci95 is None else list(f.ci95)
        rows.append(row + [_cell(r.config.get(k)) if k in r.config else "" for k in keys])
    return headers, rows


# ---------------------------------------------------------------------------------------------- the command


def compare(paths: list[Path], out: Path, keys: list[str] | None = None,
            against: str | None = None) -> tuple[str, list[str], list[Path]]:
    """Write compare.md, compare.csv and (where the runs share one) compare.png into `out`, and the paired
    differences against one run (`against`: its label; default the first finished run) into compare.md and
    compare_paired.csv; returns the markdown table, the notes printed beside it, and the files written."""
    from seal.infra.compare_paired import paired_against
    from seal.infra.compare_plot import plot

    runs = collect(paths)
    cols, partial = config_columns(runs, keys)
    names = figure_names(runs)
    headers, rows = md_rows(runs, names, cols)
    table = md_table(headers, rows)
    notes = []
    if partial:
        notes.append(f"{len(partial)} config keys are in some runs' configs only, with one value where present "
                     f"(runs made by different seal versions), not shown: {sections(partial)}")
    plotted = [r for r in runs if r.points and r.points[1]]
    kinds = sorted({r.points[0] for r in plotted})
    out.mkdir(parents=True, exist_ok=True)
    png = None
    if len(kinds) > 1:
        by = {k: sorted({r.recipe for r in plotted if r.points[0] == k}) for k in kinds}
        notes.append("no plot: " + " and ".join(f"{', '.join(v)} runs are plotted per {k}" for k, v in by.items())
                     + "; they cannot share one plot (the table has them all)")
    elif not kinds:
        notes.append("no plot: no run has results to plot")
    else:
        png = plot(out / "compare.png", kinds[0], [(short_label(r, cols), r.points[1]) for r in plotted])
    failed = [r for r in runs if r.state != "ok"]
    reference = pick_reference(runs, against)
    paired, found, paired_notes = paired_against(runs, reference) if reference else (None, [], [])
    notes += paired_notes
    lines = ["# seal compare", "", f"{len(runs)} run(s): {len(runs) - len(failed)} ok, {len(failed)} not.", "",
             table, "",
             ("Figures: value ± the clustered standard error the recipe wrote, or a difference with its 95% paired "
              "bootstrap interval [low, high]. Config columns: " + ("the keys asked for (--keys)." if keys else
                                                                    "the keys whose values differ between the runs.")),
             ""]
    if partial:
        lines += [f"Not shown: {len(partial)} keys that only some runs' configs have, with one value where present "
                  f"(runs made by different seal versions): {', '.join(f'`{k}`' for k in partial)}.", ""]
    if png:
        lines += [f"![compare]({png.name})", ""]
    if paired:
        lines += [f"## Paired differences against `{reference.label}`", "",
                  "Each run minus the reference on the passages both scored: the difference of their accuracies and "
                  "its 95% percentile interval from a bootstrap over passages (seed 0); \"within noise\" when the "
                  "interval spans 0.", "", paired, ""]
    if failed:
        lines += ["## Not finished", ""] + [f"- `{r.label}` ({r.state}): {r.why}" for r in failed] + [""]
    lines += ["## Runs", ""] + [f"- `{r.label}`: {r.path}" for r in runs] + [""]
    (out / "compare.md").write_text("\n".join(lines))
    ch, cr = csv_rows(runs, names, cols)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(ch)
        w.writerows(cr)
    written = [out / "compare.md", out / "compare.csv"]
    if found:
        with open(out / "compare_paired.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["run", "reference", "condition", "diff", "ci95 low", "ci95 high", "verdict", "passages"])
            w.writerows([c["run"], c["reference"], c["condition"], c["diff"], c["lo"], c["hi"], c["verdict"],
                         c["n_clusters"]] for c in found)
        written.append(out / "compare_paired.csv")
    return table, notes, written + ([png] if png else [])


def pick_reference(runs: list[Run], against: str | None) -> Run | None:
    """The run the others are paired against: the one labelled `against`, else the first finished run."""
    if against is None:
        return next((r for r in runs if r.state == "ok"), None)
    for r in runs:
        if against in (r.label, str(r.path), r.path.name):
            return r
    raise CompareError(f"--against {against}: no such run (runs: {', '.join(r.label for r in runs)})")


def short_label(r: Run, keys: list[str]) -> str:
    """A run's name in the plot: its values of the compared keys (their last part), or its folder."""
    text = " ".join(f"{k.split('.')[-1]}={_cell(r.config.get(k))}" for k in keys)
    return text if text and len(text) <= 40 else r.label


def _new_folder(path: Path) -> Path:
    n, out = 1, path
    while out.exists():
        out, n = path.with_name(f"{path.name}-{n}"), n + 1
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seal compare", description="Finished runs side by side: one table "
                                     "(compare.md, compare.csv) and one plot (compare.png).")
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or sweep folders (seal -m)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default: the sweep folder given, else runs/compare/<time>)")
    parser.add_argument("--keys", nargs="+", default=None,
                        help="config keys (or sections) to show, in place of the keys that differ")
    parser.add_argument("--against", default=None,
                        help="the run the others are paired against (its label or folder; default: the first finished)")
    args = parser.parse_args(argv)
    out = args.out
    if out is None:
        one = args.folders[0]
        sweep = len(args.folders) == 1 and one.is_dir() and not is_run(one)
        out = one if sweep else _new_folder(Path("runs") / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    try:
        table, notes, written = compare(args.folders, out, args.keys, args.against)
    except CompareError as e:
        print(f"seal compare: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"seal compare: error: {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(table)
    for note in notes:
        print(f"seal compare: {note}", file=sys.stderr)
    print(f"seal compare: wrote {', '.join(p.name for p in written)} to {out}")
    return 0
