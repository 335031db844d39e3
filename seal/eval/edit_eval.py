"""Evaluating one knowledge edit as knowledge editors do, on GREEDY answers graded by seal's grader (not
by likelihood, which can improve while the model's actual answers go wrong):
- reliability: share of the learned content's probe questions answered correctly;
- generalisation: the same on paraphrased probes (written by the caller);
- locality: share of the bank questions the unadapted model knew (`seal.eval.known_questions`) that
  the edited model still answers correctly;
- bleed: share of answers to bleed questions (`seal.eval.edit_bleed`: the content's relations asked of
  other subjects) that name one of the content's new entities. Bleed needs no gold: "Vellmora" is a
  wrong answer to "What is the capital of France?" whatever the right one is.
Questions are asked one per prompt through `seal.eval.qa` (template, base-model cue, first line).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from seal.data.passage import Passage, Question
from seal.eval.edit_bleed import (
    BleedQuestion,
    as_questions,
    bleed_questions,
    common_words,
    mentions_any,
    new_entities,
)
from seal.eval.graders import GradeItem, Grader
from seal.eval.locality_bank import BankRecord
from seal.eval.qa import QAEvalConfig, answer_questions
from seal.generation.hf import HFGenerator
from seal.infra.config import ConfigError, require_at_least

__all__ = [
    "Asked",
    "EditEvalConfig",
    "ask",
    "bleed",
    "bleed_questions",
    "evaluate_edit",
    "format_edit_eval",
    "generalisation",
    "grade",
    "locality",
    "new_entities",
    "question_prompts",
    "reliability",
]


@dataclass(frozen=True)
class EditEvalConfig:
    bank_size: int | None = None  # locality questions asked of the base model (a seeded sample); None: all
    seed: int = 0  # the bank sample and the bleed questions
    max_new_tokens: int = 24  # a greedy answer's length; answers are short
    batch_size: int = 16
    bleed_questions: int = 40  # at most this many bleed questions
    bleed_fixed: int = 8  # of which at most this many (and never more than bleed_questions) from the related
    # categories' fixed sample
    template: str = "{question}"  # as a person would ask it in a chat
    base_cue: str = "\nAnswer:"  # a base model (chat=false) is cued where the answer goes
    examples: int = 3  # example answers per measure kept for reports

    def __post_init__(self):
        require_at_least(self, "edit_eval", ("max_new_tokens", "batch_size"), 1)
        require_at_least(self, "edit_eval", ("bleed_questions", "bleed_fixed", "examples"), 0)
        if self.bank_size is not None and self.bank_size < 1:
            raise ConfigError(f"edit_eval.bank_size must be at least 1 or null, got {self.bank_size}")
        if "{question}" not in self.template:
            raise ConfigError(f"edit_eval.template must contain {{question}}, got {self.template!r}")

    @property
    def bleed_fixed_share(self) -> int:
        return min(self.bleed_fixed, self.bleed_questions)

    def qa(self) -> QAEvalConfig:
        return QAEvalConfig(template=self.template, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                            base_cue=self.base_cue, base_first_line=True)


@dataclass(frozen=True)
class Asked:
    """A question to ask, with every accepted answer (none: only bleed is measured on it)."""
    question: str
    golds: tuple[str, ...] = ()


def _asked(items: Iterable) -> list[Asked]:
    """`Asked` from `Question`s, (question, answer) pairs, `BankRecord`s, `BleedQuestion`s or strings."""
    out = []
    for it in items:
        if isinstance(it, Asked):
            out.append(it)
        elif isinstance(it, BankRecord):
            out.append(Asked(it.question, it.golds))
        elif isinstance(it, BleedQuestion):
            out.append(Asked(it.question, (it.gold,) if it.gold else ()))
        elif isinstance(it, str):
            out.append(Asked(it))
        else:
            q = as_questions([it])[0]
            out.append(Asked(q.question, (q.answer,)))
    return out


def _chat(tok, chat: bool | None) -> bool:
    return bool(getattr(tok, "chat_template", None)) if chat is None else chat


def _passage(asked: list[Asked]) -> Passage:
    return Passage(title="", context="", questions=[Question(a.question, a.golds[0] if a.golds else "")
                                                    for a in asked], uid="edit_eval")


def question_prompts(tok, questions: Iterable, cfg: EditEvalConfig = EditEvalConfig(), chat: bool | None = None,
                     system_prompt: str | None = None) -> list[str]:
    """The exact prompts the measures ask (what a test trains on, or a report shows)."""
    from seal.eval.qa import qa_prompts

    return qa_prompts([_passage(_asked(questions))], cfg.qa(), tok, _chat(tok, chat), system_prompt)


def ask(model, tok, questions: Iterable, cfg: EditEvalConfig = EditEvalConfig(), chat: bool | None = None,
        system_prompt: str | None = None) -> list[dict]:
    """Greedy answers, one record {question, golds, answer} per question, in one batched call."""
    asked = _asked(questions)
    if not asked:
        return []
    records = answer_questions([_passage(asked)], HFGenerator(model, tok), cfg.qa(), tok, _chat(tok, chat),
                               system_prompt)
    return [{"question": a.question, "golds": list(a.golds), "answer": r["answer"]} for a, r in zip(asked, records)]


def grade(records: list[dict], grader: Grader) -> list[dict]:
    """Add `correct` to answer records, in place: the gold, or failing that any alias, is conveyed.
    Aliases are graded only for answers the gold did not pass."""
    graded = [r for r in records if r["golds"]]
    for r in records:
        r["correct"] = False
    todo = graded
    for k in range(max((len(r["golds"]) for r in graded), default=0)):
        todo = [r for r in todo if not r["correct"] and len(r["golds"]) > k]
        if not todo:
            break
        verdicts = grader.grade([GradeItem(r["question"], r["golds"][k], r["answer"]) for r in todo])
        for r, v in zip(todo, verdicts):
            r["correct"] = v.correct
    return records


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _graded_share(model, tok, items, grader, cfg, chat, system_prompt) -> float | None:
    return _share([r["correct"] for r in grade(ask(model, tok, items, cfg, chat, system_prompt), grader)])


def reliability(model, tok, probes: Iterable, grader: Grader, cfg: EditEvalConfig = EditEvalConfig(),
                chat: bool | None = None, system_prompt: str | None = None) -> float | None:
    """Share of the content's probe questions (`Question`s or (question, answer) pairs) answered correctly;
    None without probes."""
    return _graded_share(model, tok, probes, grader, cfg, chat, system_prompt)


def generalisation(model, tok, paraphrases: Iterable, grader: Grader, cfg: EditEvalConfig = EditEvalConfig(),
                   chat: bool | None = None, system_prompt: str | None = None) -> float | None:
    """Share of paraphrased probe questions answered correctly; None without paraphrases."""
    return _graded_share(model, tok, paraphrases, grader, cfg, chat, system_prompt)


def locality(model, tok, known: Sequence[BankRecord], grader: Grader, cfg: EditEvalConfig = EditEvalConfig(),
             chat: bool | None = None, system_prompt: str | None = None) -> float | None:
    """Share of the base-known bank questions still answered correctly; None when none were known."""
    return _graded_share(model, tok, known, grader, cfg, chat, system_prompt)


def _bleeds(records: list[dict], entities: Sequence[str]) -> list[bool]:
    return [mentions_any(r["answer"], entities) for r in records]


def bleed(model, tok, questions: Iterable, new_entities: Sequence[str], cfg: EditEvalConfig = EditEvalConfig(),
          chat: bool | None = None, system_prompt: str | None = None) -> float | None:
    """Share of answers to `questions` naming any of `new_entities` (whole words, any case); None
    without questions."""
    return _share(_bleeds(ask(model, tok, questions, cfg, chat, system_prompt), new_entities))


def _examples(records: list[dict], bad: list[bool], k: int) -> list[dict]:
    """Up to k records, failures first, trimmed for a report."""
    order = [r for r, b in zip(records, bad) if b] + [r for r, b in zip(records, bad) if not b]
    return [{"question": r["question"], "gold": r["golds"][0] if r["golds"] else None,
             "answer": r["answer"][:200]} for r in order[:k]]


def evaluate_edit(model, tok, probes: Iterable, grader: Grader, *, known: Sequence[BankRecord],
                  bank: Sequence[BankRecord], paraphrases: Iterable = (), content: str = "",
                  bleed_qs: Sequence | None = None, entities: Sequence[str] | None = None, n_passages: int = 1,
                  cfg: EditEvalConfig = EditEvalConfig(), chat: bool | None = None,
                  system_prompt: str | None = None) -> dict:
    """All four measures of the model as it is (edited), with counts and example answers. Bleed questions
    and entities are built from the probes (and `content`, the learned text) unless given. All questions
    are answered in one batched call."""
    probes, paraphrases = as_questions(probes), as_questions(paraphrases)
    entities = (list(entities) if entities is not None
                else new_entities(probes + paraphrases, bank, common_words(tok)))
    if bleed_qs is None:
        bleed_qs = bleed_questions(probes, list(bank), cfg.bleed_questions, cfg.seed, content,
                                    cfg.bleed_fixed_share)
    groups = {"reliability": _asked(probes), "generalisation": _asked(paraphrases), "locality": _asked(known),
              "bleed": _asked(bleed_qs)}
    records = ask(model, tok, [a for g in groups.values() for a in g], cfg, chat, system_prompt)
    out: dict = {"n_passages": n_passages, "entities": entities, "examples": {}}
    start = 0
    for name, asked in groups.items():
        recs, start = records[start:start + len(asked)], start + len(asked)
        if name == "bleed":
            flags = _bleeds(recs, entities)
            out[name], bad = _share(flags), flags
        else:
            flags = [r["correct"] for r in grade(recs, grader)]
            out[name], bad = _share(flags), [not f for f in flags]
        out[f"n_{name}"] = len(recs)
        out["examples"][name] = _examples(recs, bad, cfg.examples)
    return out


def format_edit_eval(d: dict) -> str:
    """One line: each measure with its question count."""
    def fmt(name: str, label: str) -> str:
        value = d.get(name)
        return f"{label} {'n/a' if value is None else f'{value:.2f}'} ({d.get(f'n_{name}', 0)} q)"

    parts = [fmt("reliability", "reliability"), fmt("generalisation", "generalisation"),
             fmt("locality", "locality"), fmt("bleed", "bleed")]
    return " | ".join(parts) + f" | {d.get('n_passages', 0)} passage(s)"
