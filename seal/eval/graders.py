"""Graders: decide whether a closed-book answer conveys the gold answer.

All graders share one interface, `grade(items) -> list[Grade]`:
- `match` (default): the normalised gold answer is contained in the normalised answer; token F1 is
  reported beside it. Deterministic and free, good for short factual answers.
- `judge`: a frozen local causal LM, named by `judge_model`, is asked a yes/no grading question; the
  verdict is whichever of "yes" and "no" gets more probability as the first answer token (no free-form
  parsing). Never the policy under training: a judge that learns with the policy moves the goalposts
  every round. One copy per name is loaded per process.
- `openai`: any OpenAI-compatible chat endpoint, for parity with the paper's GPT-4.1 judge, through the
  official client. Requests run concurrently; 429/5xx/timeouts/broken replies are retried with
  exponential backoff (honouring Retry-After); 401/403 stop at once. Every verdict is written to a
  disk cache (`seal.eval.judge_cache`) the moment it arrives, so a repeated answer costs nothing and a
  failed run resumes by asking only what is missing. The key is read from the environment variable
  named in the config and never written anywhere.
Empty answers (nothing visible: whitespace, zero-width or other format characters) are always wrong,
without asking anyone.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import string
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import torch

from seal.data.sources import is_blank
from seal.eval.judge_cache import JudgeCache, Verdict, verdict_key
from seal.infra.config import ConfigError, require_at_least


@dataclass(frozen=True)
class GraderConfig:
    kind: str = "match"  # match | judge | openai
    prompt: str = (
        "You are grading a student's answer to a quiz question.\n"
        "Question: {question}\nGold answer: {gold}\nStudent answer: {answer}\n"
        "Does the student answer fully convey the gold answer without contradicting it? Ignore style, "
        "wording and extra detail. Reply with one word: yes or no."
    )
    # judge: a frozen local model (hub id, local folder, smollm2-135m or tiny-random); required, never the policy
    judge_model: str | None = None
    # openai: endpoint and model; the key comes only from the environment variable `api_key_env`
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1-2025-04-14"
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: int = 4  # the verdict is one word; temperature is always 0
    concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # per request
    # retries per item after its first request (429, 5xx, timeout, connection, broken reply); 401/403 stop at once
    max_retries: int = 4
    backoff_s: float = 1.0  # wait before the first retry; doubles each retry (a Retry-After header waits longer)
    backoff_max_s: float = 30.0  # cap on the doubling wait
    # openai: verdict cache, keyed by (model, prompt, question, gold, answer): each verdict is appended to
    # <cache_dir>/verdicts.jsonl as it arrives, so a repeated answer is free and a failed run resumes where it stopped
    cache: bool = True  # false: verdicts live only as long as the grader
    cache_dir: str | None = None  # None: $SEAL_CACHE/judge (default ~/.cache/seal/judge)


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


class GraderError(RuntimeError):
    """A judge could not give a verdict (missing key, endpoint failing after every retry)."""


class GraderAuthError(GraderError):
    """The endpoint refused the key (401/403): retrying cannot help."""


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


def is_empty_answer(answer: str) -> bool:
    """True when the answer shows nothing (whitespace, zero-width or other format characters only)."""
    return is_blank(answer)


EMPTY = Grade(correct=False, f1=0.0)  # the grade of an empty answer, given without asking anyone


def is_yes(reply: str) -> bool:
    return normalize(reply).startswith("yes")


class MatchGrader:
    def grade(self, items: list[GradeItem]) -> list[Grade]:
        return [EMPTY if is_empty_answer(it.answer) else Grade(correct=contains(it.answer, it.gold),
                                                               f1=token_f1(it.answer, it.gold)) for it in items]


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

    def grade(self, items: list[GradeItem]) -> list[Grade]:
        asked = [it for it in items if not is_empty_answer(it.answer)]
        verdicts = iter(self._judge(asked))
        return [EMPTY if is_empty_answer(it.answer) else next(verdicts) for it in items]

    @torch.inference_mode()
    def _judge(self, items: list[GradeItem]) -> list[Grade]:
        from seal.generation.hf import left_padded
        from seal.models.loading import format_prompt, prompt_ids

        grades: list[Grade] = []
        device = next(self.model.parameters()).device
        for s in range(0, len(items), self.batch_size):
            chunk = items[s:s + self.batch_size]
            prompts = [format_prompt(self.tok, self.prompt.format(question=it.question, gold=it.gold,
                                                                  answer=it.answer), self.chat) for it in chunk]
            enc = left_padded(self.tok, [prompt_ids(self.tok, p) for p in prompts]).to(device)
            logits = self.model(**enc).logits[:, -1, :].float()
            probs = logits.softmax(-1)
            p_yes = probs[:, self.yes].sum(-1)
            p_no = probs[:, self.no].sum(-1)
            for it, y, n in zip(chunk, p_yes.tolist(), p_no.tolist()):
                grades.append(Grade(correct=y > n, f1=token_f1(it.answer, it.gold)))
        return grades


_JUDGES: dict[str, tuple] = {}  # judge name -> (model, tokenizer, chat): one frozen copy per process
_JUDGES_LOCK = threading.Lock()


def load_judge(name: str):
    """(model, tokenizer, chat) of the named judge, loaded once per process, gradients off."""
    with _JUDGES_LOCK:
        if name not in _JUDGES:
            from seal.models.loading import ModelConfig, load_model, uses_chat

            mcfg = ModelConfig(name=name)
            model, tok = load_model(mcfg)
            model.requires_grad_(False)
            _JUDGES[name] = (model, tok, uses_chat(mcfg, tok))
        return _JUDGES[name]


class _Retry(Exception):
    """A failed request worth repeating; `wait_s` is the server's Retry-After, if it sent one."""

    def __init__(self, reason: str, wait_s: float | None = None):
        super().__init__(reason)
        self.wait_s = wait_s


