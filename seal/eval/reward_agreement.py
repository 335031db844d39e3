"""How well a reward picks the self-edits the accuracy reward would pick (`scripts/bench_rewards.py`).

Input: one row per inner loop, `{"passage": uid, "sample": i, <measure>: {"adapted", "base", "gain",
"unusable"}, ...}`; a measure is usable in a row when its `unusable` is None. A passage's k self-edits
share its questions and its unadapted base, so every statistic is clustered by passage: its interval is a
percentile bootstrap over passages (a passage is drawn with all its edits, with replacement), seeded, and
an interval that spans the null value is "within noise", as is any statistic over fewer than
`seal.eval.stats.MIN_CLUSTERS` passages.

- pooled Spearman of the gains: all inner loops together. It also credits a reward for knowing which
  passages are easy, a comparison selection never makes;
- within-passage Spearman: per passage, the rank correlation of its edits' reward gains with their
  accuracy gains (within a passage, the same ranking as the adapted values), averaged over the passages
  where neither is constant (the others are counted, not used). ReST-EM ranks edits within a context;
- top-1 agreement: the share of passages where the edit `best_of_k` keeps by the reward (ties: the
  earliest sample, as `seal.rl.selection`) is one of accuracy's best (tied best all count); chance: the
  share a uniformly random pick would reach, (accuracy's tied-best edits) / (usable edits), averaged over
  the same passages; the verdict is on the agreement minus chance;
- keep/drop (`improves_baseline`: keep an edit whose gain > 0): the share of edits that reward and
  accuracy decide alike, and Cohen's kappa (that agreement beyond what their two keep rates give by chance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from seal.eval.stats import MIN_CLUSTERS, WITHIN_NOISE, verdict
from seal.rl.reward import EditReward
from seal.rl.selection import SelectionConfig, select

ACCURACY = "accuracy"
NAN = float("nan")


def ranks(xs: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    x = np.asarray(xs, dtype=float)
    if len(x) == 0:
        return x
    order = np.argsort(x, kind="stable")
    sx = x[order]
    starts = np.r_[True, sx[1:] != sx[:-1]]  # where each run of equal values begins
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    out = np.empty(len(x))
    out[order] = ((first + last) / 2 + 1)[np.cumsum(starts) - 1]
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the tie-averaged ranks); nan with fewer than 2 pairs or
    when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) < 2 or ra.min() == ra.max() or rb.min() == rb.max():
        return NAN
    return float(np.clip(np.corrcoef(ra, rb)[0, 1], -1.0, 1.0))


@dataclass(frozen=True)
class PassageEdits:
    """One passage's edits usable for both measures, in sample order: their accuracy and reward gains."""
    uid: str
    samples: tuple[int, ...]
    accuracy: tuple[float, ...]
    reward: tuple[float, ...]


def paired_gains(rows: list[dict], reward: str) -> list[PassageEdits]:
    """Per passage (in order of first appearance), the edits whose accuracy and reward are both usable."""
    by: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        a, b = r[ACCURACY], r[reward]
        if a["unusable"] is None and b["unusable"] is None:
            by.setdefault(r["passage"], []).append((r["sample"], a["gain"], b["gain"]))
    return [PassageEdits(uid, *map(tuple, zip(*sorted(es)))) for uid, es in by.items()]


# ---- per passage -------------------------------------------------------------------------------------

def within_spearman(p: PassageEdits) -> float:
    return spearman(p.accuracy, p.reward)


def kept(uid: str, samples: Sequence[int], gains: Sequence[float], rule: SelectionConfig) -> np.ndarray:
    """Which of one passage's edits the selection rule keeps when it ranks them by these gains (the
    passage's base is shared, so its gains rank its edits as its adapted scores do)."""
    edits = [EditReward(uid, s, g, 0.0, (g,)) for s, g in zip(samples, gains)]
    return np.array([k for k, _ in select(edits, rule)])


def best_of_k(p: PassageEdits) -> int:
    """The sample `best_of_k` keeps by the reward."""
    picks = kept(p.uid, p.samples, p.reward, SelectionConfig(rule="best_of_k"))
    return p.samples[int(np.flatnonzero(picks)[0])]


def top1(p: PassageEdits) -> tuple[float, float]:
    """(1 if the reward's pick is one of accuracy's best edits else 0, the chance a uniform pick is)."""
    best = max(p.accuracy)
    tied = [s for s, a in zip(p.samples, p.accuracy) if a == best]
    return float(best_of_k(p) in tied), len(tied) / len(p.samples)


def keep_counts(p: PassageEdits, threshold: float = 0.0) -> np.ndarray:
    """`improves_baseline`'s decisions (keep: gain > threshold) as counts [both keep, reward only keeps,
    accuracy only keeps, both drop]."""
    rule = SelectionConfig(rule="improves_baseline", threshold=threshold)
    r, a = kept(p.uid, p.samples, p.reward, rule), kept(p.uid, p.samples, p.accuracy, rule)
    return np.array([(r & a).sum(), (r & ~a).sum(), (~r & a).sum(), (~r & ~a).sum()], dtype=float)


# ---- over passages -----------------------------------------------------------------------------------

