"""Learning-rate schedules for the inner loop, chat updates and the M-step (REFERENCE 2).

Every transformers scheduler name works (`transformers.SchedulerType`: `constant`, `linear`, `cosine`,
`warmup_stable_decay`, ...) except those that must be given a metric at every step (`NEEDS_A_METRIC`): an
inner loop and an M-step have no validation metric, so those names are refused when the config is composed.
A schedule's own arguments come from `scheduler_kwargs` (transformers' `scheduler_specific_kwargs`, TRL's
`lr_scheduler_kwargs`). In the inner loop, the arguments a transformers schedule cannot do without are
filled from the schedule shape below unless given: the floor (`min_lr_rate` of the `*_with_min_lr`
schedules, `min_lr_ratio` of `warmup_stable_decay`) from `min_lr_ratio`, and `warmup_stable_decay`'s
decay steps from `anneal_ratio` of the steps, since an inner loop's length depends on its documents.

Two more are named for the continual-pretraining recipes; their shape is the inner loop's own fields:

- `rewarm_cosine`: linear re-warming to the peak over the warmup steps, then cosine re-decay to
  `min_lr_ratio` x peak; transformers' `cosine_with_min_lr` schedule under the paper's name.
- `infinite`: warmup, cosine cooldown to `const_lr_ratio` x peak over `cooldown_ratio` of the steps,
  a constant phase that can run for any length, and, only when `anneal` is on (a finished
  checkpoint is wanted), a linear anneal to `min_lr_ratio` x peak over the last `anneal_ratio` of
  the steps. transformers has no cooldown-to-constant schedule, so this one is ours (a LambdaLR).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import SchedulerType, get_scheduler
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

OURS = ("rewarm_cosine", "infinite")
NEEDS_A_METRIC = ("reduce_lr_on_plateau", "greedy")  # stepped with a validation metric, which no loop here has
TRAINER_SCHEDULERS = tuple(s.value for s in SchedulerType if s.value not in NEEDS_A_METRIC)  # m_step.scheduler
SCHEDULERS = TRAINER_SCHEDULERS + OURS  # inner_loop.scheduler, chat.scheduler
Scheduler = Literal[SCHEDULERS]  # the names a config may give (an Enum when composed: seal.infra.schemas)
TrainerScheduler = Literal[TRAINER_SCHEDULERS]
SET_BY_THE_LOOP = ("optimizer", "num_warmup_steps", "num_training_steps", "last_epoch")  # not scheduler_kwargs


@dataclass
class ScheduleShape:
    min_lr_ratio: float = 0.1  # rewarm_cosine / infinite / transformers' floors: the floor, as a fraction of the peak
    const_lr_ratio: float = 0.55  # infinite: the constant phase (1.65e-4 / 3e-4 in REFERENCE 2)
    cooldown_ratio: float = 0.2  # infinite: share of the steps spent cooling down to the constant
    anneal_ratio: float = 0.1  # infinite: share of the steps of the final anneal (warmup_stable_decay: its decay)
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


def shape_kwargs(name: str, total: int, shape: ScheduleShape, given: dict[str, Any]) -> dict[str, Any]:
    """The arguments of transformers schedule `name` that the inner loop's shape fills in when not `given`."""
    out: dict[str, Any] = {}
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr") and "min_lr" not in given:
        out["min_lr_rate"] = shape.min_lr_ratio  # min_lr (absolute) and min_lr_rate exclude each other
    if name == "warmup_stable_decay":
        out |= {"num_decay_steps": round(shape.anneal_ratio * total), "min_lr_ratio": shape.min_lr_ratio}
    return {k: v for k, v in out.items() if k not in given}


def make_scheduler(name: str, optimizer, warmup: int, total: int, shape: ScheduleShape | None = None,
                   kwargs: dict[str, Any] | None = None):
    """Schedule `name` over `total` steps with `warmup` of them warming up; `kwargs` are its own arguments."""
    shape, kwargs = shape or ScheduleShape(), dict(kwargs or {})
    _check_arguments(name, kwargs)
    if name == "rewarm_cosine":
        from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

        return get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=shape.min_lr_ratio)
    if name == "infinite":
        return LambdaLR(optimizer, lambda step: infinite_factor(step, total, warmup, shape))
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs={**shape_kwargs(name, total, shape, kwargs), **kwargs})


def arguments(name: str) -> list[str]:
    """The names `scheduler_kwargs` may give for schedule `name` (none for seal's own, whose shape is config
    fields; a name that is no schedule: none)."""
    if name in OURS or name not in {s.value for s in SchedulerType}:
        return []
    params = inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(name)]).parameters
    return [p for p, v in params.items() if p not in SET_BY_THE_LOOP and v.kind is not v.VAR_KEYWORD]


def _check_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """transformers passes `scheduler_specific_kwargs` on to some schedules only (`constant` drops them): an
    argument the schedule does not take is refused here rather than ignored."""
    if unknown := sorted(set(kwargs) - set(arguments(name))):
        raise ValueError(f"{name} takes no argument {', '.join(unknown)} "
                         f"(it takes: {', '.join(arguments(name)) or 'none'})")


def schedule_problem(name: str, kwargs: dict[str, Any], shape: ScheduleShape | None, warmup_ratio: float,
                     trainer: bool = False) -> str | None:
    """Why schedule `name` with `kwargs` cannot run, found by building it on a one-weight optimizer and stepping
    it through a short loop; None when it runs. `trainer`: built as transformers' Trainer builds the M-step's
    (`get_scheduler` with `lr_scheduler_kwargs`, nothing filled in)."""
    total = 20
    holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:
        if trainer:
            _check_arguments(name, kwargs)
            sched = get_scheduler(name, holder, num_warmup_steps=int(warmup_ratio * total), num_training_steps=total,
                                  scheduler_specific_kwargs=dict(kwargs))
        else:
            sched = make_scheduler(name, holder, int(warmup_ratio * total), total, shape, kwargs)
        for _ in range(total):
            holder.step()
            sched.step()
        lrs = sched.get_last_lr()
    except Exception as e:  # noqa: BLE001 - whatever stops the schedule here would stop the run: a config problem
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    if not all(math.isfinite(lr) and lr >= 0 for lr in lrs):
        return f"the learning rate becomes {lrs[0]}"
    return None
