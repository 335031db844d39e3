"""Selection: which self-edits of an E-step the M-step clones (REFERENCE 1.1, 1.2).

A name -> rule table; every edit gets `kept` and a `why` that the report and records show.
"""

from __future__ import annotations

from dataclasses import dataclass

from seal.config import ConfigError

RULES = ("best_of_k", "improves_baseline", "score_above", "top_fraction")


@dataclass
class SelectionConfig:
    rule: str = "best_of_k"  # best_of_k | improves_baseline | score_above | top_fraction
    threshold: float = 0.0  # improves_baseline: keep edits whose gain exceeds this; score_above: whose score does
    fraction: float = 0.2  # top_fraction: keep this share of the round's edits, by score
    min_score: float | None = None  # best_of_k / top_fraction: also require score >= this (None: no floor)



def select(edits: list[dict], cfg: SelectionConfig) -> list[dict]:
    """Mark each edit {context, sample, score, gain} with `kept` and `why`; returns the same list."""
    by_ctx: dict[str, list[dict]] = {}
    for e in edits:
        by_ctx.setdefault(e["context"], []).append(e)
    floor = cfg.min_score
    if cfg.rule == "best_of_k":
        for ctx_edits in by_ctx.values():
            best = max(ctx_edits, key=lambda e: (e["score"], -e["sample"]))  # ties: the earliest sample
            for e in ctx_edits:
                if e is not best:
                    e["kept"], e["why"] = False, f"not the best of {len(ctx_edits)} (best score {best['score']:.3f})"
                elif floor is not None and e["score"] < floor:
                    e["kept"], e["why"] = False, f"best of {len(ctx_edits)} but score {e['score']:.3f} < {floor}"
                else:
                    e["kept"], e["why"] = True, f"best of {len(ctx_edits)} (score {e['score']:.3f})"
    elif cfg.rule == "improves_baseline":
        for e in edits:
            e["kept"] = e["gain"] > cfg.threshold
            e["why"] = f"gain {e['gain']:+.3f} {'>' if e['kept'] else '<='} threshold {cfg.threshold}"
    elif cfg.rule == "score_above":  # ARC: every configuration that solved its task (score 1 > 0)
        for e in edits:
            e["kept"] = e["score"] > cfg.threshold
            e["why"] = f"score {e['score']:.3f} {'>' if e['kept'] else '<='} threshold {cfg.threshold}"
    elif cfg.rule == "top_fraction":
        n_keep = max(1, round(cfg.fraction * len(edits)))
        ranked = sorted(edits, key=lambda e: (-e["score"], e["context"], e["sample"]))
        cut = ranked[n_keep - 1]["score"]
        for rank, e in enumerate(ranked):
            e["kept"] = rank < n_keep and (floor is None or e["score"] >= floor)
            e["why"] = (f"rank {rank + 1} of {len(edits)}, top {n_keep} kept (cut-off score {cut:.3f})"
                        + ("" if floor is None or e["score"] >= floor else f", below floor {floor}"))
    else:
        raise ConfigError(f"selection.rule: unknown rule '{cfg.rule}'")
    return edits