def pooled_spearman(ps: Sequence[PassageEdits]) -> float:
    return spearman([g for p in ps for g in p.accuracy], [g for p in ps for g in p.reward])


def share_agreeing(counts: np.ndarray) -> float:
    """Share of edits kept by both or dropped by both, from (summed) `keep_counts`."""
    n = counts.sum()
    return float((counts[0] + counts[3]) / n) if n else NAN


def cohen_kappa(counts: np.ndarray) -> float:
    """Cohen's kappa of two keep/drop raters from (summed) `keep_counts`: (p_o - p_e) / (1 - p_e), p_e the
    agreement their keep rates give by chance; nan when p_e is 1 (both rate everything alike)."""
    n = counts.sum()
    if not n:
        return NAN
    p_o = (counts[0] + counts[3]) / n
    keep_r, keep_a = (counts[0] + counts[1]) / n, (counts[0] + counts[2]) / n
    p_e = keep_r * keep_a + (1 - keep_r) * (1 - keep_a)
    return float((p_o - p_e) / (1 - p_e)) if p_e < 1 else NAN


def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else NAN


# ---- intervals and verdicts --------------------------------------------------------------------------

def bootstrap(items: Sequence, statistic: Callable[[list], float], seed: int, n_boot: int = 2000,
              level: float = 0.95) -> dict:
    """`statistic` of the passages' items, with a percentile interval from `n_boot` resamples of the
    passages with replacement (nan draws, e.g. a resample with a constant side, are left out). No
    interval with fewer than 2 passages."""
    items = list(items)
    g = len(items)
    out = {"value": statistic(items) if g else NAN, "lo": NAN, "hi": NAN, "n_passages": g}
    if g < 2:
        return out
    idx = np.random.default_rng(seed).integers(0, g, size=(n_boot, g))
    draws = np.array([statistic([items[i] for i in row]) for row in idx], dtype=float)
    if np.isfinite(draws).any():
        tail = (1 - level) / 2
        lo, hi = np.nanquantile(draws, [tail, 1 - tail])
        out.update(lo=float(lo), hi=float(hi))
    return out


def judged(est: dict, above: str = "positive", below: str = "negative") -> dict:
    """`est` with a verdict on its interval against 0: `above`/`below` when it excludes 0 over at least
    `MIN_CLUSTERS` passages, else "within noise" (`few_passages` marks the runs with fewer)."""
    few = est["n_passages"] < MIN_CLUSTERS
    word = WITHIN_NOISE if few or math.isnan(est["lo"]) else verdict(est["lo"], est["hi"])
    return est | {"verdict": {"higher": above, "lower": below}.get(word, WITHIN_NOISE), "few_passages": few}


def reward_agreement(rows: list[dict], reward: str, seed: int, n_boot: int = 2000, level: float = 0.95) -> dict:
    """Every statistic of `reward` against accuracy on `rows` (the module docstring), each with its
    passage-bootstrap interval (the same `seed` for each)."""
    boot = dict(seed=seed, n_boot=n_boot, level=level)
    ps = paired_gains(rows, reward)
    ranked = [p for p in ps if len(p.samples) >= 2]  # one usable edit: nothing to rank or pick between
    within = [s for s in map(within_spearman, ranked) if not math.isnan(s)]
    picks = [top1(p) for p in ranked]
    counts = [keep_counts(p) for p in ps]
    total = np.sum(counts, axis=0) if counts else np.zeros(4)
    return {
        "inner_loops": sum(len(p.samples) for p in ps),
        "passages": len(ps),
        "passages_without_usable_loop": len({r["passage"] for r in rows}) - len(ps),
        "pooled_spearman": judged(bootstrap(ps, pooled_spearman, **boot)),
        "within_passage_spearman": judged(bootstrap(within, mean, **boot)) | {
            "excluded_constant": len(ranked) - len(within), "excluded_too_few": len(ps) - len(ranked)},
        "top1": {
            "agreement": bootstrap(picks, lambda xs: mean([x[0] for x in xs]), **boot),
            "chance": mean([c for _, c in picks]),
            "excess_over_chance": judged(bootstrap(picks, lambda xs: mean([a - c for a, c in xs]), **boot),
                                         "above chance", "below chance"),
            "excluded_too_few": len(ps) - len(ranked)},
        "keep_drop": {
            "agreement": bootstrap(counts, lambda cs: share_agreeing(np.sum(cs, axis=0)), **boot),
            "kappa": judged(bootstrap(counts, lambda cs: cohen_kappa(np.sum(cs, axis=0)), **boot)),
            "edits": int(total.sum()), "kept_by_reward": int(total[0] + total[1]),
            "kept_by_accuracy": int(total[0] + total[2])},
    }


def format_estimate(est: dict) -> str:
    """"0.149 [-0.102, 0.391]": a value and its interval ("—" without a value)."""
    if math.isnan(est["value"]):
        return "—"
    if math.isnan(est["lo"]):
        return f"{est['value']:.3f} [no interval]"
    return f"{est['value']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}]"


def format_verdict(est: dict) -> str:
    if est.get("few_passages"):
        return f"{est['verdict']} (only {est['n_passages']} passages)"
    return est["verdict"]
