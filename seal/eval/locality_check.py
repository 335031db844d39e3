"""Locality and bleed of a model that recipes change (ki_continual after each merged edit, ReST-EM per
round): the edit-evaluation suite (`seal.eval.edit_eval`) with a fixed set of questions per run.

`known_ids` are found once, on the unadapted base model: the bank questions it answers correctly
(`seal.eval.known_questions`), of which a `seed`-fixed sample of `questions` is kept. A recipe records
the ids in its run folder, so a resumed run, a later round whose policy has changed, or another
process asks exactly the same questions. Bank questions are graded by `MatchGrader` (their golds are
short names and numbers), whatever grader the recipe uses for its passages: a judge would cost a
call per question and locality must not depend on it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from seal.data.passage import Passage
from seal.eval.edit_eval import EditEvalConfig, evaluate_edit, locality
from seal.eval.graders import MatchGrader
from seal.eval.known_questions import known_questions
from seal.eval.locality_bank import BankRecord, load_bank
from seal.infra.config import require_at_least


@dataclass(frozen=True)
class LocalityCheckConfig:
    questions: int = 48  # base-known general questions asked each time (0: no locality check)
    # bank questions (a seeded sample) the base model is asked once to find the ones it knows; 0: the whole bank.
    # (192 leaves more than 48 to choose from for a model that knows a quarter of the bank)
    bank_sample: int = 192
    bleed_questions: int = 16  # questions about other subjects in the edited passage's relations (0: none)
    max_new_tokens: int = 24
    seed: int = 0

    def __post_init__(self):
        require_at_least(self, "locality", ("questions", "bleed_questions", "bank_sample"), 0, " (0 turns it off)")
        require_at_least(self, "locality", ("max_new_tokens",), 1)

    def eval_config(self) -> EditEvalConfig:
        return EditEvalConfig(seed=self.seed, max_new_tokens=self.max_new_tokens,
                              bleed_questions=self.bleed_questions)


class LocalityCheck:
    """The questions of one run, and the measures of a model on them."""

    def __init__(self, cfg: LocalityCheckConfig, known_ids: Sequence[str], chat: bool,
                 system_prompt: str | None = None, bank: Sequence[BankRecord] | None = None):
        self.cfg, self.chat, self.system_prompt = cfg, chat, system_prompt
        self.bank = list(bank) if bank is not None else load_bank()
        by_id = {r.id: r for r in self.bank}
        missing = [i for i in known_ids if i not in by_id]
        if missing:
            raise ValueError(f"locality: recorded question ids {missing[:3]} are not in the bank (it changed since "
                             f"the run started)")
        self.known = [by_id[i] for i in known_ids]
        self.grader = MatchGrader()

    @staticmethod
    def known_ids(model, tok, cfg: LocalityCheckConfig, chat: bool, system_prompt: str | None = None,
                  bank: Sequence[BankRecord] | None = None, cache_path=None) -> list[str]:
        """Call on the unadapted base model: ids of at most `cfg.questions` bank questions it answers right."""
        bank = list(bank) if bank is not None else load_bank()
        asked = replace(cfg.eval_config(), bank_size=min(len(bank), cfg.bank_sample) if cfg.bank_sample else None)
        known = known_questions(model, tok, bank, MatchGrader(), asked, chat, system_prompt, cache_path)
        ids = [r.id for r in known]
        if len(ids) > cfg.questions:
            keep = set(random.Random(cfg.seed).sample(range(len(ids)), cfg.questions))
            ids = [i for j, i in enumerate(ids) if j in keep]
        return ids

    def measure(self, model, tok, passage: Passage | None = None) -> dict:
        """The model as it is: `locality` (share of the known questions still right, `n_locality`), and with
        `passage` (what was just learned) `bleed` (share of answers to its bleed questions naming its new
        names, `n_bleed`) and `reliability` on its questions through the bank's grader; `examples` of failures."""
        ecfg = self.cfg.eval_config()
        if passage is None or self.cfg.bleed_questions == 0:
            share = locality(model, tok, self.known, self.grader, ecfg, self.chat, self.system_prompt)
            return {"locality": share, "n_locality": len(self.known)}
        probes = [(q.question, q.answer) for q in passage.questions]
        d = evaluate_edit(model, tok, probes, self.grader, known=self.known, bank=self.bank,
                          content=passage.context, cfg=ecfg, chat=self.chat, system_prompt=self.system_prompt)
        return {k: d[k] for k in ("locality", "n_locality", "bleed", "n_bleed", "reliability", "n_reliability",
                                  "entities", "examples")}


def recorded_check(rd, cfg: LocalityCheckConfig, model, tok, chat: bool, system_prompt: str | None = None,
                   key: str = "locality/known") -> LocalityCheck | None:
    """The run's check (None when `cfg.questions` is 0): its known questions are found on `model` (call it
    before any update) the first time and recorded under `key` in the run folder `rd`, then read back."""
    if not cfg.questions:
        return None
    if not rd.has(key):
        rd.put(key, {"ids": LocalityCheck.known_ids(model, tok, cfg, chat, system_prompt)})
    return LocalityCheck(cfg, rd.get(key)["ids"], chat, system_prompt)


def mean_of(records: Sequence[dict], key: str) -> float | None:
    """Mean of `key` over the records that have a value for it (None when none has)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else None
