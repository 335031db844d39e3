"""The outer loop's settings: its own (`restem.*`: rounds, contexts, seeds, held-out evaluation), and
the parts of a recipe's config it runs on (`LoopSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seal.eval.locality_check import LocalityCheckConfig
from seal.infra.config import ConfigError, require_at_least
from seal.infra.runtime import RuntimeConfig
from seal.infra.tracking import WandbConfig
from seal.models.loading import ModelConfig
from seal.rl.m_step import MStepConfig
from seal.rl.reward import REWARDS
from seal.rl.selection import RULES, SelectionConfig


@dataclass(frozen=True)
class OuterLoopConfig:
    rounds: int = 2
    contexts_per_round: int = 50
    seeds_per_edit: int = 3  # each self-edit is trained and evaluated this many times; its score is the mean
    eval_passages: int = 200
    eval_samples: int = 1  # self-edits per held-out context (ARC: 5)
    references: Literal["every_round", "first_round"] = "every_round"  # when to recompute base/passage references
    reward: str = "accuracy"  # a name in seal.rl.reward.REWARDS: accuracy | binary | likelihood | self_questions
    # per round, on greedy answers (a domain whose session measures it: knowledge): the unadapted policy's
    # locality on general questions the base model knew, and locality + bleed of the adapted models of the
    # first `locality_contexts` held-out contexts (their self-edit trained again with its eval seed)
    locality: LocalityCheckConfig = field(default_factory=LocalityCheckConfig)
    locality_contexts: int = 4


def validate_outer(oc: OuterLoopConfig, selection: SelectionConfig, k: int) -> None:
    if selection.rule not in RULES:
        raise ConfigError(f"selection.rule: unknown rule '{selection.rule}' (choose {', '.join(RULES)})")
    if not 0 < selection.fraction <= 1:
        raise ConfigError(f"selection.fraction must be in (0, 1], got {selection.fraction}")
    if oc.rounds < 0:
        raise ConfigError(f"restem.rounds must be at least 0 (0: evaluate the policy only), got {oc.rounds}")
    require_at_least(oc, "restem", ("locality_contexts",), 0)
    require_at_least(oc, "restem", ("contexts_per_round", "seeds_per_edit", "eval_passages", "eval_samples"), 1)
    if k < 1:
        raise ConfigError(f"self_edit.k must be at least 1, got {k}")
    if oc.reward not in REWARDS:
        raise ConfigError(f"restem.reward: unknown reward '{oc.reward}' (choose {', '.join(REWARDS)})")
    if oc.references not in ("every_round", "first_round"):
        raise ConfigError(f"restem.references must be every_round or first_round, got '{oc.references}'")


@dataclass(frozen=True)
class LoopSettings:
    """Everything the outer loop takes from a recipe's config, whatever the domain: a recipe builds it
    with `LoopSettings.of(cfg, k=..., sample_chunk=...)` (knowledge: `self_edit.k`, ARC: `arc.k`)."""
    model: ModelConfig
    outer: OuterLoopConfig
    selection: SelectionConfig
    m_step: MStepConfig
    wandb: WandbConfig
    runtime: RuntimeConfig
    seed: int
    k: int  # self-edits sampled per training context
    sample_chunk: int = 0  # contexts sampled and recorded together (`seal.infra.sample_records`)

    @classmethod
    def of(cls, cfg, k: int, sample_chunk: int = 0) -> LoopSettings:
        """From a recipe config with `model`, `restem`, `selection`, `m_step`, `wandb`, `runtime`, `seed`."""
        return cls(cfg.model, cfg.restem, cfg.selection, cfg.m_step, cfg.wandb, cfg.runtime, cfg.seed, k, sample_chunk)
