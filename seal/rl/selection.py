"""Selection: which self-edits of an E-step the M-step clones (REFERENCE 1.1, 1.2).

Selection reads each edit's reward (`seal.rl.reward.EditReward`) and nothing else. `RULES` is a
name -> function table (`selection.rule=<name>`): a rule gets the round's usable edits and returns a
(kept, why) verdict for each, which the records and the report show. A new rule is one function and
one entry in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seal.infra.config import ConfigError
from seal.rl.reward import EditReward

Verdict = tuple[bool, str]  # (kept, why)


@dataclass(frozen=True)
class SelectionConfig:
    # a name in RULES: best_of_k (the released runs) | improves_baseline (the paper's binary reward) |
    # top_fraction | score_above
    rule: str = "best_of_k"
    threshold: float = 0.0  # improves_baseline: keep edits whose gain exceeds this; score_above: whose score does
    fraction: float = 0.2  # top_fraction: keep this share of the round's edits, by score
    min_score: float | None = None  # best_of_k / top_fraction: also require score >= this (None: no floor)


def _best_of_k(edits: list[EditReward], cfg: SelectionConfig) -> list[Verdict]:
    by_ctx: dict[str, list[EditReward]] = {}
    for e in edits:
        by_ctx.setdefault(e.context, []).append(e)
    best = {ctx: max(es, key=lambda e: (e.score, -e.sample)) for ctx, es in by_ctx.items()}  # ties: earliest sample
    floor = cfg.min_score
    out = []
    for e in edits:
        top, n = best[e.context], len(by_ctx[e.context])
        if e is not top:
            out.append((False, f"not the best of {n} usable (best score {top.score:.3f})"))
        elif floor is not None and e.score < floor:
            out.append((False, f"best of {n} usable but score {e.score:.3f} < {floor}"))
        else:
            out.append((True, f"best of {n} usable (score {e.score:.3f})"))
    return out


def _improves_baseline(edits: list[EditReward], cfg: SelectionConfig) -> list[Verdict]:
    return [(e.gain > cfg.threshold, f"gain {e.gain:+.3f} {'>' if e.gain > cfg.threshold else '<='} threshold "
             f"{cfg.threshold}") for e in edits]


def _score_above(edits: list[EditReward], cfg: SelectionConfig) -> list[Verdict]:
    # ARC: every configuration that solved its task (score 1 > 0)
    return [(e.score > cfg.threshold, f"score {e.score:.3f} {'>' if e.score > cfg.threshold else '<='} threshold "
             f"{cfg.threshold}") for e in edits]


def _top_fraction(edits: list[EditReward], cfg: SelectionConfig) -> list[Verdict]:
    if not edits:
        return []
    floor = cfg.min_score
    n_keep = max(1, round(cfg.fraction * len(edits)))
    order = sorted(range(len(edits)), key=lambda i: (-edits[i].score, edits[i].context, edits[i].sample))
    cut = edits[order[min(n_keep, len(order)) - 1]].score
    out: list[Verdict] = [(False, "")] * len(edits)
    for rank, i in enumerate(order):
        e = edits[i]
        above = floor is None or e.score >= floor
        out[i] = (rank < n_keep and above, f"rank {rank + 1} of {len(edits)} usable, top {n_keep} kept (cut-off "
                  f"score {cut:.3f})" + ("" if above else f", below floor {floor}"))
    return out


# rule name -> function giving each usable edit a (kept, why) verdict; add a variant here
RULES: dict[str, Callable[[list[EditReward], SelectionConfig], list[Verdict]]] = {
    "best_of_k": _best_of_k,  # the released runs (REFERENCE 1.1)
    "improves_baseline": _improves_baseline,  # the paper's binary reward
    "score_above": _score_above,  # ARC
    "top_fraction": _top_fraction,
}


def select(rewards: list[EditReward], cfg: SelectionConfig) -> list[Verdict]:
    """A (kept, why) verdict per edit, in order.

    An unusable edit (no text, filler only, too long, a NaN loss, a malformed ARC configuration) is
    never kept, whatever its score: the M-step would teach the policy to write it. The rule chooses
    among the usable ones only, so a context whose k edits were all unusable contributes nothing."""
    if cfg.rule not in RULES:
        raise ConfigError(f"selection.rule: unknown rule '{cfg.rule}' (choose {', '.join(RULES)})")
    usable = [i for i, e in enumerate(rewards) if not e.unusable]
    verdicts: list[Verdict] = [(False, f"unusable: {e.unusable}") for e in rewards]
    for i, v in zip(usable, RULES[cfg.rule]([rewards[i] for i in usable], cfg)):
        verdicts[i] = v
    return verdicts
