"""The gate's checks on greedy answers (`seal.eval.edit_eval`), beside its likelihood checks (`seal.chat.gate`):
after an update, are the new content's probe questions answered (reliability), does the model still
answer the general-knowledge questions its base weights answered (locality), and does it name the
content's new people and places when asked about other subjects (bleed)?

The locality bank (`seal.eval.locality_bank`) is split once, by position, into a held-out part the gate
asks (locality and bleed questions come only from it) and a replay part that training may rehearse
(the `distill` replay source: the base model's own answers to it). No question the gate asks is ever
trained on. Which held-out questions the base model knows is found once per base model and cached in
the store (`seal.eval.known_questions`); the base model's replay answers are cached there too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from seal.chat.adapter_store import AdapterStore
from seal.eval.edit_bleed import bleed_questions, common_words, name_spans, new_entities
from seal.eval.edit_eval import EditEvalConfig, ask, evaluate_edit, question_prompts
from seal.eval.graders import MatchGrader
from seal.eval.known_questions import known_questions, sample_bank
from seal.eval.locality_bank import BankRecord, load_bank
from seal.eval.probes import Probe

KNOWN_CACHE = "known_questions.json"  # in the store: the base model's known held-out questions
DISTILL_CACHE = "distill.json"  # in the store: the base model's answers to the replay part
REPLAY_EVERY = 4  # every 4th bank question (positions 3, 7, ...) is the replay part; the rest is held out


def split_bank(bank: Sequence[BankRecord]) -> tuple[list[BankRecord], list[BankRecord]]:
    """(held-out part, replay part) of the bank: disjoint, fixed by position."""
    held = [r for i, r in enumerate(bank) if i % REPLAY_EVERY != REPLAY_EVERY - 1]
    replay = [r for i, r in enumerate(bank) if i % REPLAY_EVERY == REPLAY_EVERY - 1]
    return held, replay


def eval_config(g) -> EditEvalConfig:
    """How the gate (a `GateConfig`) asks: its locality sample size, seed and answer length."""
    return EditEvalConfig(bank_size=g.locality_questions or None, seed=g.seed, max_new_tokens=g.answer_tokens,
                          bleed_questions=g.bleed_questions, examples=3)


def locality_sample(bank: Sequence[BankRecord], g) -> list[BankRecord]:
    """The held-out questions the gate asks the base model to find what it knows ([] when the check is off)."""
    if g.locality_questions == 0:
        return []
    return sample_bank(split_bank(bank)[0], eval_config(g))


def qa_pairs(probes: Sequence[Probe]) -> list[tuple[str, str]]:
    """(question, answer) of the probes that are questions (cloze probes are raw text, not asked)."""
    return [(p.question, p.answer.strip()) for p in probes if p.kind == "qa" and p.question]


def sentences(content: str) -> list[str]:
    """The content's sentences and lines that hold a word."""
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", content) if s.split()]


def content_names(content: str) -> list[str]:
    """Capitalised spans of the content, except a lone word that only ever opens a sentence or line
    ("Every", "Answer:")."""
    lines = sentences(content)
    inner = {w.strip(".,;:!?\"'") for s in lines for w in s.split()[1:] if w[:1].isupper()}
    out: dict[str, None] = {}
    for s in lines:
        first = s.split()[0].strip(".,;:!?\"'")
        for span in name_spans(s):
            if " " in span or span != first or span in inner:
                out.setdefault(span, None)
    return list(out)


def gate_bleed_questions(bank: Sequence[BankRecord], g, probes: Sequence[Probe], content: str) -> list:
    """The bleed questions the gate asks after learning `content` (from the held-out part only)."""
    if g.bleed_questions == 0:
        return []
    cfg = eval_config(g)
    return bleed_questions(qa_pairs(probes), split_bank(bank)[0], cfg.bleed_questions, cfg.seed, content,
                           cfg.bleed_fixed_share)


