"""Likelihood probes: what a model knows, measured without generating.

`answer_logprob` scores (prompt, answer) probes by the mean log-probability per answer token,
teacher-forced: a continuous measure that moves with every update, where a greedy answer's
exact match flips only once a fact is fully learned, and it costs one forward per probe.
`perplexity` scores general text (the retention probe of `ki_continual` and of `seal.chat.gate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seal.models.loading import prompt_ids


@dataclass
class Probe:
    prompt: str  # the text the answer follows (chat-formatted for questions, raw for cloze)
    answer: str
    kind: str = "qa"  # qa (a question) | cloze (the end of a sentence) | example (a demonstration)
    question: str = ""  # the question as a person wrote it, for display

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer, "kind": self.kind, "question": self.question}


@torch.no_grad()
def answer_logprob(model, tok, probes: list[Probe], device) -> list[float]:
    """Mean log-probability per answer token of each probe's answer after its prompt."""
    out = []
    for p in probes:
        prompt = prompt_ids(tok, p.prompt)
        answer = tok(p.answer, add_special_tokens=False)["input_ids"]
        if not answer:
            raise ValueError(f"probe '{p.question or p.prompt[-60:]}' has an empty answer")
        ids = torch.tensor([prompt + answer], device=device)
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        out.append(-F.cross_entropy(logits, ids[0, len(prompt):], reduction="mean").item())
    return out


@torch.no_grad()
def perplexity(model, tok, texts: list[str], device) -> float:
    """Token-weighted perplexity of `texts` under the model as it is."""
    nll, n = 0.0, 0
    for t in texts:
        ids = torch.tensor([prompt_ids(tok, t)[:512]], device=device)
        logits = model(input_ids=ids).logits[0, :-1].float()
        nll += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        n += ids.shape[1] - 1
    return math.exp(nll / n)
