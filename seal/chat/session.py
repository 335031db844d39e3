"""Learning while chatting: a chat session whose model keeps what it is told (REFERENCE §3).

    from seal.chat.session import Session
    from seal.chat.config import SessionConfig
    s = Session(SessionConfig())               # loads the latest committed adapter version
    s.learn("The capital of Zorblatia is Quenmoor.")   # -> LearnResult (committed or rejected, with figures)
    s.ask("What is the capital of Zorblatia?")
    s.undo(); s.history(); s.status()
    s.export("my_adapter")                    # the active version as one PEFT adapter folder

`Session` coordinates: it holds the chat model and the active version (ask, undo, checkout,
history, status, export) and queues learning requests, one at a time, for the learner, which works on a
private copy of the model so the chat stays usable meanwhile (`chat.background`):
1. moderation (`seal.chat.moderation`; the default refuses empty, huge or binary content and says why);
2. probes: questions about the content with answers copied from it (model-written and kept only
   when the answer is found in the content, or given by the user), topped up with cloze probes
   (`seal.chat.probe_writing`);
3. a self-edit of the content (`self_edit.format`) -> training documents (`seal.domains.knowledge.self_edit`);
4. one inner loop (LoRA) with replay of earlier accepted content and the configured schedule
   (`seal.chat.learner`);
5. the gate (`seal.chat.gate`): by likelihood, the probes must gain at least `gate.min_gain`
   nats per answer token, the probes of earlier accepted content may lose at most
   `gate.max_retention_drop`, general-text perplexity may rise at most `gate.max_ppl_increase`;
   on greedy answers (`seal.chat.edit_gate`), at least `gate.min_locality` of the held-out
   general-knowledge questions the base model knew must still be answered right, and at most
   `gate.max_bleed` of the bleed questions answered with the content's new names (reliability of the
   probe questions is reported; `gate.min_reliability` can require it);
6. commit a new version to the `AdapterStore` (atomic, with source, time, gain, retention), or
   reject with the measured reason. The chat model picks up a commit before its next reply.

A committed version keeps the learned text in full, as plain text, in its `meta.json` (content,
training documents, probes): later updates rehearse it and check they keep it. Version folders
are readable only by their owner; `seal-chat` says so the first time it learns a file.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import torch

from seal.chat.adapter_store import BASE, AdapterStore, StoreError, apply_adapter
from seal.chat.config import SessionConfig, adapter_scale, check_self_edit
from seal.chat.edit_gate import EditChecks, distill_replies
from seal.chat.gate import Gate, LearnResult, everyday_replies, split_everyday
from seal.chat.learner import NAMED_SOURCES, Learner, Replay
from seal.chat.moderation import DefaultModerator, LearnRefused, Moderator
from seal.chat.scoped_memory import ScopedMemory
from seal.generation.hf import HFGenerator
from seal.infra.config import derive_seed
from seal.inner_loop.multi_lora import target_layers
from seal.inner_loop.replay import general_corpus, load_corpus
from seal.inner_loop.trainer import InnerLoop
from seal.models.loading import load_model, model_folder, prompt_ids, uses_chat


class Session:
    """A chat whose knowledge persists in an adapter store; see the module docstring."""

    def __init__(self, cfg: SessionConfig, moderator: Moderator | None = None,
                 on_event: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.moderator = moderator or DefaultModerator(cfg.chat.moderation)
        self.on_event = on_event or (lambda stage, message: None)
        self.scale = adapter_scale(cfg.inner_loop)
        check_self_edit(cfg)  # before the model loads
        self.model, self.tok = load_model(cfg.model)
        self.chat = uses_chat(cfg.model, self.tok)
        self.device = next(self.model.parameters()).device
        # the PEFT folders name the model the chat loaded: a hub id, a folder, or the embedded model's cache
        self.store = AdapterStore(cfg.chat.store, cfg.model.name, model_folder(cfg.model) or cfg.model.name)
        self.base = {n: m.weight.detach().clone() for n, m in target_layers(self.model, cfg.inner_loop.target_modules,
                                                                       cfg.inner_loop.layers_to_transform)}
        self.shapes = {n: tuple(w.shape) for n, w in self.base.items()}  # what a stored adapter must fit
        if cfg.chat.background:  # the learner trains its own copy; the chat model only receives commits
            self.learner_model, learner_tok = copy.deepcopy(self.model), copy.deepcopy(self.tok)
        else:
            self.learner_model, learner_tok = self.model, self.tok
        # chat.memory=scoped: each learned content's adapter applies only to prompts naming it (seal.chat.scoped_memory)
        self.memory = ScopedMemory(self.model, self.tok)
        learner_memory = (self.memory if self.learner_model is self.model
                          else ScopedMemory(self.learner_model, learner_tok))
        inner = InnerLoop(self.learner_model, learner_tok,
                          replace(cfg.inner_loop, adapters_per_batch=1, scheduler=cfg.chat.scheduler))
        corpus, n = general_corpus(), cfg.chat.gate.general_docs  # the gate's probe is the last n; replay the rest
        files = [d for src in cfg.chat.replay_sources if src not in NAMED_SOURCES for d in load_corpus(src)]
        self.messages: list[dict] = []
        # from the base weights, before any version is loaded
        replay_chat, chat_probes = split_everyday(everyday_replies(self.store, HFGenerator(self.model, self.tok),
                                                                   self.tok, self.chat))
        g, system = cfg.chat.gate, cfg.chat.system_prompt
        checks = None
        if g.locality_questions or g.bleed_questions or g.min_reliability > 0:
            checks = EditChecks.for_base(self.model, self.tok, g, self.chat, system, self.store)
        distill = (distill_replies(self.store, self.model, self.tok, g, self.chat, system)
                   if "distill" in cfg.chat.replay_sources else [])
        self.learner = Learner(inner, learner_tok, self.chat, self.scale,
                               Gate(self.learner_model, learner_tok, inner.device, corpus[-n:], chat_probes),
                               Replay(corpus[:-n], replay_chat, files, distill), self._event, checks,
                               learner_memory)
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

    # ------------------------------------------------------------------ versions

    def _read_chain(self, version: str | None) -> list[tuple[str, dict, float]]:
        """(version, tensors, scale) of every version on the chain of `version`, each checked against the
        model: a tampered or corrupt version is refused here, before any weight changes."""
        return [(v, *self.store.adapter(v, self.shapes, self.scale)) for v in self.store.chain(version)]

    def _apply_chain(self, chain: list[tuple[str, dict, float]], version: str | None) -> None:
        """Both models to base + the adapters of `chain` (from `_read_chain(version)`): merged into the
        weights, or, for a version learned with `chat.memory=scoped`, added to the model's scoped memory."""
        memories = {id(self.memory): self.memory, id(self.learner.memory): self.learner.memory}
        models = [self.model] if self.learner_model is self.model else [self.model, self.learner_model]
        for model in models:
            modules = dict(model.named_modules())
            with torch.no_grad():
                for name, w in self.base.items():
                    modules[name].weight.copy_(w)
        for memory in memories.values():
            memory.clear()
        for v, tensors, scale in chain:
            self._install(v, tensors, scale, models, list(memories.values()))
        self.version = version
        self.messages = []  # an answer given under other weights is no longer this model's

    def _install(self, version: str, tensors: dict, scale: float, models: list, memories: list[ScopedMemory]) -> None:
        """One committed version into `models`: merged into their weights, or, learned with
        `chat.memory=scoped`, added to their scoped `memories`."""
        scope = self.store.meta(version).get("scope")
        for model in (models if scope is None else []):
            apply_adapter(model, tensors, scale)
        for memory in (memories if scope is not None else []):
            memory.add(version, scope, tensors, scale)

    def _load(self, version: str | None) -> None:
        self._apply_chain(self._read_chain(version), version)

    def _sync(self) -> None:
        """Merge commits the learner made since the last reply into the chat model."""
        with self._lock:
            pending, self._pending = self._pending, []
        for v in pending:
            if self.learner_model is not self.model:
                self._install(v, *self.store.adapter(v, self.shapes, self.scale), [self.model], [self.memory])
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

    def export(self, out: str, version: str | None = None) -> str:
        """Write the model state of `version` (default: the active one) as one PEFT adapter folder `out`,
        loadable with `PeftModel.from_pretrained(base, out)` or served by vLLM; returns the folder."""
        self._sync()
        version = version or self.version
        if version is None:
            raise StoreError("nothing to export: the base model is active")
        return str(self.store.export(version, out, self.shapes, self.scale))

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
        return self._submit(lambda holding: self.learner.learn(self.cfg, self.store, holding, content, probes,
                                                               source), wait)

    def learn_examples(self, examples: list[tuple[str, str]], probes: list[tuple[str, str]], source: str = "examples",
                       documents: list[str] | None = None, wait: bool = True) -> LearnResult | Future:
        """Learn from demonstrations: (request, response) pairs trained as chat turns, plus any
        reference `documents` (e.g. an API's docs), with the configured replay; `probes` (held-out
        pairs) gate the update. Without replay the loss is on the responses only; with replay the
        texts are packed whole (`seal.inner_loop.replay`). Demonstrations teach a behaviour, not named
        content, so the update is merged into the weights whatever `chat.memory` says."""
        if not examples or not probes:
            raise LearnRefused(f"not learned ({source}): learning from examples needs examples and probe examples")
        for req, resp in examples:
            reason = self.moderator.check(req + "\n" + resp)
            if reason:
                raise LearnRefused(f"not learned ({source}): example '{req[:40]}': {reason}")
        return self._submit(lambda holding: self.learner.learn_examples(self.cfg, self.store, holding, examples,
                                                                        probes, source, documents or []), wait)

    def _submit(self, job: Callable[[str | None], LearnResult], wait: bool) -> LearnResult | Future:
        """Run `job` in the learner thread (or here, with chat.background=false); it gets the version
        the learner model holds, and a version it commits is queued for the chat model."""
        with self._lock:
            self._queued += 1

        def run() -> LearnResult:
            try:
                with self._lock:
                    holding = self._pending[-1] if self._pending else self.version
                result = job(holding)
                if result.accepted:
                    with self._lock:
                        self._pending.append(result.version)
                return result
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

    def close(self) -> None:
        self._executor.shutdown(wait=True)
