"""Graders: decide whether a closed-book answer conveys the gold answer.

All graders share one interface, `grade(items) -> list[Grade]`:
- `match` (default): the normalised gold answer is contained in the normalised answer; token F1 is
  reported beside it. Deterministic and free, good for short factual answers.
- `judge`: a local causal LM is asked a yes/no grading question; the verdict is whichever of "yes"
  and "no" gets more probability as the first answer token (no free-form parsing).
- `openai`: any OpenAI-compatible chat endpoint, for parity with the paper's GPT-4.1 judge. The key
  is read from the environment variable named in the config and never written anywhere.
Empty answers are always wrong.
"""

from __future__ import annotations

import json
import os
import re
import string
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class GraderConfig:
    kind: str = "match"  # match | judge | openai
    prompt: str = (
        "You are grading a student's answer to a quiz question.\n"
        "Question: {question}\nGold answer: {gold}\nStudent answer: {answer}\n"
        "Does the student answer fully convey the gold answer without contradicting it? Ignore style, "
        "wording and extra detail. Reply with one word: yes or no."
    )
    # judge: a local model (hub id or path; `policy` reuses the experiment's own model)
    judge_model: str = "policy"
    # openai: endpoint and model; the key comes only from the environment variable `api_key_env`
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1-2025-04-14"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3


@dataclass(frozen=True)
class GradeItem:
    question: str
    gold: str
    answer: str


@dataclass(frozen=True)
class Grade:
    correct: bool
    f1: float


class Grader(Protocol):
    def grade(self, items: list[GradeItem]) -> list[Grade]: ...


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(answer: str, gold: str) -> float:
    a, g = normalize(answer).split(), normalize(gold).split()
    common = Counter(a) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p, r = same / len(a), same / len(g)
    return 2 * p * r / (p + r)


def contains(answer: str, gold: str) -> bool:
    a, g = normalize(answer), normalize(gold)
    return bool(a) and bool(g) and re.search(rf"(^| ){re.escape(g)}( |$)", a) is not None


class MatchGrader:
    def grade(self, items: list[GradeItem]) -> list[Grade]:
        return [Grade(correct=contains(it.answer, it.gold), f1=token_f1(it.answer, it.gold)) for it in items]


class JudgeGrader:
    """A local LM judge; compares P("yes") and P("no") for the first token of its reply."""

    def __init__(self, model, tokenizer, prompt: str, chat: bool, batch_size: int = 16):
        self.model, self.tok, self.prompt, self.chat, self.batch_size = model, tokenizer, prompt, chat, batch_size
        yes = set(self._first_ids(["yes", "Yes", " yes", " Yes"]))
        no = set(self._first_ids(["no", "No", " no", " No"]))
        # a token that starts both words (e.g. a bare space) says nothing about the verdict
        self.yes, self.no = sorted(yes - no), sorted(no - yes)

    def _first_ids(self, words: list[str]) -> list[int]:
        return sorted({self.tok(w, add_special_tokens=False)["input_ids"][0] for w in words})

    @torch.inference_mode()
    def grade(self, items: list[GradeItem]) -> list[Grade]:
        from seal.models import format_prompt

        grades: list[Grade] = []
        device = next(self.model.parameters()).device
        for s in range(0, len(items), self.batch_size):
            chunk = items[s:s + self.batch_size]
            prompts = [format_prompt(self.tok, self.prompt.format(question=it.question, gold=it.gold,
                                                                  answer=it.answer), self.chat) for it in chunk]
            old = self.tok.padding_side
            self.tok.padding_side = "left"
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            self.tok.padding_side = old
            logits = self.model(**enc).logits[:, -1, :].float()
            probs = logits.softmax(-1)
            p_yes = probs[:, self.yes].sum(-1)
            p_no = probs[:, self.no].sum(-1)
            for it, y, n in zip(chunk, p_yes.tolist(), p_no.tolist()):
                ok = bool(it.answer.strip()) and y > n
                grades.append(Grade(correct=ok, f1=token_f1(it.answer, it.gold)))
        return grades


class OpenAIGrader:
    """An OpenAI-compatible `/chat/completions` judge (temperature 0, yes/no verdict)."""

    def __init__(self, cfg: GraderConfig):
        self.cfg = cfg
        self.key = os.environ.get(cfg.api_key_env)
        if not self.key:
            raise RuntimeError(f"grader.kind=openai needs an API key in the environment variable "
                               f"{cfg.api_key_env} (grader.api_key_env); it is never read from a file")

    def _ask(self, content: str) -> str:
        body = json.dumps({"model": self.cfg.model, "temperature": 0, "max_tokens": 3,
                           "messages": [{"role": "user", "content": content}]}).encode()
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        last: Exception | None = None
        for _ in range(self.cfg.max_retries):
            req = urllib.request.Request(url, data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    data = json.loads(resp.read())
                return data["choices"][0]["message"]["content"] or ""
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, json.JSONDecodeError) as e:
                last = e
        raise RuntimeError(f"grader endpoint {url} failed after {self.cfg.max_retries} tries: {last}")

    def grade(self, items: list[GradeItem]) -> list[Grade]:
        out = []
        for it in items:
            if not it.answer.strip():
                out.append(Grade(correct=False, f1=0.0))
                continue
            reply = self._ask(self.cfg.prompt.format(question=it.question, gold=it.gold, answer=it.answer))
            out.append(Grade(correct=normalize(reply).startswith("yes"), f1=token_f1(it.answer, it.gold)))
        return out


def make_grader(cfg: GraderConfig, model=None, tokenizer=None, chat: bool = True) -> Grader:
    if cfg.kind == "match":
        return MatchGrader()
    if cfg.kind == "judge":
        if cfg.judge_model != "policy":
            from seal.models import ModelConfig, load_model, uses_chat

            mcfg = ModelConfig(name=cfg.judge_model)
            model, tokenizer = load_model(mcfg)
            chat = uses_chat(mcfg, tokenizer)
        if model is None:
            raise ValueError("grader.kind=judge with judge_model=policy needs the experiment's model")
        return JudgeGrader(model, tokenizer, cfg.prompt, chat)
    if cfg.kind == "openai":
        return OpenAIGrader(cfg)
    raise ValueError(f"grader.kind: unknown grader '{cfg.kind}' (choose match, judge or openai)")