class _Stopped(Exception):
    """Another item hit a fatal error; this one gives up before its next request."""


def retry_after_s(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header: a number of seconds or an HTTP-date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _reply_text(body: str) -> str:
    """The assistant's text from a chat-completions body; `_Retry` when the body is broken or empty."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retry("malformed reply (not a chat-completions JSON body)") from None
    if not isinstance(content, str) or not normalize(content):
        raise _Retry(f"reply is neither yes nor no: {str(content)[:40]!r}")
    return content


def judge_cache_dir(cfg: GraderConfig) -> Path:
    from seal.models.loading import cache_root

    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_root() / "judge"


class OpenAIGrader:
    """An OpenAI-compatible `/chat/completions` judge (temperature 0, yes/no verdict), cached on disk.

    `sleep(seconds)` is how retries wait (tests pass a recorder). `stats` counts verdicts served from the cache
    (`hits`, repeats within one batch included), verdicts asked for (`misses`) and HTTP requests sent.
    """

    def __init__(self, cfg: GraderConfig, sleep: Callable[[float], object] | None = None,
                 cache: JudgeCache | None = None):
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise GraderError(f"grader.kind=openai needs an API key in the environment variable "
                              f"{cfg.api_key_env} (grader.api_key_env); it is never read from a file")
        from openai import OpenAI

        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        # the client's own retries are off: `_judge` is the one place that retries
        self.client = OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=0)
        self.cache = cache if cache is not None else JudgeCache(judge_cache_dir(cfg) if cfg.cache else None)
        self.stats: Counter[str] = Counter(hits=0, misses=0, requests=0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # by default a retry waits on the stop event, so a fatal error elsewhere cuts the wait short
        self.sleep = sleep if sleep is not None else self._stop.wait

    def close(self) -> None:
        self.client.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self.client.api_key, "***")

    def _ask(self, content: str) -> str:
        """One request; the reply text, or `_Retry`, `GraderAuthError`, `GraderError`."""
        import openai

        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.cfg.model, temperature=0, max_tokens=self.cfg.max_tokens,
                messages=[{"role": "user", "content": content}])
        except openai.APIStatusError as e:
            status = e.status_code
            if status in (401, 403):
                raise GraderAuthError(f"grader endpoint {self.url} refused the API key (HTTP {status}); check the "
                                      f"key in the environment variable {self.cfg.api_key_env} "
                                      f"(grader.api_key_env)") from None
            if status in (408, 409, 429) or status >= 500:
                raise _Retry(f"HTTP {status}", retry_after_s(e.response.headers.get("retry-after"))) from None
            raise GraderError(f"grader endpoint {self.url} answered HTTP {status}: "
                              f"{self._scrub(e.message)[:300]}") from None
        except openai.APITimeoutError:
            raise _Retry(f"no reply within timeout_s={self.cfg.timeout_s}") from None
        except openai.APIConnectionError as e:
            raise _Retry(f"connection failed: {self._scrub(str(e.__cause__ or e))[:200]}") from None
        return _reply_text(raw.http_response.text)

    def _wait_s(self, retry: int, retry_after: float | None) -> float:
        """Exponential backoff with a little jitter (so concurrent retries spread out), at least Retry-After."""
        backoff = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** retry * random.uniform(1.0, 1.2))
        return max(backoff, retry_after or 0.0)

    def _judge(self, key: str, item: GradeItem) -> Verdict:
        """Ask until a verdict arrives (then cache it at once) or the retries run out."""
        content = self.cfg.prompt.format(question=item.question, gold=item.gold, answer=item.answer)
        reason = ""
        for attempt in range(self.cfg.max_retries + 1):
            if self._stop.is_set():
                raise _Stopped
            with self._lock:
                self.stats["requests"] += 1
            try:
                reply = self._ask(content)
            except _Retry as e:
                reason = str(e)
                if attempt < self.cfg.max_retries:
                    self.sleep(self._wait_s(attempt, e.wait_s))
                continue
            verdict = Verdict(correct=is_yes(reply), reply=reply)
            self.cache.put(key, verdict)
            return verdict
        raise GraderError(f"grader endpoint {self.url} failed after {self.cfg.max_retries + 1} tries "
                          f"(question {item.question[:60]!r}): {reason}")

    def grade(self, items: list[GradeItem]) -> list[Grade]:
        keys = [verdict_key(self.cfg.model, self.cfg.prompt, it.question, it.gold, it.answer) for it in items]
        todo: dict[str, GradeItem] = {}
        for it, k in zip(items, keys):
            if is_empty_answer(it.answer):
                continue
            if k in todo or self.cache.get(k) is not None:
                self.stats["hits"] += 1
            else:
                todo[k] = it
                self.stats["misses"] += 1
        if todo:
            self._run(todo)
        out = []
        for it, k in zip(items, keys):
            if is_empty_answer(it.answer):
                out.append(EMPTY)
                continue
            verdict = self.cache.get(k)
            out.append(Grade(correct=verdict is not None and verdict.correct, f1=token_f1(it.answer, it.gold)))
        return out

    def _run(self, todo: dict[str, GradeItem]) -> None:
        """Judge every item; on a fatal error, let requests in flight finish (their verdicts are cached), then raise."""
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.cfg.concurrency, len(todo))),
                                  thread_name_prefix="seal-judge")
        try:
            futures = [pool.submit(self._judge, k, it) for k, it in todo.items()]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            self._stop.set()  # all done, or one item failed (or an interrupt): the rest stop before their next try
            pool.shutdown(wait=True, cancel_futures=True)
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        errors = [e for e in errors if not isinstance(e, _Stopped)]
        if errors:
            raise next((e for e in errors if isinstance(e, GraderAuthError)), errors[0])


def _check_openai(cfg: GraderConfig) -> None:
    require_at_least(cfg, "grader", ("concurrency", "max_tokens"), 1)
    require_at_least(cfg, "grader", ("max_retries", "backoff_s", "backoff_max_s"), 0)
    if cfg.timeout_s <= 0:
        raise ConfigError(f"grader.timeout_s must be positive, got {cfg.timeout_s}")


def make_grader(cfg: GraderConfig, model=None, tokenizer=None, chat: bool = True) -> Grader:
    """The grader `cfg` names. `model`, `tokenizer` and `chat` are accepted for old callers and unused:
    a judge is always its own frozen model, never the policy being trained."""
    if cfg.kind not in GRADERS:
        raise ValueError(f"grader.kind: unknown grader '{cfg.kind}' (choose {', '.join(GRADERS)})")
    return GRADERS[cfg.kind](cfg)


def _judge(cfg: GraderConfig) -> JudgeGrader:
    if not cfg.judge_model or cfg.judge_model.strip().lower() == "policy":
        raise ConfigError("grader.judge_model must name a frozen judge model (hub id, local folder, or "
                          "smollm2-135m / tiny-random); the policy under training can't judge itself")
    judge, judge_tok, judge_chat = load_judge(cfg.judge_model)
    return JudgeGrader(judge, judge_tok, cfg.prompt, judge_chat)


def _openai(cfg: GraderConfig) -> OpenAIGrader:
    _check_openai(cfg)
    return OpenAIGrader(cfg)


# grader.kind -> constructor; a new grader is a class with `grade(items)` and one entry here
GRADERS: dict[str, Callable[[GraderConfig], Grader]] = {"match": lambda cfg: MatchGrader(), "judge": _judge,
                                                         "openai": _openai}
