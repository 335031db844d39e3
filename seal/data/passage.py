"""The passage types: `Passage` (a title, a context and the closed-book questions about it) and
`Question`. Every data source produces them; this module imports nothing from seal, so loaders
(`seal.data.sources`) and generators (`seal.data.fictional`) can both use it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    question: str
    answer: str


@dataclass
class Passage:
    title: str
    context: str
    questions: list[Question]
    completions: list[str] = field(default_factory=list)  # self-edits shipped with the record, if any
    uid: str = ""  # stable id, e.g. "squad_val.json#17"

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "context": self.context,
            "questions": [{"question": q.question, "answer": q.answer} for q in self.questions],
            "completions": list(self.completions),
        }
