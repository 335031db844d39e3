"""The gate a chat update must pass. By likelihood (`seal.eval.probes`): the new content's probes must
gain, earlier content's probes, the base model's everyday replies and general-text perplexity may lose
only so much. On greedy answers (`seal.chat.edit_gate`): the base model's known general-knowledge
answers must survive (locality), and the content's new names must not turn up in answers about other
subjects (bleed); the probes' answers are graded (reliability). Owns `GateConfig`, `LearnResult`, the
everyday prompts and their cached base replies, the measurement and the accept/reject decision."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import NamedTuple

from seal.chat.adapter_store import AdapterStore
from seal.chat.edit_gate import format_wrong
from seal.eval.probes import Probe, answer_logprob, perplexity
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.infra.config import ConfigError, require_at_least
from seal.models.loading import format_prompt


@dataclass(frozen=True)
class GateConfig:
    min_gain: float = 0.2  # nats per answer token the new content's probes must gain
    max_retention_drop: float = 0.3  # nats per answer token earlier content's probes may lose
    max_ppl_increase: float = 0.25  # relative rise of general-text perplexity allowed per update
    max_chat_drop: float = 0.3  # nats per token the base model's own replies to everyday prompts may lose
    general_docs: int = 8  # general-text paragraphs of the perplexity probe
    # Checks on greedy answers (seal.chat.edit_gate). The thresholds and sizes below are PROVISIONAL: the
    # locality-sequence experiment (scripts/locality_sequence.py) measures them and chooses the defaults.
    min_locality: float = 0.95  # share of the base-known held-out bank questions still answered right
    max_bleed: float = 0.02  # share of bleed questions answered with the new content's names
    min_reliability: float = 0.0  # share of the new content's probe questions answered right (0: report only)
    locality_questions: int = 48  # held-out bank questions asked of the base model, a seeded sample (0: no check)
    bleed_questions: int = 24  # at most this many bleed questions per update (0: no check)
    answer_tokens: int = 24  # greedy answer length of those checks (SmolLM2 answers in a full sentence)
    seed: int = 0  # the locality sample and the bleed questions
    report_only: bool = False  # measure and report every check, but commit whatever they say (experiments)

    def __post_init__(self):
        for name in ("min_locality", "max_bleed", "min_reliability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"chat.gate.{name} must be in [0, 1], got {getattr(self, name)}")
        require_at_least(self, "chat.gate", ("locality_questions", "bleed_questions"), 0)
        require_at_least(self, "chat.gate", ("answer_tokens",), 1)


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
    # greedy-answer checks (None: not measured, or nothing to ask), their question counts and wrong answers
    reliability: float | None = None  # share of the probe questions answered right
    locality: float | None = None  # share of the base-known held-out questions still answered right
    bleed: float | None = None  # share of the bleed questions answered with a new name
    counts: dict[str, int] = field(default_factory=dict)  # reliability | locality | bleed -> questions asked
    wrong: dict[str, list[dict]] = field(default_factory=dict)  # the same -> [{question, gold, answer}]
    entities: list[str] = field(default_factory=list)  # the new names bleed looks for
    failures: list[str] = field(default_factory=list)  # the gate's objections (report-only: committed anyway)
    scope: list[str] = field(default_factory=list)  # chat.memory=scoped: the names that bring the update in

    def checks(self) -> str:
        """'reliability 1.00 (2 q); locality 0.96 (25 q); bleed 0.00 (24 q)', the measured ones."""
        return "; ".join(f"{name} {getattr(self, name):.2f} ({self.counts.get(name, 0)} q)"
                         for name in ("reliability", "locality", "bleed") if getattr(self, name) is not None)

    def summary(self) -> str:
        if self.gain is None:
            return self.reason
        parts = [f"gain {self.gain:+.2f} nats/token on {len(self.probes)} probe(s)"]
        parts.append("retention: no earlier content" if self.retention_drop is None
                     else f"retention drop {self.retention_drop:+.2f} nats/token")
        parts.append(f"everyday replies {self.chat_drop:+.2f} nats/token")
        parts.append(f"general perplexity {self.ppl_before:.1f} -> {self.ppl_after:.1f} "
                     f"({100 * (self.ppl_after / self.ppl_before - 1):+.1f} %)")
        if self.checks():
            parts.append(self.checks())
        if self.scope:
            parts.append("used for prompts naming " + ", ".join(self.scope))
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
          after: Figures, edit: dict | None = None) -> tuple[LearnResult, list[str]]:
    """The update's figures (a `LearnResult` not yet accepted) and the gate's failures (none: accept).
    `edit`: `EditChecks.measure` of the updated model (None: no greedy-answer checks)."""
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
    if edit is not None:
        failures += _edit_failures(g, result, edit)
    result.failures = failures
    return result, failures


def _edit_failures(g: GateConfig, result: LearnResult, edit: dict) -> list[str]:
    """Copy the greedy-answer figures into `result`; the thresholds they break, with example answers."""
    for name in ("reliability", "locality", "bleed"):
        setattr(result, name, edit.get(name))
        result.counts[name] = edit.get(f"n_{name}", 0)
    result.wrong, result.entities = edit.get("wrong", {}), list(edit.get("entities", []))
    out = []

    def fail(name: str, text: str) -> None:
        examples = format_wrong(result.wrong.get(name, []))
        out.append(text + (f" (e.g. {examples})" if examples else ""))

    n = result.counts
    if result.reliability is not None and result.reliability < g.min_reliability:
        fail("reliability", f"reliability {result.reliability:.2f}: {round(result.reliability * n['reliability'])} "
                            f"of {n['reliability']} probe question(s) answered right, less than "
                            f"gate.min_reliability={g.min_reliability}")
    if result.locality is not None and result.locality < g.min_locality:
        fail("locality", f"locality {result.locality:.2f}: {round(result.locality * n['locality'])} of "
                         f"{n['locality']} general questions the base model knew still answered right, less than "
                         f"gate.min_locality={g.min_locality}")
    if result.bleed is not None and result.bleed > g.max_bleed:
        fail("bleed", f"bleed {result.bleed:.2f}: {round(result.bleed * n['bleed'])} of {n['bleed']} questions "
                      f"about other subjects answered with the new names ({', '.join(result.entities[:4])}), more "
                      f"than gate.max_bleed={g.max_bleed}")
    return out
