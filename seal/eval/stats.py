"""Statistics that respect how the data were made: a passage's questions share one self-edit and one
adapter, so they are not independent. Standard errors are clustered by passage (or task), and two
conditions measured on the same passages are compared paired, with a bootstrap over passages.

A difference whose interval spans zero is "within noise", never a result.
"""

from __future__ import annotations

import math

import numpy as np

WITHIN_NOISE = "within noise"
# below this many clusters a percentile bootstrap has too few distinct resamples to be trusted (4 passages give
# 35): the interval is still reported, but the verdict stays "within noise"
MIN_CLUSTERS = 10


def clustered_mean_se(clusters: list[list[float]]) -> tuple[float, float]:
    """Question-level mean (total correct / total questions) and its cluster-robust standard error
    (CR1): se^2 = G/(G-1) * sum_g (sum_{i in g} (y_i - mean))^2 / N^2, G non-empty clusters, N outcomes.
    Singleton clusters give the usual standard error of the mean; nan without data, 0 for one cluster."""
    clusters = [c for c in clusters if len(c)]
    n = sum(len(c) for c in clusters)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(sum(c) for c in clusters) / n
    g = len(clusters)
    if g < 2:
        return mean, 0.0
    resid = sum((sum(c) - len(c) * mean) ** 2 for c in clusters)
    return mean, math.sqrt(g / (g - 1) * resid / n**2)


def paired_bootstrap(a: list[list[float]], b: list[list[float]], seed: int, n_boot: int = 10000,
                     level: float = 0.95, min_clusters: int = MIN_CLUSTERS) -> dict:
    """Difference of question-level means, b - a, over the same clusters (a[g] and b[g] are cluster g's
    outcomes under each condition; their sizes may differ), with a percentile interval from resampling
    clusters with replacement. Verdict "higher"/"lower" only when the interval excludes zero and there
    are at least `min_clusters` clusters (`few_clusters` marks the runs with fewer)."""
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: {len(a)} clusters in a but {len(b)} in b (pair the same clusters)")
    sums = np.array([[sum(x), len(x), sum(y), len(y)] for x, y in zip(a, b)], dtype=float).reshape(-1, 4)
    g = len(sums)
    out = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "n_clusters": g, "n_boot": n_boot,
           "level": level, "verdict": WITHIN_NOISE, "few_clusters": g < min_clusters}
    if g == 0 or not sums[:, 1].sum() or not sums[:, 3].sum():
        return out
    out["diff"] = float(_diff(sums.sum(axis=0)))
    if g < 2:  # one cluster: no spread to resample, so no interval and no claim
        return out
    idx = np.random.default_rng(seed).integers(0, g, size=(n_boot, g))
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample may draw only clusters with no outcomes
        diffs = _diff(np.stack([sums[:, j][idx].sum(axis=1) for j in range(4)], axis=-1))
    tail = (1 - level) / 2
    lo, hi = np.nanquantile(diffs, [tail, 1 - tail])
    out.update(lo=float(lo), hi=float(hi))
    if not out["few_clusters"]:
        out["verdict"] = verdict(out["lo"], out["hi"])
    return out


def _diff(totals: np.ndarray) -> np.ndarray:
    """b's mean minus a's from [..., (sum a, n a, sum b, n b)]."""
    return totals[..., 2] / totals[..., 3] - totals[..., 0] / totals[..., 1]


def verdict(lo: float, hi: float) -> str:
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return WITHIN_NOISE


def paired_clusters(a: dict[str, list[float]], b: dict[str, list[float]]
                    ) -> tuple[list[list[float]], list[list[float]]]:
    """The clusters both conditions have (in a's order), as aligned lists for `paired_bootstrap`."""
    keys = [k for k in a if k in b]
    return [a[k] for k in keys], [b[k] for k in keys]


def compare(b_name: str, a_name: str, a: dict[str, list[float]], b: dict[str, list[float]], seed: int,
            **kw) -> dict:
    """One named comparison, b - a, paired over the clusters (passage uid -> outcomes) both have."""
    return {"b": b_name, "a": a_name, "seed": seed, **paired_bootstrap(*paired_clusters(a, b), seed, **kw)}


def format_interval(c: dict) -> str:
    """"+0.052 [+0.010, +0.094]": the difference and its interval."""
    if math.isnan(c["lo"]):
        return f"{c['diff']:+.3f} [no interval]"
    return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"


def format_verdict(c: dict, unit: str = "passage") -> str:
    """The verdict, saying when there were too few clusters to make one."""
    if c.get("few_clusters"):
        return f"{c['verdict']} (only {c['n_clusters']} {unit}s: too few to call)"
    return c["verdict"]


def format_se(mean: float, se: float) -> str:
    return f"{mean:.3f} ± {se:.3f}"


def comparisons_table(comps: list[dict], label=lambda c: f"{c['b']} − {c['a']}", unit: str = "passage") -> str:
    """Markdown table of paired comparisons: difference, interval, verdict, clusters."""
    from seal.infra.report import md_table

    rows = [[label(c), format_interval(c), format_verdict(c, unit), c["n_clusters"]] for c in comps]
    level = f"{comps[0]['level']:.0%}" if comps else "95%"
    return md_table(["comparison", f"difference [{level} interval]", "verdict", f"{unit}s"], rows)


def method_sentence(comps: list[dict], unit: str = "passage") -> str:
    """How the standard errors and intervals were computed, for a report (unit: what a cluster is)."""
    n_boot = comps[0]["n_boot"] if comps else 10000
    return (f"Standard errors are clustered by {unit} (CR1 sandwich: the outcomes of one {unit} come from the "
            f"same training data and update, so they are not independent). Each difference is paired over the "
            f"same {unit}s, with a percentile interval from {n_boot} bootstrap resamples of {unit}s (seeded from "
            f"the run seed); an interval that spans zero is reported as \"{WITHIN_NOISE}\", and so is any "
            f"difference over fewer than {MIN_CLUSTERS} {unit}s.")
