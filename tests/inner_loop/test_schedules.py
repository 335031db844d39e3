"""Learning-rate schedule shapes at given steps (seal.inner_loop.schedules), as the inner loop drives them, and
every transformers scheduler name either running with its arguments from config or refused when composed."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import compose
from transformers import SchedulerType

from seal.cli import recipe_config, resolved
from seal.infra.config import ConfigError
from seal.infra.config_checks import check_ranges
from seal.inner_loop.schedules import (
    NEEDS_A_METRIC,
    SCHEDULERS,
    TRAINER_SCHEDULERS,
    ScheduleShape,
    make_scheduler,
    schedule_problem,
)


def lrs(name: str, total: int, warmup: int = 0, peak: float = 1.0, kwargs: dict | None = None, **shape) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = make_scheduler(name, opt, warmup, total, ScheduleShape(**shape), kwargs)
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def typed_restem(*overrides: str):
    """The typed config of `seal experiment=ki_demo <overrides>` (the inner loop's and the M-step's schedules)."""
    return recipe_config(resolved(compose("experiment=ki_demo", "model=tiny-random", *overrides)))[0]


def test_constant_and_linear_are_transformers_own():
    assert lrs("constant", 10) == [1.0] * 10
    lin = lrs("linear", 10)
    assert lin[0] == 1.0 and lin[5] == pytest.approx(0.5) and lin[-1] == pytest.approx(0.1)


def test_rewarm_cosine_warms_up_then_decays_to_the_floor():
    v = lrs("rewarm_cosine", 101, warmup=1, peak=3e-4, min_lr_ratio=0.1)
    assert v[0] == 0.0 and v[1] == pytest.approx(3e-4)  # re-warming from 0
    assert v[51] == pytest.approx(3e-4 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert v[-1] == pytest.approx(3e-4 * 0.1, rel=1e-2)  # re-decayed to 0.1 x peak
    assert all(a >= b for a, b in itertools.pairwise(v[1:]))


def test_infinite_schedule_phases():
    shape = {"const_lr_ratio": 0.55, "min_lr_ratio": 0.1, "cooldown_ratio": 0.2, "anneal_ratio": 0.1}
    v = lrs("infinite", 100, warmup=5, **shape)
    assert v[0] == 0.0 and v[5] == pytest.approx(1.0)  # warmup, then the peak
    assert v[15] == pytest.approx(0.55 + 0.45 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # mid-cooldown
    assert v[25:90] == pytest.approx([0.55] * 65)  # constant phase
    assert v[89] == pytest.approx(0.55) and v[99] == pytest.approx(0.1)  # annealed at the end
    assert all(a >= b for a, b in itertools.pairwise(v[5:]))
    forever = lrs("infinite", 100, warmup=5, anneal=False, **shape)
    assert forever[90:] == pytest.approx([0.55] * 10)  # no anneal: ready to continue at the constant


# ------------------------------------------------------------------------ every transformers name, from config

@pytest.mark.parametrize("name", [s.value for s in SchedulerType])
def test_every_transformers_scheduler_runs_or_is_refused_at_config_time(name):
    """A name transformers adds shows up here: it either builds and steps through seal's path with the
    arguments the inner loop's shape fills in, or the schema refuses it, listing the names that run."""
    from hydra.errors import HydraException

    from seal.infra.hydra_config import one_line

    if name in SCHEDULERS:
        v = lrs(name, 20, warmup=2, peak=1e-3)
        assert all(math.isfinite(x) and 0 <= x <= 1e-3 * (1 + 1e-9) for x in v) and max(v) > 0
        assert schedule_problem(name, {}, ScheduleShape(), warmup_ratio=0.1) is None
        check_ranges(typed_restem(f"inner_loop.scheduler={name}"))
    else:
        assert name in NEEDS_A_METRIC and schedule_problem(name, {}, ScheduleShape(), 0.1)  # step() wants a metric
        with pytest.raises(HydraException) as e:
            typed_restem(f"inner_loop.scheduler={name}")
        msg = one_line(e.value)
        assert "inner_loop.scheduler" in msg and all(s in msg for s in SCHEDULERS)
        with pytest.raises(HydraException):
            typed_restem(f"m_step.scheduler={name}")


