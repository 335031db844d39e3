"""Learning while chatting: a chat session whose model keeps what it is told (REFERENCE §3).

    from seal.chat.session import Session, SessionConfig
    s = Session(SessionConfig())               # loads the latest committed adapter version
    s.learn("The capital of Zorblatia is Quenmoor.")   # -> LearnResult (committed or rejected, with figures)
    s.ask("What is the capital of Zorblatia?")
    s.undo(); s.history(); s.status()

A learning request runs this sequence, one request at a time, on a private copy of the model so
the chat stays usable meanwhile (`chat.background`):
1. moderation (`Moderator`; the default refuses empty, huge or binary content and says why);
2. probes: questions about the content with answers copied from it (model-written and kept only
   when the answer is found in the content, or given by the user), topped up with cloze probes;
3. a self-edit of the content (`self_edit.format`) -> training documents (`seal.self_edit.formats`);
4. one inner loop (LoRA) with replay of earlier accepted content and the configured schedule;
5. the gate, all by likelihood (`seal.eval.probes`): the probes must gain at least `gate.min_gain`
   nats per answer token, the probes of earlier accepted content may lose at most
   `gate.max_retention_drop`, general-text perplexity may rise at most `gate.max_ppl_increase`;
6. commit a new version to the `AdapterStore` (atomic, with source, time, gain, retention), or
   reject with the measured reason. The chat model picks up a commit before its next reply.

A committed version keeps the learned text in full, as plain text, in its `meta.json` (content,
training documents, probes): later updates rehearse it and check they keep it. Version folders
are readable only by their owner; `seal-chat` says so the first time it learns a file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import stat
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import torch

from seal.chat.adapter_store import BASE, MAX_SCALE, AdapterStore, StoreError, apply_adapter
from seal.infra.config import ConfigError, derive_seed
from seal.data.sources import Passage
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, InnerLoopError, TrainJob
from seal.models.loading import ModelConfig, format_prompt, load_model, prompt_ids, uses_chat
from seal.inner_loop.multi_lora import target_layers
from seal.eval.probes import Probe, answer_logprob, perplexity
from seal.inner_loop.replay import general_corpus, load_corpus
from seal.self_edit.formats import SelfEditConfig, SelfEditError, completion_to_documents, self_edit_prompt


class LearnRefused(ValueError):
    """Content refused before any learning (moderation); the message says why."""


class Moderator(Protocol):
    def check(self, text: str) -> str | None:
        """None to accept, else the reason for refusing."""


@dataclass
class ModerationConfig:
    min_chars: int = 3
    max_chars: int = 20_000
    max_control_fraction: float = 0.01  # control characters other than whitespace


class DefaultModerator:
    """Refuses content that is empty, larger than `max_chars`, or not text (NUL bytes, control characters)."""

    def __init__(self, cfg: ModerationConfig):
        self.cfg = cfg

    def check(self, text: str) -> str | None:
        if not text or len(text.strip()) < self.cfg.min_chars:
            return f"the content is empty (fewer than {self.cfg.min_chars} characters)"
        if len(text) > self.cfg.max_chars:
            return f"the content has {len(text):,} characters, more than moderation.max_chars={self.cfg.max_chars:,}"
        if "\x00" in text or "\ufffd" in text:
            return "the content looks binary (NUL bytes or undecodable characters), not text"
        control = sum(1 for c in text if ord(c) < 32 and c not in "\n\r\t")
        if control > self.cfg.max_control_fraction * len(text):
            return f"the content looks binary ({control} control characters in {len(text)})"
        return None


def read_text_file(path: str | Path, max_chars: int) -> str:
    """The text of a file to learn (`/learn-file`), read only as far as moderation could accept it:
    anything but a regular file (a device such as /dev/zero, a FIFO, a folder) is refused before a
    byte is read, and so is a file larger than `max_chars` characters can be in UTF-8."""
    path = Path(path).expanduser()
    limit = 4 * max_chars  # UTF-8 takes at most 4 bytes a character
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise LearnRefused(f"cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LearnRefused(f"{path} is {_file_kind(st.st_mode)}, not a regular file: only text files can be "
                               f"learned")
        data = _read_at_most(fd, limit + 1) if st.st_size <= limit else b""
    finally:
        os.close(fd)
    if st.st_size > limit or len(data) > limit:
        raise LearnRefused(f"{path} is larger than {limit:,} bytes, more than moderation.max_chars={max_chars:,} "
                           f"characters can take; not read")
    return data.decode("utf-8", errors="replace")


def _read_at_most(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def stored_text_notice(store_root: Path) -> str:
    """What happens to learned text, said once before the first file is learned."""
    return (f"[notice] learned text is kept in full, as plain text, in {store_root}/versions/<version>/meta.json "
            f"(content, training documents, probes), so later updates can rehearse it; version folders are "
            f"readable only by you, and /undo keeps them: delete a version's folder to remove its text")


def adapter_scale(cfg: InnerLoopConfig) -> float:
    """The LoRA scale chat adapters are stored with; `ConfigError` outside what the store accepts on load."""
    if cfg.lora_r < 1 or not 0 < cfg.lora_alpha / cfg.lora_r <= MAX_SCALE:
        raise ConfigError(f"inner_loop.lora_alpha / inner_loop.lora_r = {cfg.lora_alpha} / {cfg.lora_r}: seal-chat "
                          f"stores adapters with a scale in (0, {MAX_SCALE:g}]")
    return cfg.lora_alpha / cfg.lora_r


@dataclass
class GateConfig:
    min_gain: float = 0.2  # nats per answer token the new content's probes must gain
    max_retention_drop: float = 0.3  # nats per answer token earlier content's probes may lose
    max_ppl_increase: float = 0.25  # relative rise of general-text perplexity allowed
    max_chat_drop: float = 0.3  # nats per token the base model's own replies to everyday prompts may lose
    general_docs: int = 8  # general-text paragraphs of the perplexity probe


@dataclass
class ChatConfig:
    store: str = "chat_store"  # the adapter store folder
    version: str | None = None  # pin: load this version (and make it HEAD) instead of the latest
    background: bool = True  # learn on a private copy of the model while the chat goes on
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy replies
    history_turns: int = 0  # earlier exchanges in the prompt (SmolLM2-135M copies them; raise for larger models)
    system_prompt: str | None = None
    self_edit: bool = True  # write a self-edit of the content (false: train on the content alone)
    self_edit_max_chars: int = 3000  # longer content is trained on in paragraph chunks, no self-edit
    probes: int = 3  # probes per learned content when the user gives none
    name_questions: bool = True  # also train the content as chat answers to "what do you know about <name>?"
    replay_fraction: float = 0.5  # of every step's tokens, from the replay sources (0: none)
    replay_sources: list[str] = field(default_factory=lambda: ["general", "accepted", "chat"])  # or a file path
    scheduler: str = "infinite"  # the inner loop's schedule for chat updates (seal.inner_loop.schedules)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass
class SessionConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    self_edit: SelfEditConfig = field(default_factory=SelfEditConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    seed: int = 0


@dataclass
class LearnResult:
    accepted: bool
    reason: str
    version: str | None = None
    gain: float | None = None  # nats per answer token on the new probes
    retention_drop: float | None = None  # nats per answer token lost on earlier probes (None: none yet)
    chat_drop: float | None = None  # nats per token lost on the base model's everyday replies
    ppl_before: float | None = None
    ppl_after: float | None = None
    probes: list[dict] = field(default_factory=list)
    documents: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.gain is None:
            return self.reason
        parts = [f"gain {self.gain:+.2f} nats/token on {len(self.probes)} probe(s)"]
        parts.append("retention: no earlier content" if self.retention_drop is None
                     else f"retention drop {self.retention_drop:+.2f} nats/token")
        parts.append(f"everyday replies {self.chat_drop:+.2f} nats/token")
        parts.append(f"general perplexity {self.ppl_before:.1f} -> {self.ppl_after:.1f} "
                     f"({100 * (self.ppl_after / self.ppl_before - 1):+.1f} %)")
        return "; ".join(parts)


_REMEMBER = re.compile(r"^\s*(?:please\s+)?(?:remember|memori[sz]e|keep in mind|note|learn)\s+(?:that\s+)?(?P<c>.+)$",
                       re.IGNORECASE | re.DOTALL)


def remember_request(text: str) -> str | None:
    """The content of a plain-language learning request ("remember that ..."), else None."""
    m = _REMEMBER.match(text)
    if not m or len(m.group("c").split()) < 3:
        return None
    content = m.group("c").strip()
    return content[0].upper() + content[1:]


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'-]+(?:\s+(?:of\s+)?[A-Z][\w'-]+)*)")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def name_questions(content: str, limit: int = 4) -> list[tuple[str, str]]:
    """(question, answer) chat turns asking about each name the content mentions (a capitalised word
    not opening a sentence), answered with the sentences that mention it. Declarative text alone
    teaches a small model to continue the text, not to answer about it in a chat; these turns
    carry the content into the chat format."""
    sentences = _sentences(content)
    names = list(dict.fromkeys(m.group(1) for s in sentences for m in _NAME.finditer(s)))
    out = []
    for name in names[:limit]:
        answer = " ".join(s for s in sentences if name in s)
        out.append((f"What do you know about {name}?", answer))
    return out


def cloze_probes(content: str, n: int) -> list[Probe]:
    """The last words of the content's longest sentences, to be predicted from the rest (raw text)."""
    sentences = [s for s in _sentences(content) if len(s.split()) >= 5]
    out = []
    for s in sorted(sentences, key=lambda s: -len(s.split()))[:n]:
        words = s.rstrip(".!?").split()
        k = max(1, min(3, len(words) // 4))
        out.append(Probe(" ".join(words[:-k]), " " + " ".join(words[-k:]), "cloze", " ".join(words[:-k]) + " ..."))
    return out


_QA_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?(q|a)\s*\d*\s*[:.]\s*(.+)$", re.IGNORECASE)


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def parse_probe_pairs(text: str, content: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from 'Q: ... / A: ...' lines whose answer is found in the content
    and is not already in the question: a model-written probe is kept only if it is checkable."""
    pairs, question = [], None
    for line in text.splitlines():
        m = _QA_LINE.match(line)
        if not m:
            continue
        if m.group(1).lower() == "q":
            question = m.group(2).strip()
        elif question:
            answer = m.group(2).strip().rstrip(".")
            a, c = _norm(answer), _norm(content)
            if a and len(a.split()) <= 12 and f" {a} " in f" {c} " and a not in _norm(question):
                pairs.append((question, answer))
            question = None
    return pairs


# Everyday prompts whose replies by the base model are the chat-behaviour probe (second half) and a
# replay source (first half): an update that changes how the model chats shows up and is rehearsed.
EVERYDAY = ("Can you suggest a name for a pet turtle?", "How do I make a cup of tea?",
            "Write one sentence about the sea.", "What is a good way to start the morning?",
            "Give me a tip for remembering names.", "How should I water a cactus?",
            "Describe a rainy afternoon in one sentence.", "What is a polite way to decline an invitation?")


class Session:
    """A chat whose knowledge persists in an adapter store; see the module docstring."""

    def __init__(self, cfg: SessionConfig, moderator: Moderator | None = None,
                 on_event: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.moderator = moderator or DefaultModerator(cfg.chat.moderation)
        self.on_event = on_event or (lambda stage, message: None)
        self.scale = adapter_scale(cfg.inner_loop)
        self.model, self.tok = load_model(cfg.model)
        self.chat = uses_chat(cfg.model, self.tok)
        self.device = next(self.model.parameters()).device
        self.store = AdapterStore(cfg.chat.store, cfg.model.name)
        self.base = {n: m.weight.detach().clone() for n, m in target_layers(self.model, cfg.inner_loop.target_modules)}
        self.shapes = {n: tuple(w.shape) for n, w in self.base.items()}  # what a stored adapter must fit
        if cfg.chat.background:  # the learner trains its own copy; the chat model only receives commits
            self.learner_model, self.learner_tok = copy.deepcopy(self.model), copy.deepcopy(self.tok)
        else:
            self.learner_model, self.learner_tok = self.model, self.tok
        self.inner = InnerLoop(self.learner_model, self.learner_tok,
                               replace(cfg.inner_loop, adapters_per_batch=1, scheduler=cfg.chat.scheduler))
        self.gen = HFGenerator(self.model, self.tok)
        self.learner_gen = HFGenerator(self.learner_model, self.learner_tok)
        corpus = general_corpus()
        self.general = corpus[-cfg.chat.gate.general_docs:]  # the gate's probe; replay reads the rest
        self.replay_general = corpus[:-cfg.chat.gate.general_docs]
        self.replay_files = [d for src in cfg.chat.replay_sources if src not in ("general", "accepted", "chat")
                             for d in load_corpus(src)]
        self.messages: list[dict] = []
        everyday = self._everyday_replies()  # from the base weights, before any version is loaded
        half = len(everyday) // 2
        self.replay_chat = [p + a for p, a in everyday[:half]]
        self.chat_probes = [Probe(p, a, "chat", q) for (p, a), q in zip(everyday[half:], EVERYDAY[half:])]
        self._lock = threading.Lock()
        self._pending: list[str] = []  # committed versions the chat model has not merged yet
        self._stage: tuple[str, float] | None = None
        self._queued = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seal-learn")
        if cfg.chat.version:
            pinned = None if cfg.chat.version == BASE else cfg.chat.version
            chain = self._read_chain(pinned)  # checked before HEAD moves
            self.store.set_head(pinned)
            self._apply_chain(chain, pinned)
        else:
            self._load(self.store.head())

    def _everyday_replies(self) -> list[tuple[str, str]]:
        """(prompt, base reply) for EVERYDAY, generated once per store and kept in it."""
        path = self.store.root / "everyday.json"
        prompts = [format_prompt(self.tok, q, self.chat) for q in EVERYDAY]  # the model's own default behaviour
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
                if [c[0] for c in cached] == prompts and all(isinstance(c[1], str) for c in cached):
                    return [(c[0], c[1]) for c in cached]
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                pass  # a cache: a corrupt copy is written again below
        replies = self.gen.generate(prompts, SamplingConfig(max_new_tokens=48))
        pairs = [(p, r if r.strip() else ".") for p, r in zip(prompts, replies)]
        self.store.write_text(path, json.dumps(pairs, indent=1))
        return pairs

    # ------------------------------------------------------------------ versions

    def _read_chain(self, version: str | None) -> list[tuple[dict, float]]:
        """(tensors, scale) of every version on the chain of `version`, each checked against the model:
        a tampered or corrupt version is refused here, before any weight changes."""
        return [self.store.adapter(v, self.shapes, self.scale) for v in self.store.chain(version)]

    def _apply_chain(self, chain: list[tuple[dict, float]], version: str | None) -> None:
        """Both models to base + the adapters of `chain` (from `_read_chain(version)`)."""
        models = [self.model] if self.learner_model is self.model else [self.model, self.learner_model]
        for model in models:
            modules = dict(model.named_modules())
            with torch.no_grad():
                for name, w in self.base.items():
                    modules[name].weight.copy_(w)
            for tensors, scale in chain:
                apply_adapter(model, tensors, scale)
        self.version = version
        self.messages = []  # an answer given under other weights is no longer this model's

    def _load(self, version: str | None) -> None:
        self._apply_chain(self._read_chain(version), version)

    def _sync(self) -> None:
        """Merge commits the learner made since the last reply into the chat model."""
        with self._lock:
            pending, self._pending = self._pending, []
        for v in pending:
            if self.learner_model is not self.model:
                apply_adapter(self.model, *self.store.adapter(v, self.shapes, self.scale))
            self.version = v

    def busy(self) -> bool:
        return self._queued > 0

    def _require_idle(self, what: str) -> None:
        if self.busy():
            raise StoreError(f"cannot {what} while learning is in progress ({self._queued} request(s)); try again "
                             f"when it has finished")

    def undo(self) -> tuple[str, str | None]:
        """Roll back the last commit; returns (undone version, version now active)."""
        self._require_idle("undo")
        self._sync()
        head = self.store.head()
        parent = self.store.meta(head).get("parent") if head else None
        chain = self._read_chain(parent)  # checked before HEAD moves
        undone, now = self.store.undo()
        self._apply_chain(chain, now)
        return undone, now

    def checkout(self, version: str | None) -> None:
        """Pin `version` (None: the base model) as the active and HEAD version."""
        self._require_idle("switch versions")
        self._sync()
        chain = self._read_chain(version)  # checked before HEAD moves
        self.store.set_head(version)
        self._apply_chain(chain, version)

    def history(self) -> list[dict]:
        """Committed versions, oldest first, each with `active` and `in_chain` (part of the active state)."""
        self._sync()
        chain = set(self.store.chain(self.version))
        return [{**self.store.meta(v), "active": v == self.version, "in_chain": v in chain}
                for v in self.store.versions()]

    def status(self) -> dict:
        self._sync()
        stage = None
        if self._stage:
            stage = f"{self._stage[0]} ({time.time() - self._stage[1]:.0f} s)"
        return {"model": self.cfg.model.name, "store": str(self.store.root), "version": self.version or "base",
                "versions": len(self.store.versions()), "learning": stage, "queued": self._queued}

    # ------------------------------------------------------------------ chat

    def ask(self, text: str, stream: Callable[[str], None] | None = None, remember: bool = True) -> str:
        """Reply to `text` with the current weights (closed-book: learned content is not in the prompt)."""
        self._sync()
        c = self.cfg.chat
        history = self.messages[-2 * c.history_turns:] if c.history_turns else []
        messages = ([{"role": "system", "content": c.system_prompt}] if c.system_prompt else []) + history
        messages.append({"role": "user", "content": text})
        if self.chat:
            prompt = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        reply = self._generate(prompt, stream)
        if remember:
            self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
        return reply

    @torch.inference_mode()
    def _generate(self, prompt: str, stream: Callable[[str], None] | None) -> str:
        from transformers import TextStreamer

        class _Callback(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text and stream:
                    stream(text)

        ids = torch.tensor([prompt_ids(self.tok, prompt)], device=self.device)
        enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        greedy = self.cfg.chat.temperature <= 0
        kwargs = {"max_new_tokens": self.cfg.chat.max_new_tokens, "do_sample": not greedy,
                  "pad_token_id": self.tok.pad_token_id}
        kwargs.update({"temperature": None, "top_p": None, "top_k": None} if greedy
                      else {"temperature": self.cfg.chat.temperature, "top_p": 0.95, "top_k": 0})
        streamer = _Callback(self.tok, skip_prompt=True, skip_special_tokens=True) if stream else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.cfg.seed, "reply", len(self.messages)))
            out = self.model.generate(**enc, streamer=streamer, **kwargs)
        return self.tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    # ------------------------------------------------------------------ learning

    def learn(self, content: str, probes: list[tuple[str, str]] | None = None, source: str = "api",
              wait: bool = True) -> LearnResult | Future:
        """Learn `content`; `probes` are (question, answer) pairs to gate on (default: written from
        the content). Moderation runs at once (LearnRefused); the rest runs in the learner thread."""
        reason = self.moderator.check(content)
        if reason:
            raise LearnRefused(f"not learned ({source}): {reason}")
        return self._submit(lambda: self._learn(content, probes, source), wait)

    def learn_examples(self, examples: list[tuple[str, str]], probes: list[tuple[str, str]], source: str = "examples",
                       documents: list[str] | None = None, wait: bool = True) -> LearnResult | Future:
        """Learn from demonstrations: (request, response) pairs trained as chat turns, plus any
        reference `documents` (e.g. an API's docs), with the configured replay; `probes` (held-out
        pairs) gate the update. Without replay the loss is on the responses only; with replay the
        texts are packed whole (`seal.inner_loop.replay`)."""
        if not examples or not probes:
            raise LearnRefused(f"not learned ({source}): learning from examples needs examples and probe examples")
        for req, resp in examples:
            reason = self.moderator.check(req + "\n" + resp)
            if reason:
                raise LearnRefused(f"not learned ({source}): example '{req[:40]}': {reason}")
        return self._submit(lambda: self._learn_examples(examples, probes, source, documents or []), wait)

    def _submit(self, job: Callable[[], LearnResult], wait: bool) -> LearnResult | Future:
        with self._lock:
            self._queued += 1

        def run() -> LearnResult:
            try:
                return job()
            finally:
                self._stage = None
                with self._lock:
                    self._queued -= 1

        if self.learner_model is self.model:  # chat.background=false: learn in the caller's thread
            future: Future = Future()
            future.set_result(run())
        else:
            future = self._executor.submit(run)
        return future.result() if wait else future

    def wait(self) -> None:
        """Block until every queued learning request has finished."""
        self._executor.submit(lambda: None).result()

    def _event(self, stage: str, message: str) -> None:
        self._stage = (stage, time.time())
        self.on_event(stage, message)

    def _qa_probe(self, question: str, answer: str, kind: str = "qa") -> Probe:
        prompt = format_prompt(self.learner_tok, question, self.chat, self.cfg.chat.system_prompt)
        return Probe(prompt, (" " if not self.chat else "") + answer, kind, question)

    def _write_probes(self, content: str, seed: int) -> list[Probe]:
        n = self.cfg.chat.probes
        ask = (f"Read the text below, then write {n} short questions that it answers. Write each question on a "
               f"line starting with 'Q:' and, on the next line starting with 'A:', its answer copied word for word "
               f"from the text.\n\nText: {content}")
        with self.inner.base_model():
            out = self.learner_gen.generate([format_prompt(self.learner_tok, ask, self.chat)],
                                            SamplingConfig(max_new_tokens=48 * n), seed=seed)[0]
        probes = [self._qa_probe(q, a) for q, a in parse_probe_pairs(out, content)[:n]]
        return probes + cloze_probes(content, n - len(probes))

    def _documents(self, content: str, seed: int) -> tuple[list[str], str]:
        c, se = self.cfg.chat, self.cfg.self_edit
        if len(content) > c.self_edit_max_chars or not c.self_edit:
            return _chunks(content, c.self_edit_max_chars), ""
        passage = Passage(title="Note", context=content, questions=[])
        prompt = format_prompt(self.learner_tok, self_edit_prompt(passage, se.format, se), self.chat)
        with self.inner.base_model():
            text = self.learner_gen.generate([prompt], SamplingConfig(max_new_tokens=se.max_new_tokens,
                                                                      temperature=se.temperature, top_p=se.top_p),
                                             seed=seed)[0]
        try:
            docs = completion_to_documents(text, passage, se.format, replace(se, title_prefix=False))
        except SelfEditError:
            docs = [content]
        return docs, text

    def _earlier(self) -> tuple[list[Probe], list[str]]:
        """Probes and training documents of the accepted content the learner model holds now."""
        probes, docs = [], []
        with self._lock:
            version = self._pending[-1] if self._pending else self.version
        for v in self.store.chain(version):
            meta = self.store.meta(v)
            probes += [Probe(**p) for p in meta.get("retention_probes", meta.get("probes", []))]
            docs += [d if isinstance(d, str) else d[0] + d[1] for d in meta.get("documents", [])]
        return probes, docs

    def _replay(self, accepted: list[str], seed: int) -> dict:
        """Replay documents with an equal share of characters per source: the general corpus is
        large and the everyday replies are few, so a plain union would replay general text only."""
        c = self.cfg.chat
        sources = [docs for name, docs in (("general", self.replay_general), ("accepted", accepted),
                                           ("chat", self.replay_chat)) if name in c.replay_sources and docs]
        sources += [self.replay_files] if self.replay_files else []
        if not sources or c.replay_fraction <= 0:
            return {}
        share = max(min(sum(map(len, docs)) for docs in sources), 2000)
        rng, out = random.Random(seed), []
        for docs in sources:
            order, n = list(docs), 0
            rng.shuffle(order)
            while n < share:
                for d in order:
                    out.append(d)
                    n += len(d)
                    if n >= share:
                        break
        return {"replay": out, "replay_fraction": c.replay_fraction}

    def _measure(self, probes: list[Probe], earlier: list[Probe]) -> tuple[list[float], list[float], float]:
        m, tok, dev = self.learner_model, self.learner_tok, self.inner.device
        return (answer_logprob(m, tok, probes, dev), answer_logprob(m, tok, earlier, dev),
                answer_logprob(m, tok, self.chat_probes, dev), perplexity(m, tok, self.general, dev))

    def _learn(self, content: str, given: list[tuple[str, str]] | None, source: str) -> LearnResult:
        seed = derive_seed(self.cfg.seed, "learn", hashlib.sha256(content.encode()).hexdigest())
        self._event("probes", "writing probe questions")
        probes = [self._qa_probe(q, a) for q, a in given] if given else self._write_probes(content, seed)
        self._event("self-edit", "writing a self-edit")
        docs, self_edit = self._documents(content, derive_seed(seed, "self_edit"))
        named = [self._qa_probe(q, a) for q, a in name_questions(content)] if self.cfg.chat.name_questions else []
        docs += [(p.prompt, p.answer) for p in named]
        earlier, accepted = self._earlier()
        job = TrainJob(docs, derive_seed(seed, "train"), **self._replay(accepted, derive_seed(seed, "replay")))
        return self._train_and_gate(job, probes, earlier, source, content, {"self_edit": self_edit},
                                    retention=probes + named)

    def _learn_examples(self, examples, given, source, documents: list[str]) -> LearnResult:
        seed = derive_seed(self.cfg.seed, "examples", hashlib.sha256(repr(examples).encode()).hexdigest())
        probes = [self._qa_probe(q, a, "example") for q, a in given]
        pairs = [(format_prompt(self.learner_tok, q, self.chat, self.cfg.chat.system_prompt), a) for q, a in examples]
        earlier, accepted = self._earlier()
        replay = self._replay(accepted, derive_seed(seed, "replay"))
        if replay:
            job = TrainJob(documents + [p + a for p, a in pairs], derive_seed(seed, "train"), **replay)
        else:
            job = TrainJob(documents + pairs, derive_seed(seed, "train"), completion_only=True)
        content = "\n".join(f"{q} -> {a}" for q, a in examples)
        return self._train_and_gate(job, probes, earlier, source, content, {"examples": len(examples)})

    def _train_and_gate(self, job: TrainJob, probes: list[Probe], earlier: list[Probe], source: str, content: str,
                        extra: dict, retention: list[Probe] | None = None) -> LearnResult:
        """Train, measure, gate, commit or reject. `retention`: the probes later updates must keep
        (default `probes`)."""
        start, g = time.time(), self.cfg.chat.gate
        self._event("measure", f"measuring {len(probes)} probe(s), {len(earlier)} earlier probe(s), general text")
        before = self._measure(probes, earlier)
        self._event("train", f"training on {len(job.documents)} document(s)")
        self.inner.reset(job.seed)
        stats = self.inner.train_many([job])[0]
        if isinstance(stats, InnerLoopError):
            self.inner.reset(job.seed)
            return LearnResult(False, f"rejected: training failed: {stats}", seconds=time.time() - start)
        self._event("gate", "checking the update")
        with self.inner.lora.routing_all(0):
            after = self._measure(probes, earlier)
        gain = statistics.fmean(a - b for a, b in zip(after[0], before[0]))
        drop = statistics.fmean(b - a for a, b in zip(after[1], before[1])) if earlier else None
        chat_drop = statistics.fmean(b - a for a, b in zip(after[2], before[2]))
        result = LearnResult(False, "", gain=gain, retention_drop=drop, chat_drop=chat_drop,
                             ppl_before=before[3], ppl_after=after[3],
                             probes=[{**p.to_dict(), "before": b, "after": a}
                                     for p, b, a in zip(probes, before[0], after[0])],
                             documents=len(job.documents))
        failures = []
        if gain < g.min_gain:
            failures.append(f"the probes gained {gain:+.2f} nats/token, less than gate.min_gain={g.min_gain}")
        if drop is not None and drop > g.max_retention_drop:
            failures.append(f"earlier content lost {drop:.2f} nats/token, more than "
                            f"gate.max_retention_drop={g.max_retention_drop}")
        if chat_drop > g.max_chat_drop:
            failures.append(f"everyday replies lost {chat_drop:.2f} nats/token, more than "
                            f"gate.max_chat_drop={g.max_chat_drop}")
        rise = after[3] / before[3] - 1
        if rise > g.max_ppl_increase:
            failures.append(f"general-text perplexity rose {100 * rise:.1f} %, more than "
                            f"gate.max_ppl_increase={100 * g.max_ppl_increase:.0f} %")
        if failures:
            self.inner.reset(job.seed)  # the slot goes back to a no-op: the learner model is unchanged
            result.reason = "rejected: " + "; ".join(failures)
        else:
            meta = {"source": source, "content": content, "probes": [p.to_dict() for p in probes],
                    "retention_probes": [p.to_dict() for p in (retention or probes)], "chat_drop": chat_drop,
                    "documents": [d if isinstance(d, str) else list(d) for d in job.documents],
                    "gain": gain, "retention_drop": drop, "ppl_before": before[3], "ppl_after": after[3],
                    "scale": self.scale, "lora_r": self.cfg.inner_loop.lora_r,
                    "lora_alpha": self.cfg.inner_loop.lora_alpha, "train": stats.to_dict(), **extra}
            version = self.store.commit(self.inner.lora.slot_state(0), meta)
            self.inner.lora.merge(0)
            with self._lock:
                self._pending.append(version)
            result.accepted, result.version, result.reason = True, version, f"committed {version}"
        result.seconds = time.time() - start
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _chunks(text: str, max_chars: int) -> list[str]:
    """Paragraphs joined up to `max_chars` per training document."""
    out, cur = [], ""
    for para in [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]:
        if cur and len(cur) + len(para) + 2 > max_chars:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    return out + ([cur] if cur else [])
