"""Names in a typed config checked against what they name, before any run folder is written.

A closed set of names is a `Literal` field, which Hydra checks while it composes the config
(`seal.infra.schemas`). The names here are open instead: each key of `CHOICES` names an entry of one of the
library's name -> function tables (selection rules, graders, rewards, self-edit formats, data sources), which
a user extends by adding an entry, so the check reads the table itself. A schedule is checked with its
arguments (`scheduler_kwargs`) by building it (`seal.inner_loop.schedules.schedule_problem`).

Keys are dotted as in `seal.infra.config_checks`: `*` stands for any name in a dict, and a list's elements
are checked against their key's entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from seal.data.sources import SOURCES
from seal.domains.knowledge.generators import all_formats
from seal.domains.knowledge.self_edit import MODEL_FORMATS
from seal.eval.graders import GRADERS
from seal.inner_loop.schedules import ScheduleShape, schedule_problem
from seal.rl.reward import REWARDS
from seal.rl.selection import RULES

# key -> (what its value names, the names it may take given the whole typed config)
CHOICES: dict[str, tuple[str, Callable[[Any], Iterable[str]]]] = {
    "selection.rule": ("rule", lambda cfg: RULES),
    "grader.kind": ("grader", lambda cfg: GRADERS),
    "restem.reward": ("reward", lambda cfg: REWARDS),
    "self_edit.format": ("format", lambda cfg: all_formats()),
    "formats": ("format", lambda cfg: all_formats()),
    "from_file_formats.*": ("format", lambda cfg: MODEL_FORMATS),
    "data.source": ("source", lambda cfg: SOURCES),
    "eval_data.source": ("source", lambda cfg: SOURCES),
    "wandb.mode": ("mode", lambda cfg: ("offline", "online", "disabled")),
    "continual.reference": ("variant", lambda cfg: ("", *cfg.continual.variants)),  # "": compare with none
}


def string_values(node: Any, prefix: str = "", pattern: str = "") -> Iterator[tuple[str, str, str]]:
    """(key as written, key as in `CHOICES`, value) for every string of a typed config; a list's elements
    under the list's key."""
    for f in dataclasses.fields(node):
        yield from _strings(getattr(node, f.name), prefix + f.name, pattern + f.name)


def _strings(value: Any, key: str, pattern: str) -> Iterator[tuple[str, str, str]]:
    if dataclasses.is_dataclass(value):
        yield from string_values(value, key + ".", pattern + ".")
    elif isinstance(value, dict):
        for name, v in value.items():
            yield from _strings(v, f"{key}.{name}", pattern + ".*")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, str):
                yield key, pattern, v
    elif isinstance(value, str):
        yield key, pattern, value


def name_problems(cfg: Any) -> list[str]:
    """One line per name that is not in its table (listing those that are) or schedule that cannot run."""
    out = []
    for key, pattern, value in string_values(cfg):
        if pattern not in CHOICES:
            continue
        noun, names = CHOICES[pattern][0], list(CHOICES[pattern][1](cfg))
        if value not in names:  # "" is a valid name where listed (continual.reference: compare with none)
            out.append(f"{key}: unknown {noun} '{value}' (choose one of {', '.join(n or repr('') for n in names)})")
    return out + schedule_problems(cfg)


def schedule_problems(cfg: Any) -> list[str]:
    """The schedules a config names (the inner loop's, a chat's, a continual variant's, the M-step's), each
    built with its `scheduler_kwargs` as the run will build it; one whose ratios are out of range is left to
    the range checks, which name the ratio."""
    out = []
    il = getattr(cfg, "inner_loop", None)
    if il is not None and _ratios_in_range(il.warmup_ratio, il.min_lr_ratio, il.const_lr_ratio, il.cooldown_ratio,
                                           il.anneal_ratio):
        shape = ScheduleShape(il.min_lr_ratio, il.const_lr_ratio, il.cooldown_ratio, il.anneal_ratio, il.anneal)
        names = [("inner_loop.scheduler", il.scheduler)]
        if (chat := getattr(cfg, "chat", None)) is not None:
            names.append(("chat.scheduler", chat.scheduler))
        if (continual := getattr(cfg, "continual", None)) is not None:
            names += [(f"continual.variants.{v}.scheduler", var.scheduler)
                      for v, var in continual.variants.items() if var.scheduler]
        for key, name in names:
            if why := schedule_problem(name, il.scheduler_kwargs, shape, il.warmup_ratio):
                out.append(f"{key}={name} with inner_loop.scheduler_kwargs={dict(il.scheduler_kwargs)}: {why}")
    m = getattr(cfg, "m_step", None)
    if m is not None and _ratios_in_range(m.warmup_ratio) and (
            why := schedule_problem(m.scheduler, m.scheduler_kwargs, None, m.warmup_ratio, trainer=True)):
        out.append(f"m_step.scheduler={m.scheduler} with m_step.scheduler_kwargs={dict(m.scheduler_kwargs)}: {why}")
    return out


def _ratios_in_range(*ratios: float) -> bool:
    return all(0 <= r <= 1 for r in ratios)  # False for nan too