@pytest.mark.parametrize("name", TRAINER_SCHEDULERS)
def test_every_m_step_scheduler_builds_as_the_trainer_builds_it_or_is_refused(name):
    """The M-step's Trainer fills nothing in: a schedule that needs an argument is refused at config time
    naming it, and runs once m_step.scheduler_kwargs gives it."""
    needed = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
              "warmup_stable_decay": {"num_decay_steps": 4}}
    assert schedule_problem(name, needed.get(name, {}), None, 0.1, trainer=True) is None
    extra = [f"m_step.scheduler_kwargs.{k}={v}" for k, v in needed.get(name, {}).items()]
    check_ranges(typed_restem(f"m_step.scheduler={name}", *extra))
    if name in needed:
        with pytest.raises(ConfigError, match=rf"m_step.scheduler={name} .*(min_lr|num_decay_steps)"):
            check_ranges(typed_restem(f"m_step.scheduler={name}"))


def test_scheduler_kwargs_reach_the_schedule_and_the_shape_fills_what_is_missing():
    shape = {"min_lr_ratio": 0.2, "anneal_ratio": 0.25}
    wsd = lrs("warmup_stable_decay", 20, warmup=2, peak=1.0, **shape)
    assert wsd[0] == pytest.approx(0.2) and wsd[2:15] == pytest.approx([1.0] * 13)  # warmup from the floor, stable
    # the last 5 steps (anneal_ratio 0.25 of 20) decay by a cosine towards the floor
    assert wsd[16] < wsd[15] and wsd[-1] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.8)))
    linear_decay = lrs("warmup_stable_decay", 20, 0, 1.0, {"decay_type": "linear", "num_decay_steps": 10})
    assert linear_decay[9] == 1.0 and linear_decay[15] == pytest.approx(0.1 + 0.9 * 0.5)  # floor: min_lr_ratio 0.1
    floor = lrs("cosine_with_min_lr", 20, 0, 1.0, min_lr_ratio=0.3)
    assert floor[-1] == pytest.approx(0.3, abs=0.01) and min(floor) >= 0.3 - 1e-9
    absolute = lrs("cosine_with_min_lr", 20, 0, 1.0, {"min_lr": 0.5})  # min_lr instead of the shape's ratio
    assert min(absolute) >= 0.5 - 1e-9
    once = lrs("cosine_with_restarts", 20, 0, 1.0)
    twice = lrs("cosine_with_restarts", 20, 0, 1.0, {"num_cycles": 2})
    assert all(a >= b for a, b in itertools.pairwise(once)) and twice[10] > twice[9]  # restarted half-way
    with pytest.raises(ValueError, match="linear takes no argument num_cycles"):
        lrs("linear", 5, 0, 1.0, {"num_cycles": 2})
    with pytest.raises(ValueError, match="infinite takes no argument"):
        lrs("infinite", 5, 0, 1.0, {"min_lr_rate": 0.1})  # its shape is the inner loop's own fields


def test_the_inner_loop_trains_with_a_schedule_that_needs_arguments(tiny):
    """warmup_stable_decay used to crash after the model had loaded: its arguments were dropped."""
    from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig

    model, tok = tiny
    cfg = InnerLoopConfig(lora_r=4, lora_alpha=8, lr=1e-2, epochs=4, batch_size=2, scheduler="warmup_stable_decay",
                          scheduler_kwargs={"decay_type": "linear"}, warmup_ratio=0.25)
    stats = InnerLoop(model, tok, cfg).train(["Velmora\nVelmora was founded in 1874.", "Velmora\nIt exports slate."],
                                             seed=0)
    assert stats.steps == 4 and all(math.isfinite(x) for x in stats.losses)
