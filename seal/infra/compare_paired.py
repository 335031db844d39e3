"""Paired differences between runs, for `seal compare`: each run against one reference run, condition by
condition, over the passages both scored.

Two runs of a sweep usually evaluate the same passages, so their difference is measured per passage and its
interval is a paired bootstrap over passages (`seal.eval.stats.paired_bootstrap`), far tighter than two
overlapping standard errors suggest. It reads the `per_passage` table a run's results.json holds (ki_eval and
ki_compare: each passage's question count and its accuracy per condition, the mean over the passage's inner
loops), or a ReST-EM run's held-out outcomes per round and condition, so a passage weighs by its questions,
as in the run's own accuracy. Recipes without either are left out, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

from seal.eval.stats import format_interval, format_verdict, paired_bootstrap
from seal.infra.report import md_table

SEED = 0  # the bootstrap's seed: fixed, so the same folders give the same intervals


def passage_scores(run_path: Path) -> dict[str, dict[str, tuple[int, float]]] | None:
    """condition -> passage uid -> (questions, accuracy), from the run's `per_passage` (ki_eval, ki_compare)
    or, for a ReST-EM run, from each round's held-out outcomes ("round 1 self_edit"); None without either."""
    try:
        results = json.loads((run_path / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict):
        return None
    table = results.get("per_passage")
    if not isinstance(table, dict) or not table:
        return round_scores(results.get("rounds"))
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for uid, row in table.items():
        n = row.get("n_questions") or 0
        for cond, acc in row.items():
            if cond not in ("title", "n_questions") and isinstance(acc, (int, float)) and n:
                out.setdefault(cond, {})[uid] = (n, float(acc))
    return out


def round_scores(rounds) -> dict[str, dict[str, tuple[int, float]]] | None:
    """A ReST-EM run's `rounds[i].eval[condition].outcomes` (passage -> its questions' 0/1 outcomes) as
    "round <i> <condition>" -> passage -> (questions, accuracy); None when no round has outcomes."""
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for entry in rounds if isinstance(rounds, list) else []:
        for cond, summary in (entry.get("eval") or {}).items() if isinstance(entry, dict) else []:
            outcomes = summary.get("outcomes") if isinstance(summary, dict) else None
            for uid, xs in (outcomes or {}).items():
                if xs:
                    out.setdefault(f"round {entry['round']} {cond}", {})[uid] = (len(xs), sum(xs) / len(xs))
    return out or None


def paired_against(runs: list, reference) -> tuple[str | None, list[dict], list[str]]:
    """(markdown table or None, one dict per comparison, notes) of every finished run minus `reference`."""
    notes: list[str] = []
    ref = passage_scores(reference.path) if reference.state == "ok" else None
    if ref is None:
        return None, [], [f"no paired differences: the reference run {reference.label} has no per-passage results"]
    rows, found = [], []
    for r in runs:
        if r is reference or r.state != "ok":
            continue
        other = passage_scores(r.path)
        if other is None:
            notes.append(f"{r.label}: no per-passage results, left out of the paired differences")
            continue
        for cond in (c for c in ref if c in other):
            shared = [uid for uid in ref[cond] if uid in other[cond]]
            if not shared:
                continue
            a = [[ref[cond][u][1]] * ref[cond][u][0] for u in shared]  # a passage's mean, weighed by its questions
            b = [[other[cond][u][1]] * other[cond][u][0] for u in shared]
            c = paired_bootstrap(a, b, SEED)
            found.append({"run": r.label, "reference": reference.label, "condition": cond, **c})
            rows.append([r.label, cond, format_interval(c), format_verdict(c), len(shared)])
    if not rows:
        return None, [], notes + [f"no paired differences: no run shares a condition and passages with "
                                  f"{reference.label}"]
    table = md_table(["run", "condition", f"minus {reference.label} [95% paired CI]", "verdict", "passages"], rows)
    return table, found, notes
