"""The ARC domain's settings (`arc.*`) and the config sections every ARC recipe shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from seal.domains.arc.data import ARCDataConfig
from seal.domains.arc.self_edit import EditLimits
from seal.generation.backends import BackendConfig
from seal.infra.tracking import WandbConfig
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.loading import ModelConfig


@dataclass(frozen=True)
class TTTConfig:
    leave_one_out: bool = True
    leave_two_out: bool = True
    max_examples: int = 250  # cap after augmentation and dedupe (REFERENCE 1.2)
    max_side: int = 30  # augmented grids larger than this are dropped
    max_steps: int = 375  # a configuration needing more optimizer steps is rejected (reward 0), never shortened
    permute: bool = True  # one round of colour + demonstration-order permutation when any augmenter is on


@dataclass(frozen=True)
class ARCEvalConfig:
    tta: int = 5  # invertible geometric test-time augmentations besides the identity (0..5)
    orderings: int = 2  # demonstration orders per prompt: 1 (as given) or 2 (and reversed)
    leave_one_out: bool = True  # also prompt with each leave-one-out subset of the demonstrations
    attempts: int = 2  # pass@attempts
    max_new_tokens: int = 1024  # cap; per task, 2x the longest demonstration output + 8
    batch_size: int = 32


@dataclass(frozen=True)
class ARCConfig:
    ttt: TTTConfig = field(default_factory=TTTConfig)
    eval: ARCEvalConfig = field(default_factory=ARCEvalConfig)
    limits: EditLimits = field(default_factory=EditLimits)  # the schema's ranges (lr, epochs)
    k: int = 15  # configurations sampled per training task (REFERENCE 1.2)
    max_k: int = 64  # a larger k is refused as a likely typo (raise this if you mean it)
    sample_chunk: int = 0  # tasks sampled and recorded together (resume redoes at most one chunk); 0: 64 prompts' worth
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 128
    sample_batch_size: int = 16
    max_attempts: int = 4  # samples per configuration slot before it is recorded as invalid (reward 0)
    # the start of the policy's reply, written for it (the self-edit is this prefix + what it writes);
    # small models rarely open a JSON object on their own
    response_prefix: str = ""
    # the hand-tuned reference configuration (`oracle`), checked by the same schema
    oracle: str = ('{"geometric": true, "size": true, "chain": true, "repeat": true, "loss": "output_only", '
                   '"lr": 0.0001, "epochs": 2}')


@dataclass(frozen=True)
class ARCSetup:
    model: ModelConfig = field(default_factory=ModelConfig)
    arc_data: ARCDataConfig = field(default_factory=ARCDataConfig)  # training tasks (E-step)
    arc_eval_data: ARCDataConfig = field(default_factory=ARCDataConfig)  # held-out tasks
    arc: ARCConfig = field(default_factory=ARCConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    seed: int = 0  # every random choice in the run derives from this (recorded per record)
