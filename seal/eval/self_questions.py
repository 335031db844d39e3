"""Questions the policy writes itself: the `self_questions` reward's exam, which needs no gold questions.

Before the inner loops of a training context, the unadapted policy reads the passage and writes
question/answer pairs about it (`SelfQuestionsConfig.prompt`, one "Q: ..." line and one "A: ..." line
per pair). After an inner loop, the adapted model answers those questions closed-book and the
configured grader compares its answers with the self-written ones, on the same path as gold questions
(`seal.eval.qa`): `examined(passage, questions)` is the passage with its questions replaced.

Determinism: each context's questions come from one generate call of its own, seeded by the caller
(`seal.domains.knowledge.domain.KnowledgeSession` derives it from the config seed, the round and the
context uid), so they are the same whichever other contexts are written with them. They are written
once per context, for its E-step base record, which holds them (`self_questions_exam`, `as_records`)
with their hash (`self_questions_exam_sha`, `exam_sha`); every adapted evaluation reads its exam from
that record (`exam_of`), never writes it again, and records the hash of the exam it used, so the
reward can check that base and adapted model sat the same exam. A completion in which no pair can be
parsed gives no questions; the reward of that context's edits is then unusable (`NO_PAIRS`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace

from seal.data.passage import Passage, Question
from seal.generation.hf import Generator, SamplingConfig
from seal.models.loading import format_prompt

NO_PAIRS = "self_questions: the unadapted policy wrote no parseable question/answer pair for this passage"


@dataclass(frozen=True)
class SelfQuestionsConfig:
    prompt: str = ("Here is a passage. Quiz a reader on it: write up to {n} short questions that the passage "
                   "answers, each followed by its answer in a few words. Put each question on its own line "
                   "starting with \"Q:\" and its answer on the next line starting with \"A:\".\n\n"
                   "Title: {title}\n{context}\n\nQuiz:\n")
    max_questions: int = 5  # pairs kept per passage (the first ones written); more are ignored
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy (the seed then changes nothing)


# "Q: ...", "Q1. ...", "1) Question: ...", "- **Q:** ..." (case-insensitive); answers likewise with "A"
_LEAD = r"^\s*(?:[-*\u2022]+\s*|\(?\d{1,3}[.)]\s*)?(?:\*\*)?"
_Q = re.compile(_LEAD + r"q(?:uestion)?\s*\d*\s*[:.)]\s*(?:\*\*)?\s*(?P<text>.*)$", re.IGNORECASE)
_A = re.compile(_LEAD + r"a(?:nswer)?\s*\d*\s*[:.)]\s*(?:\*\*)?\s*(?P<text>.*)$", re.IGNORECASE)
# "Q: ...? A: ..." on one line: an answer only after a question that ends in "?" or "." (with ** around it
# or not), so that "Q: What does vitamin A: do?" stays one question
_INLINE_A = re.compile(r"(?<=[?.])(?:\*\*)?\s+(?:\*\*)?a(?:nswer)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def _clean(text: str) -> str:
    return text.replace("**", "").strip().strip('"').strip()


def parse_pairs(text: str, max_questions: int) -> list[Question]:
    """The (question, answer) pairs of a completion, in order, at most `max_questions`: a "Q:" line
    followed (later) by an "A:" line, or both on one line. Lines that are neither are ignored; a
    question without an answer, an empty question or answer, and a repeated question are dropped."""
    pairs: list[Question] = []
    seen: set[str] = set()
    pending: str | None = None

    def add(question: str, answer: str) -> None:
        q, a = _clean(question), _clean(answer)
        if q and a and q.lower() not in seen and len(pairs) < max_questions:
            seen.add(q.lower())
            pairs.append(Question(q, a))

    for line in text.splitlines():
        if (m := _Q.match(line)) is not None:
            parts = _INLINE_A.split(m["text"], maxsplit=1)
            if len(parts) == 2:
                add(*parts)
                pending = None
            else:
                pending = m["text"]
        elif (m := _A.match(line)) is not None and pending is not None:
            add(pending, m["text"])
            pending = None
    return pairs


def examiner_prompt(p: Passage, cfg: SelfQuestionsConfig, tok, chat: bool, system_prompt: str | None = None) -> str:
    """The text the policy is given to write its questions about `p` (chat template applied)."""
    return format_prompt(tok, cfg.prompt.format(n=cfg.max_questions, title=p.title, context=p.context), chat,
                         system_prompt)


def write_questions(passages: list[Passage], generator: Generator, cfg: SelfQuestionsConfig, tok, chat: bool,
                    system_prompt: str | None, seeds: list[int]) -> list[dict]:
    """For each passage, with its own seed, in a generate call of its own (so its questions never depend
    on the other passages): {"text": the completion, "questions": the parsed pairs (maybe none)}. The
    caller runs it on the unadapted policy."""
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=1)
    out = []
    for p, seed in zip(passages, seeds, strict=True):
        text = generator.generate([examiner_prompt(p, cfg, tok, chat, system_prompt)], sampling, seed=seed)[0]
        out.append({"text": text, "questions": parse_pairs(text, cfg.max_questions)})
    return out


def examined(p: Passage, questions: list[Question]) -> Passage:
    """The passage with its questions replaced by the self-written ones (what `KnowledgeTask.answer` grades)."""
    return replace(p, questions=list(questions))


def as_records(questions: list[Question]) -> list[dict]:
    """An exam as the base record holds it (`self_questions_exam`)."""
    return [{"question": q.question, "answer": q.answer} for q in questions]


def from_records(records: list[dict]) -> list[Question]:
    return [Question(r["question"], r["answer"]) for r in records]


def exam_sha(questions: list[Question]) -> str:
    """A short hash of an exam's questions and answers, in order (recorded beside every score on it)."""
    text = json.dumps(as_records(questions), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def exam_of(base: dict) -> list[Question]:
    """The exam a context's E-step base record was scored on: `self_questions_exam`, or in a record from
    before it was kept, the graded questions themselves (`self_questions_questions`: question and gold)."""
    if "self_questions_exam" in base:
        return from_records(base["self_questions_exam"])
    return [Question(q["question"], q["gold"]) for q in base["self_questions_questions"]]


def base_exam_sha(base: dict) -> str:
    return base.get("self_questions_exam_sha") or exam_sha(exam_of(base))
