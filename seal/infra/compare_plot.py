"""`seal compare`'s plot: accuracy per round, one line per run, or per condition, one group of bars per
run; error bars where the runs' results have standard errors."""

from __future__ import annotations

import math
from pathlib import Path


def plot(path: Path, kind: str, series: list[tuple[str, list[tuple]]]) -> Path:
    """`series`: (run label, [(x, value, standard error or None)]); x is a round (kind "round") or a
    condition's name (kind "condition")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind == "round":
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
        for label, pts in series:
            xs, ys, errs = zip(*pts)
            ax.errorbar(xs, _nums(ys), yerr=_errs(errs), marker="o", capsize=3, label=label)
        ax.set_xticks(sorted({x for _, pts in series for x, _, _ in pts}))
        ax.set_xlabel("ReST-EM round (policy)")
        ax.set_title("Held-out self-edit accuracy (± clustered SE)")
    else:
        conditions: list[str] = []
        for _, pts in series:
            conditions += [x for x, _, _ in pts if x not in conditions]
        width = 0.8 / max(len(conditions), 1)
        fig, ax = plt.subplots(figsize=(max(6.5, 0.5 + len(series) * (0.35 + 0.3 * len(conditions))), 4.2))
        cmap = plt.get_cmap("tab10")
        for j, cond in enumerate(conditions):
            xs, ys, errs = [], [], []
            for i, (_, pts) in enumerate(series):
                hit = next((p for p in pts if p[0] == cond), None)
                if hit is not None:
                    xs.append(i + (j - (len(conditions) - 1) / 2) * width)
                    ys.append(hit[1])
                    errs.append(hit[2])
            bars = ax.bar(xs, _nums(ys), width, yerr=_errs(errs), capsize=3, label=cond, color=cmap(j % 10))
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(range(len(series)))
        ax.set_xticklabels([label for label, _ in series], rotation=15, ha="right", fontsize=8)
        ax.set_title("Accuracy per condition (± clustered SE)")
    ax.set_ylabel("accuracy")
    values = [v for _, pts in series for _, v, _ in pts if v is not None and not math.isnan(v)]
    if values and 0 <= min(values) and max(values) <= 1:
        ax.set_ylim(0, 1.1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _nums(values) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _errs(errs) -> list[float] | None:
    return None if all(e is None for e in errs) else [0.0 if e is None else e for e in errs]
