"""The retention matrix of sequential self-edits (REFERENCE 1.1, continual; SEAL's forgetting study).

After edit i (0-based) of a sequence, the model is evaluated on passages 0..i: entry [i][j] is the
accuracy on passage j after edit i, so the matrix is lower-triangular. Its summaries:
  first_retention  accuracy on passage 0 after the last edit (paper: .38 -> .19 over 8 edits)
  off_diagonal     mean of the entries below the diagonal (what earlier passages keep)
  diagonal         mean of the entries on the diagonal (what each edit teaches at once)
  forgetting       mean over j < last of (acc right after edit j) - (acc after the last edit)
Several sequences average entry by entry.
"""

from __future__ import annotations

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
        return {"first_retention": c[last][0], "off_diagonal": statistics.fmean(below) if below else None,
                "diagonal": statistics.fmean(diag) if diag else None,
                "forgetting": statistics.fmean(forget) if forget else None}

    @staticmethod
    def mean(matrices: list["RetentionMatrix"]) -> "RetentionMatrix":
        """Entry-by-entry mean over sequences of the same length."""
        if not matrices or len({m.n for m in matrices}) != 1:
            raise ValueError("averaging needs one or more matrices of the same size")
        out = RetentionMatrix(matrices[0].n)
        for i in range(out.n):
            for j in range(i + 1):
                vals = [m.cells[i][j] for m in matrices if m.cells[i][j] is not None]
                out.cells[i][j] = statistics.fmean(vals) if vals else None
        return out

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
