"""The learning pipeline of a chat session, run on the learner's model: probes and training
documents from the content (self-edit, name questions, chunks), replay of earlier accepted content
and other sources, one inner-loop update, the gate (`seal.chat.gate`, with its greedy-answer checks
`seal.chat.edit_gate`), and commit or reject (`chat.gate.report_only`: commit, reporting objections)."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from seal.chat.adapter_store import AdapterStore
from seal.chat.config import ChatConfig, SessionConfig
from seal.chat.edit_gate import EditChecks, eval_config, qa_pairs
from seal.chat.gate import Gate, LearnResult, judge
from seal.chat.probe_writing import cloze_probes, name_questions, parse_probe_pairs, probe_request, qa_probe
from seal.chat.scoped_memory import ScopedMemory, name_pattern, scope_names
from seal.data.passage import Passage
from seal.domains.knowledge.self_edit import SelfEditError, completion_to_documents, self_edit_prompt
from seal.eval.edit_eval import reliability
from seal.eval.graders import MatchGrader
from seal.eval.probes import Probe
from seal.generation.hf import HFGenerator, SamplingConfig
from seal.infra.config import derive_seed
from seal.inner_loop.trainer import InnerLoop, InnerLoopError, TrainJob
from seal.models.loading import format_prompt

# `chat.replay_sources` entries that are not file paths; distill: the base model's own answers to the replay
# part of the locality bank (`seal.chat.edit_gate.distill_replies`), never to a question the gate asks
NAMED_SOURCES = ("general", "accepted", "chat", "distill")


@dataclass
class Replay:
    """Replay documents of the sources other than accepted content (which grows with every commit)."""
    general: list[str]
    chat: list[str]
    files: list[str]
    distill: list[str] = field(default_factory=list)

    def job_args(self, c: ChatConfig, accepted: list[str], seed: int) -> dict:
        """Replay documents with an equal share of characters per source: the general corpus is
        large and the everyday replies are few, so a plain union would replay general text only."""
        named = (("general", self.general), ("accepted", accepted), ("chat", self.chat), ("distill", self.distill))
        sources = [docs for name, docs in named if name in c.replay_sources and docs]
        sources += [self.files] if self.files else []
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


class Learner:
    """Turns a learning request into one gated update of the inner loop's model. Each call gets the
    session's config and store, and the version the model holds (`holding`), at the time it runs."""

    def __init__(self, inner: InnerLoop, tok, chat: bool, scale: float, gate: Gate, replay: Replay,
                 on_event: Callable[[str, str], None], checks: EditChecks | None = None,
                 memory: ScopedMemory | None = None):
        self.inner, self.tok, self.chat, self.scale = inner, tok, chat, scale
        self.gen = HFGenerator(inner.model, tok)
        self.gate, self.replay, self.event, self.checks = gate, replay, on_event, checks
        self.memory = memory if memory is not None else ScopedMemory(inner.model, tok)

    def learn(self, cfg: SessionConfig, store: AdapterStore, holding: str | None, content: str,
              given: list[tuple[str, str]] | None, source: str) -> LearnResult:
        seed = derive_seed(cfg.seed, "learn", hashlib.sha256(content.encode()).hexdigest())
        scope = None
        if cfg.chat.memory == "scoped":
            scope = scope_names(content, self.tok, format_prompt(self.tok, "", self.chat, cfg.chat.system_prompt))
        if scope == []:
            return LearnResult(False, "rejected: chat.memory=scoped applies what it learns only to prompts that "
                                      "name it, and this content names no one and nothing (no capitalised name); "
                                      "chat.memory=merged learns it into every answer")
        self.event("probes", "writing probe questions")
        probes = [self._qa_probe(cfg, q, a) for q, a in given] if given else self._write_probes(cfg, content, seed)
        if scope:  # a probe whose prompt names none of the scope is answered by the base model: it measures nothing
            pattern = name_pattern(scope)
            probes = [p for p in probes if pattern.search(p.prompt)]
            if not probes:
                return LearnResult(False, f"rejected: chat.memory=scoped uses this content only for prompts naming "
                                          f"{', '.join(scope)}, and no probe question names them")
        self.event("self-edit", "writing a self-edit")
        docs, self_edit = self._documents(cfg, content, derive_seed(seed, "self_edit"))
        named = [self._qa_probe(cfg, q, a) for q, a in name_questions(content)] if cfg.chat.name_questions else []
        docs += [(p.prompt, p.answer) for p in named]
        earlier, accepted = _earlier(store, holding)
        # scoped: earlier contents keep adapters of their own, so rehearsing them here would only cost steps
        job = TrainJob(docs, derive_seed(seed, "train"), stop_after_epoch=self._stop_rule(cfg, probes),
                       **self.replay.job_args(cfg.chat, [] if scope else accepted, derive_seed(seed, "replay")))
        return self._train_and_gate(cfg, store, job, probes, earlier, source, content, {"self_edit": self_edit},
                                    retention=probes + named, scope=scope)

    def learn_examples(self, cfg: SessionConfig, store: AdapterStore, holding: str | None,
                       examples: list[tuple[str, str]], given: list[tuple[str, str]], source: str,
                       documents: list[str]) -> LearnResult:
        seed = derive_seed(cfg.seed, "examples", hashlib.sha256(repr(examples).encode()).hexdigest())
        probes = [self._qa_probe(cfg, q, a, "example") for q, a in given]
        pairs = [(format_prompt(self.tok, q, self.chat, cfg.chat.system_prompt), a) for q, a in examples]
        earlier, accepted = _earlier(store, holding)
        replay = self.replay.job_args(cfg.chat, accepted, derive_seed(seed, "replay"))
        if replay:
            job = TrainJob(documents + [p + a for p, a in pairs], derive_seed(seed, "train"), **replay)
        else:
            job = TrainJob(documents + pairs, derive_seed(seed, "train"), completion_only=True)
        content = "\n".join(f"{q} -> {a}" for q, a in examples)
        return self._train_and_gate(cfg, store, job, probes, earlier, source, content, {"examples": len(examples)})

    def _stop_rule(self, cfg: SessionConfig, probes: list[Probe]) -> Callable[[], bool] | None:
        """With `chat.stop_on_probes`: training ends after the first epoch at which every probe question is
        answered right (greedy, graded as the gate's reliability), so an easy fact gets a small update."""
        pairs = qa_pairs(probes)
        if not cfg.chat.stop_on_probes or not pairs:
            return None
        ask_cfg, grader = eval_config(cfg.chat.gate), MatchGrader()
        return lambda: reliability(self.inner.model, self.tok, pairs, grader, ask_cfg, self.chat,
                                   cfg.chat.system_prompt) == 1.0

    def _qa_probe(self, cfg: SessionConfig, question: str, answer: str, kind: str = "qa") -> Probe:
        return qa_probe(self.tok, self.chat, cfg.chat.system_prompt, question, answer, kind)

    def _write_probes(self, cfg: SessionConfig, content: str, seed: int) -> list[Probe]:
        n = cfg.chat.probes
        with self.inner.base_model(), self.memory.off():
            out = self.gen.generate([format_prompt(self.tok, probe_request(content, n), self.chat)],
                                    SamplingConfig(max_new_tokens=48 * n), seed=seed)[0]
        probes = [self._qa_probe(cfg, q, a) for q, a in parse_probe_pairs(out, content)[:n]]
        return probes + cloze_probes(content, n - len(probes))

    def _documents(self, cfg: SessionConfig, content: str, seed: int) -> tuple[list[str], str]:
        c, se = cfg.chat, cfg.self_edit
        if len(content) > c.self_edit_max_chars or not c.self_edit:
            return _chunks(content, c.self_edit_max_chars), ""
        passage = Passage(title="Note", context=content, questions=[])
        prompt = format_prompt(self.tok, self_edit_prompt(passage, se.format, se), self.chat)
        with self.inner.base_model(), self.memory.off():
            text = self.gen.generate([prompt], SamplingConfig(max_new_tokens=se.max_new_tokens,
                                                              temperature=se.temperature, top_p=se.top_p),
                                     seed=seed)[0]
        try:
            docs = completion_to_documents(text, passage, se.format, replace(se, title_prefix=False))
        except SelfEditError:
            docs = [content]
        return docs, text

    def _train_and_gate(self, cfg: SessionConfig, store: AdapterStore, job: TrainJob, probes: list[Probe],
                        earlier: list[Probe], source: str, content: str, extra: dict,
                        retention: list[Probe] | None = None, scope: list[str] | None = None) -> LearnResult:
        """Train, measure, gate, commit or reject. `retention`: the probes later updates must keep
        (default `probes`); `scope`: the names that bring the update in (`chat.memory=scoped`; None: merged)."""
        start, g = time.time(), cfg.chat.gate
        self.event("measure", f"measuring {len(probes)} probe(s), {len(earlier)} earlier probe(s), general text")
        before = self.gate.measure(probes, earlier)
        self.event("train", f"training on {len(job.documents)} document(s)")
        self.inner.reset(job.seed)
        with self.memory.off():  # every update trains on the weights alone, never through scoped adapters
            stats = self.inner.train_many([job])[0]
        if isinstance(stats, InnerLoopError):
            self.inner.reset(job.seed)
            return LearnResult(False, f"rejected: training failed: {stats}", seconds=time.time() - start)
        self.event("gate", "checking the update")
        # merged: the update applies to every row; scoped: only to rows naming the content, as the chat will use it
        candidate = None if scope is None else self.memory.add("candidate", scope, self.inner.lora.slot_state(0),
                                                               self.scale)
        try:
            with self.inner.lora.routing_all(0) if candidate is None else nullcontext():
                after = self.gate.measure(probes, earlier)
                if self.checks is not None:
                    self.event("gate", "asking the probe questions, general questions and bleed questions")
                    edit = self.checks.measure(self.inner.model, self.tok, probes, content)
                else:
                    edit = None
            result, failures = judge(g, probes, earlier, before, after, edit)
            result.documents = len(job.documents)
            if failures and not g.report_only:
                self.inner.reset(job.seed)  # the slot goes back to a no-op: the learner model is unchanged
                if candidate is not None:
                    self.memory.remove(candidate)
                result.reason = "rejected: " + "; ".join(failures)
            else:
                meta = {"source": source, "content": content, "probes": [p.to_dict() for p in probes],
                        "retention_probes": [p.to_dict() for p in (retention or probes)], "chat_drop": result.chat_drop,
                        "documents": [d if isinstance(d, str) else list(d) for d in job.documents],
                        "gain": result.gain, "retention_drop": result.retention_drop, "ppl_before": before.ppl,
                        "ppl_after": after.ppl, "scale": self.scale, "lora_r": cfg.inner_loop.lora_r,
                        "lora_alpha": cfg.inner_loop.lora_alpha, "train": stats.to_dict(),
                        "reliability": result.reliability, "locality": result.locality, "bleed": result.bleed,
                        "gate_failures": failures, **extra, **({} if scope is None else {"scope": scope})}
                version = store.commit(self.inner.lora.slot_state(0), meta)
                if candidate is None:
                    self.inner.lora.merge(0)
                else:  # the weights stay the base's; the adapter lives on in the scoped memory
                    candidate.version, result.scope = version, scope
                    self.inner.reset(job.seed)
                result.accepted, result.version, result.reason = True, version, f"committed {version}"
                if failures:
                    result.reason += " (gate.report_only: the gate would have rejected it: " + "; ".join(failures) + ")"
        except BaseException:  # a failed measurement or commit leaves no candidate behind in the memory
            if candidate is not None and candidate.version == "candidate":
                self.memory.remove(candidate)
            raise
        result.seconds = time.time() - start
        return result


def _earlier(store: AdapterStore, holding: str | None) -> tuple[list[Probe], list[str]]:
    """Probes and training documents of the accepted content of version `holding` and its ancestors. The
    documents (replayed by merged updates) leave out scoped versions: replayed into the weights, their content
    would reach every prompt, which their scope exists to prevent."""
    probes, docs = [], []
    for v in store.chain(holding):
        meta = store.meta(v)
        probes += [Probe(**p) for p in meta.get("retention_probes", meta.get("probes", []))]
        if meta.get("scope") is None:
            docs += [d if isinstance(d, str) else d[0] + d[1] for d in meta.get("documents", [])]
    return probes, docs


def _chunks(text: str, max_chars: int) -> list[str]:
    """Paragraphs joined up to `max_chars` per training document."""
    out, cur = [], ""
    for para in [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]:
        if cur and len(cur) + len(para) + 2 > max_chars:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    return out + ([cur] if cur else [])