def entities(bank: Sequence[BankRecord], probes: Sequence[Probe], content: str, tok=None) -> list[str]:
    """The new names the content brings (probe questions and answers, and the content's own names); with
    `tok`, a word of a longer name that is ordinary English in its vocabulary does not count alone."""
    return new_entities(qa_pairs(probes) + [(name, "") for name in content_names(content)], bank,
                        common_words(tok) if tok is not None else None)


class EditChecks:
    """Reliability, locality and bleed of the model as it is, for one learned content."""

    def __init__(self, g, bank: Sequence[BankRecord], known: Sequence[BankRecord], chat: bool,
                 system_prompt: str | None):
        self.g, self.bank, self.known = g, list(bank), list(known)
        self.chat, self.system_prompt = chat, system_prompt
        self.grader = MatchGrader()

    @classmethod
    def for_base(cls, model, tok, g, chat: bool, system_prompt: str | None, store: AdapterStore,
                 bank: Sequence[BankRecord] | None = None) -> EditChecks:
        """Checks against what `model` (holding the base weights) knows, found once and cached in `store`."""
        bank = load_bank() if bank is None else list(bank)
        known = []
        if g.locality_questions:
            known = known_questions(model, tok, split_bank(bank)[0], MatchGrader(), eval_config(g), chat,
                                    system_prompt, cache_path=store.root / KNOWN_CACHE)
        return cls(g, bank, known, chat, system_prompt)

    def held_out(self, probes: Sequence[Probe], content: str) -> list[str]:
        """Every general question the gate asks for this content (never to be trained on)."""
        return [r.question for r in self.known] + [q.question for q in
                                                   gate_bleed_questions(self.bank, self.g, probes, content)]

    def measure(self, model, tok, probes: Sequence[Probe], content: str) -> dict:
        """`evaluate_edit`'s figures (reliability, locality, bleed, counts) and the failing answers:
        `wrong` (measure -> [{question, gold, answer}]), the ones a report shows."""
        qs = gate_bleed_questions(self.bank, self.g, probes, content)
        names = entities(self.bank, probes, content, tok)
        d = evaluate_edit(model, tok, qa_pairs(probes), self.grader, known=self.known, bank=self.bank,
                          content=content, bleed_qs=qs, entities=names, cfg=eval_config(self.g), chat=self.chat,
                          system_prompt=self.system_prompt)
        d["wrong"] = {}
        for name, bad in (("reliability", False), ("locality", False), ("bleed", True)):
            share, n = d.get(name), d.get(f"n_{name}", 0)
            k = 0 if share is None else round((share if bad else 1 - share) * n)  # examples list failures first
            d["wrong"][name] = d["examples"][name][:k]
        return d


def distill_replies(store: AdapterStore, model, tok, g, chat: bool, system_prompt: str | None,
                    bank: Sequence[BankRecord] | None = None) -> list[str]:
    """The base model's own greedy answers to the replay part of the bank, each as one training text
    (the prompt the gate would use, then the answer), made once per store; `model` must hold the base
    weights. Replaying them rehearses how the model answers general questions without touching the
    held-out ones."""
    replay = split_bank(load_bank() if bank is None else bank)[1]
    cfg = eval_config(g)
    prompts = question_prompts(tok, replay, cfg, chat, system_prompt)
    path = store.root / DISTILL_CACHE
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if [c[0] for c in cached] == prompts and all(isinstance(c[1], str) for c in cached):
                return [p + a for p, a in cached if a.strip()]
        except (ValueError, TypeError, KeyError, IndexError, RecursionError):
            pass  # a cache: a corrupt copy is written again below
    answers = [r["answer"] for r in ask(model, tok, replay, cfg, chat, system_prompt)]
    pairs = [(p, ("" if chat else " ") + a) for p, a in zip(prompts, answers)]
    store.write_text(path, json.dumps(pairs, indent=1))
    return [p + a for p, a in pairs if a.strip()]


def format_wrong(wrong: Sequence[dict]) -> str:
    """'What is the capital of France? -> Vellmora' for each example, joined."""
    return "; ".join(f"{w['question']} -> {w['answer'][:60] or '(nothing)'}" for w in wrong)
