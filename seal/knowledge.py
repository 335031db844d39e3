"""The knowledge-incorporation task as building blocks shared by recipes (`ki_eval`, `restem`).

`KnowledgeTask` holds one resident model with its inner-loop adapter, a generator and a grader,
and offers the operations the recipes are sequences of: closed-book accuracy of the unadapted
model, sampling self-edits, and adapt-then-evaluate for one set of training documents.

Every operation that feeds a recorded result works on a fixed unit (one passage, or one whole
batch of self-edit prompts), so a resumed run recomputes exactly what an uninterrupted one did:
batched greedy decoding over a different set of prompts could otherwise round differently.
"""

from __future__ import annotations

from seal.data import Passage
from seal.generation import HFGenerator, SamplingConfig
from seal.graders import GraderConfig, make_grader
from seal.inner_loop import InnerLoop, InnerLoopConfig, InnerLoopError
from seal.models import ModelConfig, format_prompt, max_context, uses_chat
from seal.qa_eval import QAEvalConfig, answer_questions, grade_records
from seal.self_edits import SelfEditConfig, SelfEditError, completion_to_documents, self_edit_prompt


class KnowledgeTask:
    def __init__(self, model, tok, model_cfg: ModelConfig, inner_cfg: InnerLoopConfig, qa_cfg: QAEvalConfig,
                 grader_cfg: GraderConfig, self_edit_cfg: SelfEditConfig):
        self.tok = tok
        self.chat = uses_chat(model_cfg, tok)
        self.system_prompt = model_cfg.system_prompt
        self.context_limit = max_context(model_cfg, model)
        self.inner = InnerLoop(model, tok, inner_cfg)
        self.gen = HFGenerator(self.inner.model, tok)
        self.qa_cfg = qa_cfg
        self.se_cfg = self_edit_cfg
        self.grader = make_grader(grader_cfg, self.inner.model, tok, self.chat)

    def passage_tokens(self, p: Passage) -> int:
        return len(self.tok(f"{p.title}\n{p.context}")["input_ids"]) + 1

    def too_long(self, p: Passage) -> str | None:
        """Why this passage cannot be trained on whole, or None. Never truncated silently."""
        n = self.passage_tokens(p)
        if n > self.context_limit:
            return f"passage has {n} tokens, more than the model's context of {self.context_limit}"
        if n > self.inner.cfg.max_seq_len:
            return f"passage has {n} tokens, more than inner_loop.max_seq_len={self.inner.cfg.max_seq_len}"
        return None

    def evaluate(self, p: Passage) -> list[dict]:
        """Closed-book answers to one passage's questions with the model's current adapter state."""
        records = answer_questions([p], self.gen, self.qa_cfg, self.tok, self.chat, self.system_prompt)
        with self.inner.base_model():  # a local judge grades with the adapter off
            return grade_records(records, self.grader)

    def base_accuracy(self, p: Passage) -> tuple[float, list[dict]]:
        with self.inner.base_model():
            qs = self.evaluate(p)
        return accuracy(qs), qs

    def prompt(self, p: Passage, fmt: str) -> str:
        return format_prompt(self.tok, self_edit_prompt(p, fmt, self.se_cfg), self.chat, self.system_prompt)

    def sample(self, passages: list[Passage], fmt: str, k: int, seed: int, desc: str | None = None) -> list[list[str]]:
        """k self-edits per passage from the unadapted model, as one seeded batch."""
        cfg = self.se_cfg
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                  batch_size=cfg.batch_size)
        prompts = [self.prompt(p, fmt) for p in passages for _ in range(k)]
        with self.inner.base_model():
            texts = self.gen.generate(prompts, sampling, seed=seed, desc=desc or f"sampling {len(prompts)} self-edits")
        return [texts[i * k:(i + 1) * k] for i in range(len(passages))]

    def documents(self, p: Passage, text: str, fmt: str) -> list[str]:
        return completion_to_documents(text, p, fmt, self.se_cfg)

    def adapt_and_evaluate(self, p: Passage, text: str, fmt: str, seed: int) -> dict:
        """Inner loop on the self-edit's documents, then closed-book accuracy. A self-edit that cannot
        be used (empty, filler only, too long, NaN loss) gives a record with `skipped` and its reason."""
        try:
            docs = self.documents(p, text, fmt)
            stats = self.inner.train(docs, seed=seed)
        except (SelfEditError, InnerLoopError) as e:
            return {"skipped": str(e), "seed": seed}
        qs = self.evaluate(p)
        return {"seed": seed, "accuracy": accuracy(qs), "n_docs": len(docs), "train": stats.to_dict(), "questions": qs}


def accuracy(questions: list[dict]) -> float:
    return sum(q["correct"] for q in questions) / len(questions) if questions else 0.0
