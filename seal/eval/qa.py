"""Closed-book question answering: the downstream task whose accuracy is SEAL's reward.

The model answers each question *without* the passage in context. The question carries a
"Topic: {title}" line so it is unambiguous, the prompt asks for a direct, concise answer, decoding
is greedy with at most `max_new_tokens`, and all questions of a batch of passages are generated
together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seal.data.passage import Passage
from seal.eval.graders import GradeItem, Grader
from seal.generation.hf import Generator, SamplingConfig
from seal.models.loading import format_prompt


@dataclass(frozen=True)
class QAEvalConfig:
    template: str = "Topic: {title}\n{question}\nAnswer the question directly and concisely."
    max_new_tokens: int = 64
    batch_size: int = 16
    # a base model (model.chat=false) continues raw text: the cue tells it where the answer goes, and
    # its answer ends at the first line break (else it goes on with more questions of its own)
    base_cue: str = "\nAnswer:"
    base_first_line: bool = True


def qa_prompts(passages: list[Passage], cfg: QAEvalConfig, tok, chat: bool, system_prompt: str | None = None):
    cue = "" if chat else cfg.base_cue
    return [format_prompt(tok, cfg.template.format(title=p.title, question=q.question) + cue, chat, system_prompt)
            for p in passages for q in p.questions]


def first_line(answer: str) -> str:
    return answer.strip().split("\n", 1)[0].strip()


def answer_questions(passages: list[Passage], generator: Generator, cfg: QAEvalConfig, tok, chat: bool,
                     system_prompt: str | None = None, adapters: list[int] | None = None) -> list[dict]:
    """Greedy closed-book answers: one record {passage, q, question, gold, answer} per question.
    `adapters` (one per question) routes each question to its own adapter in the same call."""
    prompts = qa_prompts(passages, cfg, tok, chat, system_prompt)
    answers = generator.generate(prompts, SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                                         batch_size=cfg.batch_size), adapters=adapters)
    if not chat and cfg.base_first_line:
        answers = [first_line(a) for a in answers]
    pairs = [(p, j, q) for p in passages for j, q in enumerate(p.questions)]
    return [{"passage": p.uid, "q": j, "question": q.question, "gold": q.answer, "answer": a}
            for (p, j, q), a in zip(pairs, answers)]


def per_passage(records: list[dict], passages: list[Passage]) -> list[list[dict]]:
    """Flat question records (in `qa_prompts` order) cut back into one list per passage."""
    out, i = [], 0
    for p in passages:
        out.append(records[i:i + len(p.questions)])
        i += len(p.questions)
    return out


def grade_records(records: list[dict], grader: Grader) -> list[dict]:
    """Add `correct` and `f1` to answer records, in place; returns them."""
    grades = grader.grade([GradeItem(question=r["question"], gold=r["gold"], answer=r["answer"]) for r in records])
    for r, g in zip(records, grades):
        r["correct"], r["f1"] = g.correct, round(g.f1, 4)
    return records


def answer_and_grade(passages: list[Passage], generator: Generator, grader: Grader, cfg: QAEvalConfig,
                     tok, chat: bool, system_prompt: str | None = None) -> list[dict]:
    return grade_records(answer_questions(passages, generator, cfg, tok, chat, system_prompt), grader)


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)
