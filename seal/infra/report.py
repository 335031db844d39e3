"""Small helpers for human-readable reports: markdown tables, rich console tables and plots."""

from __future__ import annotations

from pathlib import Path


def md_table(headers: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


def bar_chart(path: Path, labels: list[str], values: list[float], errors: list[float], title: str,
              ylabel: str = "accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(labels) + 1.5), 3.6))
    bars = ax.bar(labels, values, yerr=errors, capsize=4, color="#4C72B0")
    for b, v, e in zip(bars, values, errors):
        ax.text(b.get_x() + b.get_width() * 0.75, v + 0.01, f"{v:.2f}", ha="left", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, min(1.05, max(values + [0.1]) * 1.3 + 0.05))
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def line_plot(path: Path, xs: list, series: dict[str, tuple[list[float], list[float]]], title: str,
              xlabel: str, ylabel: str = "accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, (ys, errs) in series.items():
        ax.errorbar(xs[: len(ys)], ys, yerr=errs, marker="o", capsize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def scatter_plot(path: Path, points: dict[str, tuple[float, float, float]], title: str, xlabel: str,
                 ylabel: str = "accuracy") -> Path:
    """One labelled point per name at (x, y) with a vertical error bar: e.g. accuracy against what it cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    markers = "osD^vP*X<>"
    for i, (name, (x, y, err)) in enumerate(points.items()):
        ax.errorbar([x], [y], yerr=[err], fmt=markers[i % len(markers)], capsize=3, color=f"C{i % 10}", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.margins(x=0.1)
    tops = [y + e for _, y, e in points.values()]
    if all(y >= 0 for _, y, _ in points.values()):
        ax.set_ylim(0, max(tops + [0.1]) * 1.2 + 0.02)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
