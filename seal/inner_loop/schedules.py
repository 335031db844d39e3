"""Learning-rate schedules for the inner loop and continual pretraining (REFERENCE 2).

Any transformers scheduler name works (`constant`, `linear`, `cosine`, ...). Two more are named
for the continual-pretraining recipes:

- `rewarm_cosine`: linear re-warming to the peak over the warmup steps, then cosine re-decay to
  `min_lr_ratio` x peak; transformers' `cosine_with_min_lr` schedule under the paper's name.
- `infinite`: warmup, cosine cooldown to `const_lr_ratio` x peak over `cooldown_ratio` of the steps,
  a constant phase that can run for any length, and, only when `anneal` is on (a finished
  checkpoint is wanted), a linear anneal to `min_lr_ratio` x peak over the last `anneal_ratio` of
  the steps. transformers has no cooldown-to-constant schedule, so this one is ours (a LambdaLR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim.lr_scheduler import LambdaLR


@dataclass
class ScheduleShape:
    min_lr_ratio: float = 0.1  # rewarm_cosine / infinite: the floor, as a fraction of the peak
    const_lr_ratio: float = 0.55  # infinite: the constant phase (1.65e-4 / 3e-4 in REFERENCE 2)
    cooldown_ratio: float = 0.2  # infinite: share of the steps spent cooling down to the constant
    anneal_ratio: float = 0.1  # infinite: share of the steps of the final anneal
    anneal: bool = True  # infinite: anneal at the end (a finished checkpoint) or stay constant


def infinite_factor(step: int, total: int, warmup: int, s: ScheduleShape) -> float:
    """The `infinite` schedule's lr multiplier at `step` (0-based) of `total`."""
    cool = round(s.cooldown_ratio * total)
    anneal = round(s.anneal_ratio * total) if s.anneal else 0
    if step < warmup:
        return step / warmup  # as transformers' warmups: 0 at the first step
    if step < warmup + cool:
        progress = (step - warmup) / cool
        return s.const_lr_ratio + (1 - s.const_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < total - anneal or anneal == 0:
        return s.const_lr_ratio
    progress = min(1.0, (step - (total - anneal) + 1) / anneal)
    return s.const_lr_ratio + (s.min_lr_ratio - s.const_lr_ratio) * progress


def make_scheduler(name: str, optimizer, warmup: int, total: int, shape: ScheduleShape | None = None):
    shape = shape or ScheduleShape()
    if name == "rewarm_cosine":
        from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

        return get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=shape.min_lr_ratio)
    if name == "infinite":
        return LambdaLR(optimizer, lambda step: infinite_factor(step, total, warmup, shape))
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
