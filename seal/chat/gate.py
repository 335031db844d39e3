"""The gate a chat update must pass, all by likelihood (`seal.eval.probes`): the new content's
probes must gain, earlier content's probes, the base model's everyday replies and general-text
perplexity may lose only so much. Owns `GateConfig`, `LearnResult`, the everyday prompts and their
cached base replies, the measurement and the accept/reject decision."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

from seal.chat.adapter_store import AdapterStore
from seal.eval.probes import Probe, answer_logprob, perplexity
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.models.loading import format_prompt


@dataclass(frozen=True)
class GateConfig:
    min_gain: float = 0.2  # nats per answer token the new content's probes must gain
    max_retention_drop: float = 0.3  # nats per answer token earlier content's probes may lose
    max_ppl_increase: float = 0.25  # relative rise of general-text perplexity allowed per update
    max_chat_drop: float = 0.3  # nats per token the base model's own replies to everyday prompts may lose
    general_docs: int = 8  # general-text paragraphs of the perplexity probe


@dataclass
class LearnResult:
    accepted: bool
    reason: str
    version: str | None = None
    gain: float | None = None  # nats per answer token on the new probes
    retention_drop: float | None = None  # nats per answer token lost on earlier probes (None: none yet)
    chat_drop: float | None = None  # nats per token lost on the base model's everyday replies
    ppl_before: float | None = None
    ppl_after: float | None = None
    probes: list[dict] = field(default_factory=list)
    documents: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.gain is None:
            return self.reason
        parts = [f"gain {self.gain:+.2f} nats/token on {len(self.probes)} probe(s)"]
        parts.append("retention: no earlier content" if self.retention_drop is None
                     else f"retention drop {self.retention_drop:+.2f} nats/token")
        parts.append(f"everyday replies {self.chat_drop:+.2f} nats/token")
        parts.append(f"general perplexity {self.ppl_before:.1f} -> {self.ppl_after:.1f} "
                     f"({100 * (self.ppl_after / self.ppl_before - 1):+.1f} %)")
        return "; ".join(parts)


# Everyday prompts whose replies by the base model are the chat-behaviour probe (second half) and a
# replay source (first half): an update that changes how the model chats shows up and is rehearsed.
EVERYDAY = ("Can you suggest a name for a pet turtle?", "How do I make a cup of tea?",
            "Write one sentence about the sea.", "What is a good way to start the morning?",
            "Give me a tip for remembering names.", "How should I water a cactus?",
            "Describe a rainy afternoon in one sentence.", "What is a polite way to decline an invitation?")


def everyday_replies(store: AdapterStore, gen: HFGenerator, tok, chat: bool) -> list[tuple[str, str]]:
    """(prompt, base reply) for EVERYDAY, generated once per store and kept in it; `gen` must hold
    the base weights."""
    path = store.root / "everyday.json"
    prompts = [format_prompt(tok, q, chat) for q in EVERYDAY]  # the model's own default behaviour
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if [c[0] for c in cached] == prompts and all(isinstance(c[1], str) for c in cached):
                return [(c[0], c[1]) for c in cached]
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            pass  # a cache: a corrupt copy is written again below
    replies = gen.generate(prompts, SamplingConfig(max_new_tokens=48))
    pairs = [(p, r if r.strip() else ".") for p, r in zip(prompts, replies)]
    store.write_text(path, json.dumps(pairs, indent=1))
    return pairs


def split_everyday(everyday: list[tuple[str, str]]) -> tuple[list[str], list[Probe]]:
    """The first half of the everyday replies as replay documents, the second as the gate's chat probes."""
    half = len(everyday) // 2
    return ([p + a for p, a in everyday[:half]],
            [Probe(p, a, "chat", q) for (p, a), q in zip(everyday[half:], EVERYDAY[half:])])


class Figures(NamedTuple):
    """One measurement of a model: log-probabilities per probe, and general-text perplexity."""
    probes: list[float]
    earlier: list[float]
    chat: list[float]
    ppl: float


class Gate:
    """Measures the learner's model (with whatever adapter state it has) and judges an update."""

    def __init__(self, model, tok, device, general: list[str], chat_probes: list[Probe]):
        self.model, self.tok, self.device = model, tok, device
        self.general = general
        self.chat_probes = chat_probes

    def measure(self, probes: list[Probe], earlier: list[Probe]) -> Figures:
        m, tok, dev = self.model, self.tok, self.device
        return Figures(answer_logprob(m, tok, probes, dev), answer_logprob(m, tok, earlier, dev),
                       answer_logprob(m, tok, self.chat_probes, dev), perplexity(m, tok, self.general, dev))


def judge(g: GateConfig, probes: list[Probe], earlier: list[Probe], before: Figures,
          after: Figures) -> tuple[LearnResult, list[str]]:
    """The update's figures (a `LearnResult` not yet accepted) and the gate's failures (none: accept)."""
    gain = statistics.fmean(a - b for a, b in zip(after.probes, before.probes))
    drop = statistics.fmean(b - a for a, b in zip(after.earlier, before.earlier)) if earlier else None
    chat_drop = statistics.fmean(b - a for a, b in zip(after.chat, before.chat))
    result = LearnResult(False, "", gain=gain, retention_drop=drop, chat_drop=chat_drop,
                         ppl_before=before.ppl, ppl_after=after.ppl,
                         probes=[{**p.to_dict(), "before": b, "after": a}
                                 for p, b, a in zip(probes, before.probes, after.probes)])
    failures = []
    if gain < g.min_gain:
        failures.append(f"the probes gained {gain:+.2f} nats/token, less than gate.min_gain={g.min_gain}")
    if drop is not None and drop > g.max_retention_drop:
        failures.append(f"earlier content lost {drop:.2f} nats/token, more than "
                        f"gate.max_retention_drop={g.max_retention_drop}")
    if chat_drop > g.max_chat_drop:
        failures.append(f"everyday replies lost {chat_drop:.2f} nats/token, more than "
                        f"gate.max_chat_drop={g.max_chat_drop}")
    rise = after.ppl / before.ppl - 1
    if rise > g.max_ppl_increase:
        failures.append(f"general-text perplexity rose {100 * rise:.1f} %, more than "
                        f"gate.max_ppl_increase={100 * g.max_ppl_increase:.0f} %")
    return result, failures
