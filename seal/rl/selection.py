"""Selection: which self-edits of an E-step the M-step clones (REFERENCE 1.1, 1.2).

`RULES` is a name -> function table (`selection.rule=<name>`); every edit gets `kept` and a `why`
that the records and the report show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seal.infra.config import ConfigError


@dataclass
class SelectionConfig:
    rule: str = "best_of_k"  # a name in RULES
    threshold: float = 0.0  # improves_baseline: keep edits whose gain exceeds this; score_above: whose score does
    fraction: float = 0.2  # top_fraction: keep this share of the round's edits, by score
    min_score: float | None = None  # best_of_k / top_fraction: also require score >= this (None: no floor)


def _best_of_k(edits: list[dict], cfg: SelectionConfig) -> None:
    by_ctx: dict[str, list[dict]] = {}
    for e in edits:
        by_ctx.setdefault(e["context"], []).append(e)
    floor = cfg.min_score
    for ctx_edits in by_ctx.values():
        best = max(ctx_edits, key=lambda e: (e["score"], -e["sample"]))  # ties: the earliest sample
        n = len(ctx_edits)
        for e in ctx_edits:
            if e is not best:
                e["kept"], e["why"] = False, f"not the best of {n} usable (best score {best['score']:.3f})"
            elif floor is not None and e["score"] < floor:
                e["kept"], e["why"] = False, f"best of {n} usable but score {e['score']:.3f} < {floor}"
            else:
                e["kept"], e["why"] = True, f"best of {n} usable (score {e['score']:.3f})"


def _improves_baseline(edits: list[dict], cfg: SelectionConfig) -> None:
    for e in edits:
        e["kept"] = e["gain"] > cfg.threshold
        e["why"] = f"gain {e['gain']:+.3f} {'>' if e['kept'] else '<='} threshold {cfg.threshold}"


def _score_above(edits: list[dict], cfg: SelectionConfig) -> None:
    for e in edits:  # ARC: every configuration that solved its task (score 1 > 0)
        e["kept"] = e["score"] > cfg.threshold
        e["why"] = f"score {e['score']:.3f} {'>' if e['kept'] else '<='} threshold {cfg.threshold}"


def _top_fraction(edits: list[dict], cfg: SelectionConfig) -> None:
    if not edits:
        return
    floor = cfg.min_score
    n_keep = max(1, round(cfg.fraction * len(edits)))
    ranked = sorted(edits, key=lambda e: (-e["score"], e["context"], e["sample"]))
    cut = ranked[min(n_keep, len(ranked)) - 1]["score"]
    for rank, e in enumerate(ranked):
        e["kept"] = rank < n_keep and (floor is None or e["score"] >= floor)
        e["why"] = (f"rank {rank + 1} of {len(edits)} usable, top {n_keep} kept (cut-off score {cut:.3f})"
                    + ("" if floor is None or e["score"] >= floor else f", below floor {floor}"))


# rule name -> function marking each usable edit with `kept` and `why`; add a variant here
RULES: dict[str, Callable[[list[dict], SelectionConfig], None]] = {
    "best_of_k": _best_of_k,  # the released runs (REFERENCE 1.1)
    "improves_baseline": _improves_baseline,  # the paper's binary reward
    "score_above": _score_above,  # ARC
    "top_fraction": _top_fraction,
}


def select(edits: list[dict], cfg: SelectionConfig) -> list[dict]:
    """Mark each edit {context, sample, score, gain, skipped} with `kept` and `why`; returns the list.

    An unusable edit (no text, filler only, too long, a NaN loss, a malformed ARC configuration: it
    has `skipped`) is never kept, whatever its score: the M-step would teach the policy to write it.
    The rule chooses among the usable ones only, so a context whose k edits were all unusable
    contributes nothing."""
    if cfg.rule not in RULES:
        raise ConfigError(f"selection.rule: unknown rule '{cfg.rule}' (choose {', '.join(RULES)})")
    usable = []
    for e in edits:
        if e.get("skipped"):
            e["kept"], e["why"] = False, f"unusable: {e['skipped']}"
        else:
            usable.append(e)
    RULES[cfg.rule](usable, cfg)
    return edits
