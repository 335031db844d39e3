"""Recipe `arc_restem`: the SEAL outer loop (`seal.rl.outer_loop`) on ARC, where a self-edit is a
test-time-training configuration (`seal.domains.arc`).

    seal experiment=arc_demo     # CPU: SmolLM2 on a few pinned tasks, small caps, one round
    seal experiment=arc_eval     # ICL vs self-edits without RL vs oracle (rounds=0)
    seal experiment=arc_restem   # the paper's setting: Llama-3.2-1B-Instruct, 11 + 8 pinned tasks
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seal.domains.arc.config import ARCSetup
from seal.domains.arc.data import load_tasks
from seal.domains.arc.domain import ARCDomain, validate_arc
from seal.infra.config import ConfigError
from seal.infra.run_dir import RunDir
from seal.infra.runtime import RuntimeConfig
from seal.rl.config import LoopSettings, OuterLoopConfig, validate_outer
from seal.rl.m_step import MStepConfig
from seal.rl.outer_loop import outer_loop
from seal.rl.selection import SelectionConfig


@dataclass(frozen=True)
class ARCReSTEMConfig(ARCSetup):  # the ARC sections + the loop's
    restem: OuterLoopConfig = field(default_factory=OuterLoopConfig)
    # score_above (threshold 0): keep every configuration that solved its task
    selection: SelectionConfig = field(default_factory=lambda: SelectionConfig(rule="score_above"))
    m_step: MStepConfig = field(default_factory=MStepConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def validate(cfg: ARCReSTEMConfig) -> None:
    validate_outer(cfg.restem, cfg.selection, cfg.arc.k)
    # ARC answers are grids: no gold-answer likelihood, and no question the policy could write itself
    if cfg.restem.reward not in ("accuracy", "binary"):
        raise ConfigError(f"restem.reward={cfg.restem.reward}: ARC rewards are accuracy or binary")
    validate_arc(cfg)


def run(cfg: ARCReSTEMConfig, rd: RunDir) -> dict:
    validate(cfg)
    oc = cfg.restem
    train = load_tasks(cfg.arc_data) if oc.rounds else []
    held_out = load_tasks(cfg.arc_eval_data)[: oc.eval_passages]
    need = oc.rounds * oc.contexts_per_round
    if len(train) < need:
        raise ConfigError(f"arc: {oc.rounds} rounds x {oc.contexts_per_round} tasks need {need} training tasks, "
                          f"arc_data gives {len(train)}")
    overlap = {t.uid for t in held_out} & {t.uid for t in train[:need]}
    if overlap:
        raise ConfigError(f"arc: held-out tasks are also training tasks: {', '.join(sorted(overlap))}")
    for name, tasks in (("arc_eval_data", held_out), ("arc_data", train[:need])):
        unscored = [t.uid for t in tasks if t.solutions is None]
        if unscored:
            raise ConfigError(f"{name}: no solutions for task(s) {', '.join(unscored)}, so no reward "
                              f"(set {name}.solutions)")
    settings = LoopSettings.of(cfg, k=cfg.arc.k, sample_chunk=cfg.arc.sample_chunk)
    return outer_loop(ARCDomain(cfg, cfg.restem.reward), train, held_out, settings, rd)

