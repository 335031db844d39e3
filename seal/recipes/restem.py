"""Recipe `restem`: the SEAL outer loop (ReST-EM, `seal.rl.outer_loop`) on knowledge incorporation.

    seal experiment=ki_demo                 # one small round on CPU (the README's main job)
    seal experiment=ki_restem               # the paper's setting (Qwen2.5-7B, SQuAD, GPU)
    seal experiment=ki_demo resume=runs/ki_demo/<stamp>   # continue a killed run
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from seal.data.sources import DataConfig, load_passages
from seal.domains.knowledge.config import KnowledgeSetup
from seal.domains.knowledge.domain import KnowledgeDomain
from seal.domains.knowledge.generators import single_call_only
from seal.domains.knowledge.self_edit import MODEL_FORMATS, SelfEditError, check_format
from seal.eval.self_questions import SelfQuestionsConfig
from seal.infra.config import ConfigError
from seal.infra.run_dir import RunDir
from seal.infra.runtime import RuntimeConfig
from seal.rl.config import LoopSettings, OuterLoopConfig, validate_outer
from seal.rl.m_step import MStepConfig
from seal.rl.outer_loop import outer_loop
from seal.rl.selection import SelectionConfig


@dataclass(frozen=True)
class ReSTEMConfig(KnowledgeSetup):  # the shared knowledge sections (`data` = training contexts) + the loop's
    # held-out passages; seed 1, not data's 0, so the fictional generator invents disjoint entities
    eval_data: DataConfig = field(default_factory=lambda: DataConfig(seed=1))
    restem: OuterLoopConfig = field(default_factory=OuterLoopConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    m_step: MStepConfig = field(default_factory=MStepConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # the questions the policy writes itself for `restem.reward=self_questions` (`seal.eval.self_questions`)
    self_questions: SelfQuestionsConfig = field(default_factory=SelfQuestionsConfig)


def validate(cfg: ReSTEMConfig) -> None:
    if cfg.grader.kind == "openai" and not os.environ.get(cfg.grader.api_key_env):
        raise ConfigError(f"grader=openai needs an API key in the environment variable {cfg.grader.api_key_env} "
                          "(grader.api_key_env); it is checked before any model is loaded")
    single_call_only(cfg.self_edit.format, "ReST-EM's M-step trains the policy on one prompt -> completion pair "
                     "per self-edit, and a multi-call self-edit has no single prompt that produced it")
    if cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format: ReST-EM needs a model-written format ({', '.join(MODEL_FORMATS)}), "
                          f"got '{cfg.self_edit.format}'")
    try:
        check_format(cfg.self_edit.format, cfg.self_edit)  # a from_file template is read and checked here
    except SelfEditError as e:
        raise ConfigError(str(e)) from None
    validate_outer(cfg.restem, cfg.selection, cfg.self_edit.k)
    for name in ("title", "context"):
        if "{" + name + "}" not in cfg.self_questions.prompt:
            raise ConfigError(f"self_questions.prompt must contain {{{name}}}: the policy writes its questions "
                              "about the passage it is shown")


def domain(cfg: ReSTEMConfig) -> KnowledgeDomain:
    return KnowledgeDomain(cfg, cfg.eval_data.source, cfg.restem.eval_passages, cfg.restem.reward,
                           cfg.self_questions)


def run(cfg: ReSTEMConfig, rd: RunDir) -> dict:
    # 1. the config, checked before any model loads
    validate(cfg)
    oc = cfg.restem
    # 2. training contexts and held-out passages, which must not overlap
    need = oc.rounds * oc.contexts_per_round
    train = load_passages(cfg.data)
    if len(train) < need:
        raise ConfigError(f"restem: {oc.rounds} rounds x {oc.contexts_per_round} contexts need {need} training "
                          f"passages, data gives {len(train)} (raise data.num_passages / data.limit)")
    held_out = load_passages(cfg.eval_data)[: oc.eval_passages]
    overlap = {p.context for p in held_out} & {p.context for p in train}
    if overlap:
        raise ConfigError(f"restem: {len(overlap)} held-out passages are also training contexts; "
                          "use a different eval_data seed/offset/split")
    # 3. the rounds: evaluate, E-step, selection, M-step (`seal.rl.outer_loop`)
    settings = LoopSettings.of(cfg, k=cfg.self_edit.k, sample_chunk=cfg.self_edit.sample_chunk)
    return outer_loop(domain(cfg), train, held_out, settings, rd)
