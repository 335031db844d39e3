"""The retention matrix of sequential self-edits (REFERENCE 1.1, continual; SEAL's forgetting study).

After edit i (0-based) of a sequence, the model is evaluated on passages 0..i: entry [i][j] is the
accuracy on passage j after edit i, so the matrix is lower-triangular. Its summaries:
  first_retention  accuracy on passage 0 after the last edit (paper: .38 -> .19 over 8 edits)
  off_diagonal     mean of the entries below the diagonal (what earlier passages keep)
  diagonal         mean of the entries on the diagonal (what each edit teaches at once)
  forgetting       mean over j < last of (acc right after edit j) - (acc after the last edit)
  retained         mean over j < last of the accuracy after the last edit (what is left at the end)
Several sequences average entry by entry. `held_share` compares a variant with a reference (plain
sequential editing) on the same sequences: the share of the reference's lost accuracy that the
variant still has at the end, with a paired bootstrap interval over sequences.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path


class RetentionMatrix:
    def __init__(self, n: int):
        self.n = n
        self.cells: list[list[float | None]] = [[None] * n for _ in range(n)]

    def record(self, edit: int, passage: int, accuracy: float) -> None:
        if not 0 <= passage <= edit < self.n:
            raise ValueError(f"retention[{edit}][{passage}]: a passage is evaluated only after its own edit "
                             f"(need 0 <= passage <= edit < {self.n})")
        self.cells[edit][passage] = accuracy

    def complete(self) -> bool:
        return all(self.cells[i][j] is not None for i in range(self.n) for j in range(i + 1))

    def rows(self) -> list[list[float | None]]:
        return [row[: i + 1] for i, row in enumerate(self.cells)]

    def summary(self) -> dict:
        c, last = self.cells, self.n - 1
        below = [c[i][j] for i in range(self.n) for j in range(i) if c[i][j] is not None]
        diag = [c[i][i] for i in range(self.n) if c[i][i] is not None]
        forget = [c[j][j] - c[last][j] for j in range(last) if c[j][j] is not None and c[last][j] is not None]
        kept = [c[last][j] for j in range(last) if c[last][j] is not None]
        return {"first_retention": c[last][0], "off_diagonal": statistics.fmean(below) if below else None,
                "diagonal": statistics.fmean(diag) if diag else None,
                "forgetting": statistics.fmean(forget) if forget else None,
                "retained": statistics.fmean(kept) if kept else None}

    @staticmethod
    def mean(matrices: list[RetentionMatrix]) -> RetentionMatrix:
        """Entry-by-entry mean over sequences of the same length."""
        if not matrices or len({m.n for m in matrices}) != 1:
            raise ValueError("averaging needs one or more matrices of the same size")
        out = RetentionMatrix(matrices[0].n)
        for i in range(out.n):
            for j in range(i + 1):
                vals = [m.cells[i][j] for m in matrices if m.cells[i][j] is not None]
                out.cells[i][j] = statistics.fmean(vals) if vals else None
        return out

    def learned_and_retained(self) -> tuple[float, float]:
        """Over passages 0..n-2: mean accuracy right after each one's edit, and after the last edit."""
        if not self.complete():
            raise ValueError("held_share needs complete matrices")
        last = self.n - 1
        return (statistics.fmean(self.cells[j][j] for j in range(last)),
                statistics.fmean(self.cells[last][j] for j in range(last)))

    def heatmap(self, path: Path, title: str) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        grid = np.array([[np.nan if v is None else v for v in row] for row in self.cells], dtype=float)
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        for i in range(self.n):
            for j in range(i + 1):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xlabel("passage")
        ax.set_ylabel("after edit")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def held_share(reference: list[RetentionMatrix], variant: list[RetentionMatrix], n_boot: int = 2000,
               seed: int = 0) -> dict:
    """How much of the accuracy the reference loses the variant still has after the last edit.

    lost = reference's accuracy right after each edit - reference's accuracy at the end;
    held = (variant's accuracy at the end - reference's accuracy at the end) / lost, over passages
    0..n-2 and the mean over sequences. It is measured in absolute accuracy against the reference's
    learning, so a variant that simply learns less (less to forget) does not score. Sequence s of
    both lists must be the same passages; the 95 % interval resamples sequences in pairs.
    """
    if len(reference) != len(variant) or not reference:
        raise ValueError(f"held_share pairs sequences: {len(reference)} reference vs {len(variant)} variant")
    if any(m.n < 2 for m in reference + variant):
        raise ValueError("held_share needs sequences of at least 2 passages")
    ref = [m.learned_and_retained() for m in reference]
    var = [m.learned_and_retained()[1] for m in variant]

    def share(idx: list[int]) -> float | None:
        lost = statistics.fmean(ref[i][0] - ref[i][1] for i in idx)
        gain = statistics.fmean(var[i] - ref[i][1] for i in idx)
        return gain / lost if lost > 0 else None

    n = len(ref)
    est = share(list(range(n)))
    rng = random.Random(seed)
    boots = sorted(b for b in (share([rng.randrange(n) for _ in range(n)]) for _ in range(n_boot)) if b is not None)
    lo, hi = (boots[int(0.025 * (len(boots) - 1))], boots[int(0.975 * (len(boots) - 1))]) if boots else (None, None)
    return {"held": est, "ci95": [lo, hi], "sequences": n,
            "reference_lost": statistics.fmean(r[0] - r[1] for r in ref)}
