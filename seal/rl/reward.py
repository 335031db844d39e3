"""The reward of a self-edit: what the outer loop learns from (REFERENCE 1.1, 1.2).

A domain's `reward(...)` (`seal.rl.protocols.Domain`) turns the inner loops one self-edit went through
(one per seed) and the unadapted policy's score on the same context into one `EditReward`. Selection
(`seal.rl.selection`) reads only this record: the score it ranks by, the gain over the unadapted
policy that `improves_baseline` thresholds, and why an edit was unusable (never kept).

`REWARDS` is a name -> function table (`restem.reward=<name>`), each with the measure its inner loops
must record (`MEASURES`):
- `accuracy` (`mean_accuracy`), the paper's reward for both domains: the adapted model's accuracy
  (knowledge: share of the passage's questions answered; ARC: 1 if the task was solved), averaged over
  seeds, an unusable run counting 0;
- `binary`: 1 for each seed whose adapted accuracy beats the unadapted policy's, else 0, averaged (the
  paper's binary reward as a score);
- `likelihood`: the gold answers' mean log-probability per token under the adapted model, averaged
  over seeds; no generation, so cheaper and continuous (an unusable run gets the unadapted value, so
  its gain is 0). Knowledge incorporation only;
- `self_questions`: needs no gold questions. Before the inner loops the unadapted policy writes
  question/answer pairs about the passage (`seal.eval.self_questions`, `self_questions.*` in the
  restem config; seeded per round and context, recorded in the E-step's base record); the score is the
  adapted model's closed-book accuracy on those questions, graded against the self-written answers,
  averaged over seeds (an unusable run gets the unadapted value, so its gain is 0); the base is the
  unadapted accuracy on them. A context for which no pair could be parsed makes its edits unusable, and
  so does a run whose exam (`self_questions_exam_sha`) is not the one its base record was scored on.
  Held-out evaluation still uses the gold questions. Knowledge incorporation only.
A new reward is a function with this signature and one entry in each table.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EditReward:
    context: str  # uid of the context the self-edit was written for
    sample: int  # which of the k samples
    # what selection ranks by: the mean adapted score over seeds; an unusable run counts as the reward
    # says (accuracy and binary: 0; likelihood and self_questions: the unadapted value, so its gain is 0)
    score: float
    base: float  # the unadapted policy's score on the same context
    seed_scores: tuple[float | None, ...]  # one per inner-loop seed; None where that run was unusable
    unusable: str | None = None  # why the edit could not be used (no text, filler, too long, NaN loss ...)

    @property
    def gain(self) -> float:
        return self.score - self.base

    def to_record(self, self_edit: str) -> dict:
        """The E-step record of this edit (`select/<r>`); the unusable reason is stored as `skipped`,
        the key run folders have always used."""
        return {"context": self.context, "sample": self.sample, "score": self.score, "base": self.base,
                "gain": self.gain, "seed_scores": list(self.seed_scores), "self_edit": self_edit,
                "skipped": self.unusable}

    @classmethod
    def from_record(cls, rec: dict) -> EditReward:
        return cls(rec["context"], rec["sample"], rec["score"], rec["base"], tuple(rec["seed_scores"]),
                   rec.get("skipped"))


def _unusable(runs: list[dict]) -> str | None:
    skipped = [r["skipped"] for r in runs if "skipped" in r]
    return skipped[0] if skipped else None


def mean_accuracy(context: str, sample: int, runs: list[dict], base: dict) -> EditReward:
    """Mean of the runs' `accuracy` (a run with `skipped` scores 0); the first unusable reason, if any."""
    return EditReward(context=context, sample=sample, score=statistics.fmean(r.get("accuracy", 0.0) for r in runs),
                      base=base["accuracy"], seed_scores=tuple(r.get("accuracy") for r in runs),
                      unusable=_unusable(runs))


def binary(context: str, sample: int, runs: list[dict], base: dict) -> EditReward:
    """Share of seeds whose adapted accuracy beats the unadapted policy's (0 or 1 with one seed)."""
    wins = [float(r["accuracy"] > base["accuracy"]) if "accuracy" in r else None for r in runs]
    return EditReward(context=context, sample=sample, score=statistics.fmean(w or 0.0 for w in wins),
                      base=0.0, seed_scores=tuple(wins), unusable=_unusable(runs))


def likelihood(context: str, sample: int, runs: list[dict], base: dict) -> EditReward:
    """Mean over seeds of the gold answers' mean log-probability per token after the inner loop."""
    lps = [r.get("likelihood") for r in runs]
    return EditReward(context=context, sample=sample,
                      score=statistics.fmean(base["likelihood"] if lp is None else lp for lp in lps),
                      base=base["likelihood"], seed_scores=tuple(lps), unusable=_unusable(runs))


def self_questions(context: str, sample: int, runs: list[dict], base: dict) -> EditReward:
    """Mean over seeds of the adapted accuracy on the questions the unadapted policy wrote itself. Base
    and adapted model must have sat the same exam: a run that records another exam's hash than the base
    record's makes the edit unusable (a run from before hashes were kept is not checked)."""
    from seal.eval.self_questions import base_exam_sha

    scores = [r.get("self_questions") for r in runs]
    if "self_questions_unusable" in base:  # the policy wrote no usable question: nothing to score by
        return EditReward(context=context, sample=sample, score=0.0, base=0.0, seed_scores=tuple(None for _ in runs),
                          unusable=base["self_questions_unusable"])
    hashed = [(s, r["self_questions_exam_sha"]) for s, r in enumerate(runs) if "self_questions_exam_sha" in r]
    want = base_exam_sha(base) if hashed else None
    other = [(s, sha) for s, sha in hashed if sha != want]
    if other:
        return EditReward(context=context, sample=sample, score=base["self_questions"], base=base["self_questions"],
                          seed_scores=tuple(None for _ in runs),
                          unusable=f"self_questions: exam mismatch: seed {other[0][0]} was scored on exam "
                                   f"{other[0][1]}, the base record on exam {want}")
    return EditReward(context=context, sample=sample,
                      score=statistics.fmean(base["self_questions"] if s is None else s for s in scores),
                      base=base["self_questions"], seed_scores=tuple(scores), unusable=_unusable(runs))


RewardFn = Callable[[str, int, list[dict], dict], EditReward]
# reward name -> function; and what the E-step's inner loops must measure for it
REWARDS: dict[str, RewardFn] = {"accuracy": mean_accuracy, "binary": binary, "likelihood": likelihood,
                                "self_questions": self_questions}
MEASURES: dict[str, str] = {"accuracy": "accuracy", "binary": "accuracy", "likelihood": "likelihood",
                            "self_questions": "self_questions"}
