"""Learning-rate schedule shapes at given steps (seal.inner_loop.schedules), as the inner loop drives them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from seal.inner_loop.schedules import ScheduleShape, make_scheduler


def lrs(name: str, total: int, warmup: int = 0, peak: float = 1.0, **shape) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = make_scheduler(name, opt, warmup, total, ScheduleShape(**shape))
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


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
