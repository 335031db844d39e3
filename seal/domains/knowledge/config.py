"""The config sections every knowledge-incorporation recipe shares, written once: each recipe's config
is this plus its own sections (`seal.recipes.*`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seal.data.sources import DataConfig
from seal.domains.knowledge.self_edit import SelfEditConfig
from seal.eval.graders import GraderConfig
from seal.eval.qa import QAEvalConfig
from seal.generation.backends import BackendConfig
from seal.infra.tracking import WandbConfig
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.loading import ModelConfig


@dataclass(frozen=True)
class KnowledgeSetup:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    self_edit: SelfEditConfig = field(default_factory=SelfEditConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    qa_eval: QAEvalConfig = field(default_factory=QAEvalConfig)
    grader: GraderConfig = field(default_factory=GraderConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    seed: int = 0  # every random choice in the run derives from this (recorded per record)


CONDITIONS = ("base", "passage", "self_edit", "from_file")


@dataclass(frozen=True)
class ConditionsSetup(KnowledgeSetup):
    """A knowledge recipe that compares ways of adapting (`conditions`), self-edit files among them."""
    conditions: list[str] = field(default_factory=lambda: ["base", "passage", "self_edit"])  # and/or from_file
    from_files: dict[str, str] = field(default_factory=dict)  # label -> SEAL-format self-edit file (from_file)
    # label -> the format its completions were written in (how they split into documents: a self-qa
    # file splits per question/answer pair); labels not listed are `implications`
    from_file_formats: dict[str, str] = field(default_factory=dict)
    # self-edit formats to compare, each its own condition `self_edit:<format>` (single- or multi-call,
    # `seal.domains.knowledge.generators`); empty: one condition `self_edit` with `self_edit.format`
    formats: list[str] = field(default_factory=list)
