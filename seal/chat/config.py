"""Settings of a chat session (`chat.*` in seal/configs/chat/default.yaml), the check on the LoRA scale
chat adapters are stored with, and the checks on the self-edit format the learner writes and on the
schedule it trains with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seal.chat.adapter_store import MAX_SCALE
from seal.chat.gate import GateConfig
from seal.chat.moderation import ModerationConfig
from seal.domains.knowledge.directive import DIRECTIVE_FORMATS
from seal.domains.knowledge.generators import no_directive
from seal.domains.knowledge.self_edit import MODEL_FORMATS, SelfEditConfig, SelfEditError, check_format
from seal.infra.config import ConfigError
from seal.inner_loop.schedules import Scheduler
from seal.inner_loop.trainer import InnerLoopConfig
from seal.models.loading import ModelConfig


@dataclass(frozen=True)
class ChatConfig:
    # the adapter store folder: committed versions (HEAD, versions/vNNNN); a new session loads HEAD
    store: str = "chat_store"
    version: str | None = None  # pin: load this version (vNNNN or base, and make it HEAD) instead of the latest
    background: bool = True  # learn on a private copy of the model while the chat goes on
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy replies
    history_turns: int = 0  # earlier exchanges in the prompt (SmolLM2-135M copies them; raise for larger models)
    system_prompt: str | None = None
    self_edit: bool = True  # write a self-edit of the content (false: train on the content alone)
    self_edit_max_chars: int = 3000  # longer content is trained on in paragraph chunks, no self-edit
    probes: int = 3  # probes per learned content when the user gives none
    # end an update's training after the first epoch at whose end every probe question is answered right
    stop_on_probes: bool = False
    name_questions: bool = True  # also train the content as chat answers to "what do you know about <name>?"
    replay_fraction: float = 0.5  # of every step's tokens, from the replay sources (0: none); steps, tokens unchanged
    # general text | accepted (earlier accepted content) | chat (base replies to everyday prompts) | distill (base
    # answers to the locality bank's replay part, never the questions the gate asks) | a text file path
    replay_sources: list[str] = field(default_factory=lambda: ["general", "accepted", "chat"])
    # the inner loop's schedule for chat updates (seal.inner_loop.schedules); infinite: warmup, cooldown,
    # constant, anneal
    scheduler: Scheduler = "infinite"
    # merged: every update is folded into the weights; scoped: each learned content keeps its own adapter, used
    # only for prompts that name it (seal.chat.scoped_memory); experiments/locality_smollm2 chose the default
    memory: Literal["merged", "scoped"] = "scoped"
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class SessionConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    self_edit: SelfEditConfig = field(default_factory=SelfEditConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    seed: int = 0  # every random choice in the session derives from this


def adapter_scale(cfg: InnerLoopConfig) -> float:
    """The LoRA scale chat adapters are stored with; `ConfigError` outside what the store accepts on load."""
    if cfg.lora_r < 1 or not 0 < cfg.lora_alpha / cfg.lora_r <= MAX_SCALE:
        raise ConfigError(f"inner_loop.lora_alpha / inner_loop.lora_r = {cfg.lora_alpha} / {cfg.lora_r}: seal-chat "
                          f"stores adapters with a scale in (0, {MAX_SCALE:g}]")
    return cfg.lora_alpha / cfg.lora_r


def check_self_edit(cfg: SessionConfig) -> None:
    """With `chat.self_edit`, the learner writes one self-edit per content in one model call and trains its
    documents with the session's inner-loop settings (`seal.chat.learner`): a single-call, model-written
    format without a training directive, its template present; `ConfigError` otherwise."""
    if not cfg.chat.self_edit:
        return
    fmt = cfg.self_edit.format
    no_directive(fmt, "seal-chat trains every update with inner_loop.lr and inner_loop.epochs")
    plain = [f for f in MODEL_FORMATS if f not in DIRECTIVE_FORMATS]
    if fmt not in plain:
        raise ConfigError(f"self_edit.format={fmt}: seal-chat writes each self-edit in one model call; choose one of "
                          f"{', '.join(plain)}, or chat.self_edit=false to train on the content alone")
    try:
        check_format(fmt, cfg.self_edit)
    except SelfEditError as e:
        raise ConfigError(str(e)) from None


def check_scheduler(cfg: SessionConfig) -> None:
    """`chat.scheduler`, with `inner_loop.scheduler_kwargs`, built once as every update builds it
    (`seal.infra.name_checks.schedule_problems`): a name or argument it refuses is a `ConfigError` before the
    model loads, not a failed first update."""
    from seal.infra.name_checks import schedule_problems

    if problems := schedule_problems(cfg):
        raise ConfigError(problems[0])
