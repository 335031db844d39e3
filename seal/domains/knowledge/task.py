"""The knowledge-incorporation task as building blocks shared by recipes (`ki_eval`, `restem`).

`KnowledgeTask` holds one resident model with its inner-loop adapter, a generator and a grader,
and offers the operations the recipes are sequences of: closed-book accuracy of the unadapted
model, sampling self-edits, and adapt-then-evaluate for one set of training documents.

Every operation that feeds a recorded result works on a fixed unit (a fixed chunk of K inner
loops, or one whole batch of prompts), so a resumed run recomputes exactly what an uninterrupted
one did: batches of different composition could otherwise round differently.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from seal.data.passage import Passage, Question
from seal.domains.knowledge.directive import DIRECTIVE_FORMATS, DIRECTIVE_POSITION, for_run, parse_directive
from seal.domains.knowledge.directive_decoding import choose_directives
from seal.domains.knowledge.generators import GENERATORS, GeneratedEdit, run_generator, single_call_edits
from seal.domains.knowledge.self_edit import (
    SelfEditConfig,
    SelfEditError,
    completion_to_documents,
    passage_document,
    self_edit_prompt,
)
from seal.eval.graders import GraderConfig, make_grader
from seal.eval.probes import Probe, answer_logprob
from seal.eval.qa import QAEvalConfig, answer_questions, grade_records, per_passage, qa_prompts
from seal.eval.self_questions import SelfQuestionsConfig, examined, write_questions
from seal.generation.backends import BackendConfig, make_generator
from seal.generation.hf import SamplingConfig
from seal.infra.chunking import pending_chunks
from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir
from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, InnerLoopError, TrainJob
from seal.models.loading import ModelConfig, format_prompt, max_context, model_folder, uses_chat


class KnowledgeTask:
    def __init__(self, model, tok, model_cfg: ModelConfig, inner_cfg: InnerLoopConfig, qa_cfg: QAEvalConfig,
                 grader_cfg: GraderConfig, self_edit_cfg: SelfEditConfig, backend: BackendConfig | None = None,
                 seed: int = 0):
        self.tok = tok
        self.chat = uses_chat(model_cfg, tok)
        self.system_prompt = model_cfg.system_prompt
        self.context_limit = max_context(model_cfg, model)
        self.inner = InnerLoop(model, tok, inner_cfg)
        backend = backend or BackendConfig()
        self.gen = make_generator(backend, None if backend.name == "hf" else model_folder(model_cfg), model, tok,
                                  self.inner.lora, inner_cfg, self.inner.slots, seed)
        self.qa_cfg = qa_cfg
        # the directive's nulls (epochs_max, defaults) become this run's inner_loop.lr, .epochs and append_passage:
        # the prompt's example, the bounds and the fallback all follow the run (`DirectiveConfig.for_run`)
        self.se_cfg = for_run(self_edit_cfg, inner_cfg.lr, inner_cfg.epochs)
        self.grader = make_grader(grader_cfg, model, tok, self.chat)  # a judge: its own frozen model, not the policy

    def close(self) -> None:
        """Stop the generation worker, if the backend has one (its GPU memory goes with it)."""
        if hasattr(self.gen, "close"):
            self.gen.close()
        if hasattr(self.grader, "close"):
            self.grader.close()

    @property
    def adapters_per_batch(self) -> int:
        """K: how many inner loops run together. Recipes cut their job lists into fixed chunks of K
        so that a resumed run batches (and so rounds) exactly as an uninterrupted one."""
        return self.inner.slots

    def passage_tokens(self, p: Passage) -> int:
        return len(self.tok(passage_document(p))["input_ids"]) + 1

    def too_long(self, p: Passage) -> str | None:
        """Why this passage cannot be trained on whole, or None. Never truncated silently."""
        n = self.passage_tokens(p)
        if n > self.context_limit:
            return f"passage has {n} tokens, more than the model's context of {self.context_limit}"
        if n > self.inner.cfg.max_seq_len:
            return f"passage has {n} tokens, more than inner_loop.max_seq_len={self.inner.cfg.max_seq_len}"
        return None

    def answer(self, passages: list[Passage], slots: list[int]) -> list[list[dict]]:
        """Closed-book answers to each passage's questions, passage i read by adapter slots[i]
        (-1: the base model), all in one generate call; graded with no adapter."""
        records = answer_questions(passages, self.gen, self.qa_cfg, self.tok, self.chat, self.system_prompt,
                                   adapters=[s for p, s in zip(passages, slots) for _ in p.questions])
        return per_passage(grade_records(records, self.grader), passages)

    def answer_logprobs(self, passages: list[Passage], slots: list[int]) -> list[list[dict]]:
        """Teacher-forced mean log-probability per token of each question's gold answer after its
        closed-book prompt, passage i read by adapter slots[i] (-1: the base model): the likelihood
        reward, with no generation (`seal.eval.probes.answer_logprob`)."""
        prompts = qa_prompts(passages, self.qa_cfg, self.tok, self.chat, self.system_prompt)
        out, i = [], 0
        for p, slot in zip(passages, slots):
            # a base model continues "...Answer:" with a space; a chat model's reply starts with the answer
            probes = [Probe(prompts[i + j], q.answer if self.chat else " " + q.answer)
                      for j, q in enumerate(p.questions)]
            i += len(p.questions)
            with self.inner.base_model() if slot < 0 else self.inner.adapter(slot) as model:
                lps = answer_logprob(model, self.tok, probes, self.inner.device)
            out.append([{"passage": p.uid, "q": j, "question": q.question, "gold": q.answer, "logprob": lp}
                        for j, (q, lp) in enumerate(zip(p.questions, lps))])
        return out

    def base_likelihoods(self, passages: list[Passage]) -> list[tuple[float, list[dict]]]:
        """The unadapted model's mean answer log-probability per passage (`answer_logprobs`)."""
        return [(mean_logprob(qs), qs) for qs in self.answer_logprobs(passages, [-1] * len(passages))]

    def base_accuracies(self, passages: list[Passage]) -> list[tuple[float, list[dict]]]:
        """Closed-book accuracy of the unadapted model on each passage's questions (one call)."""
        return [(accuracy(qs), qs) for qs in self.answer(passages, [-1] * len(passages))]

    def write_self_questions(self, passages: list[Passage], cfg: SelfQuestionsConfig, seeds: list[int]) -> list[dict]:
        """Question/answer pairs the unadapted model writes about each passage, one seeded generate call
        per passage (`seal.eval.self_questions.write_questions`): {"text", "questions"} per passage."""
        with self.inner.base_model():
            return write_questions(passages, self.gen, cfg, self.tok, self.chat, self.system_prompt, seeds)

    def prompt(self, p: Passage, fmt: str) -> str:
        return format_prompt(self.tok, self_edit_prompt(p, fmt, self.se_cfg), self.chat, self.system_prompt)

    def sample(self, passages: list[Passage], fmt: str, k: int, seed: int, desc: str | None = None,
               with_ids: bool = False) -> list[list]:
        """k self-edits per passage from the unadapted model, as one seeded batch; with `with_ids`,
        (text, sampled token ids) pairs (`HFGenerator.generate`)."""
        prompts = [self.prompt(p, fmt) for p in passages for _ in range(k)]
        desc = desc or f"sampling {len(prompts)} self-edits"
        if DIRECTIVE_POSITION.get(fmt) == "first":
            texts = self._sample_directive_first(prompts, seed, desc, with_ids)
        else:
            texts = self._generate(prompts, seed, desc, with_ids)
        return [texts[i * k:(i + 1) * k] for i in range(len(passages))]

    def _sample_directive_first(self, prompts: list[str], seed: int, desc: str, with_ids: bool) -> list:
        """implications-hp-first: each prompt's directive line by constrained decoding on the resident
        policy (`choose_directives`), then its statements sampled after that line by the run's generator;
        the ids are the line's, a newline's and the statements' (`seal.domains.knowledge.directive_decoding`)."""
        cfg = self.se_cfg
        with self.inner.base_model() as model:
            chosen = choose_directives(model, self.tok, prompts, cfg.directive, derive_seed(seed, "directive"),
                                       cfg.temperature, cfg.top_p, cfg.batch_size)
        rest = self._generate([p + piece for p, (piece, _) in zip(prompts, chosen)], seed, desc, with_ids=True)
        out = [(piece.lstrip("\n") + text, ids + more) for (piece, ids), (text, more) in zip(chosen, rest)]
        return out if with_ids else [text for text, _ in out]

    def generate_self_edits(self, passages: list[Passage], fmt: str, k: int, seed: int, desc: str | None = None
                            ) -> list[list[GeneratedEdit]]:
        """k self-edits per passage with what each cost (tokens, calls, seconds): a single-call format is
        `sample` with the same seed (so the same texts); a multi-call format runs its
        `seal.domains.knowledge.generators.GENERATORS` entry, each stage one seeded batch; `none` is free."""
        if fmt in GENERATORS:
            return run_generator(fmt, passages, k, seed, self.se_cfg, self._generate_raw, desc)
        if fmt == "none":  # no model-written text: the passage alone
            return [[GeneratedEdit("") for _ in range(k)] for _ in passages]
        start = time.perf_counter()
        rows = self.sample(passages, fmt, k, seed, desc=desc, with_ids=True)
        return single_call_edits(rows, time.perf_counter() - start)

    def _generate_raw(self, prompts: list[str], seed: int, desc: str | None) -> list[tuple[str, list[int]]]:
        """(text, ids) for raw prompts (chat template applied here) from the unadapted model, one seeded batch."""
        return self._generate([format_prompt(self.tok, p, self.chat, self.system_prompt) for p in prompts], seed,
                              desc, with_ids=True)

    def _generate(self, prompts: list[str], seed: int, desc: str | None, with_ids: bool) -> list:
        """Formatted prompts sampled by the unadapted model with the self-edit settings (`self_edit.*`), one
        seeded batch: what every self-edit format, single- or multi-call, is drawn with."""
        cfg = self.se_cfg
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                  batch_size=cfg.batch_size)
        with self.inner.base_model():
            return self.gen.generate(prompts, sampling, seed=seed, desc=desc, with_ids=with_ids)

    def documents(self, p: Passage, text: str, fmt: str) -> list[str]:
        return completion_to_documents(text, p, fmt, self.se_cfg)

    def train_job(self, p: Passage, text: str, fmt: str, seed: int) -> tuple[TrainJob | None, dict]:
        """The inner-loop job for one self-edit, and what its record carries beside the result: for a
        format whose self-edit carries a training directive (`DIRECTIVE_FORMATS`), the directive as applied,
        `{"directive": {lr, epochs, append_passage, valid, reason}}` (an invalid one: the defaults, or with
        on_invalid=refuse no job). An unusable self-edit gives None and {"skipped": why, ...}."""
        info = self.directive_record(text, fmt)  # documents from the facts part (`completion_to_documents`)
        lr, epochs = (info["directive"]["lr"], info["directive"]["epochs"]) if info else (None, None)
        try:
            docs = self.documents(p, text, fmt)
        except SelfEditError as e:
            return None, {"skipped": str(e), **info}
        return TrainJob(docs, seed, lr=lr, epochs=epochs), info

    def directive_record(self, text: str, fmt: str) -> dict:
        """{"directive": the directive as applied (`train_job`)} for a format that carries one, else {}."""
        if fmt not in DIRECTIVE_FORMATS:
            return {}
        d = parse_directive(text, self.se_cfg.directive, DIRECTIVE_POSITION[fmt])[1].resolved(self.inner.cfg.lr, self.inner.cfg.epochs,
                                                                      self.se_cfg.append_passage)
        return {"directive": d.to_record()}

    def adapt_and_evaluate_many(self, items: list[tuple[Passage, str, str, int]],
                                measure: str | tuple[str, ...] = "accuracy",
                                self_questions: list[list[Question]] | None = None,
                                locality=None, locality_items: set[int] = frozenset()) -> list[dict]:
        """For each (passage, self-edit text, format, seed): an inner loop on the self-edit's
        documents, then closed-book accuracy on the passage's questions (`measure="accuracy"`: up to K
        inner loops train together and all their questions are answered in one call), or the gold
        answers' mean log-probability, with no generation (`measure="likelihood"`), or closed-book
        accuracy on questions the policy wrote itself (`measure="self_questions"`, `self_questions[i]`
        for item i, graded against their self-written answers), or several of these on the same inner
        loop with the seconds each took per loop (a tuple, `scripts/bench_rewards.py`; `"both"`:
        accuracy and likelihood). The first of accuracy/likelihood/self_questions measured keeps its
        per-question records under `questions`, the others under `<measure>_questions`. A self-edit that
        cannot be used (empty, filler only, too long, NaN loss) gives a record with `skipped` and its reason.
        With `locality` (a `seal.eval.locality_check.LocalityCheck`), the adapted models of the items whose
        index is in `locality_items` also answer its general questions (record: `locality`)."""
        out: list[dict | None] = [None] * len(items)
        jobs: list[tuple[int, TrainJob, int]] = []
        extra: dict[int, dict] = {}  # what item i's record carries beside its result (`train_job`)
        for i, (p, text, fmt, seed) in enumerate(items):
            job, extra[i] = self.train_job(p, text, fmt, seed)
            if job is None:
                out[i] = {"skipped": extra[i].pop("skipped"), "seed": seed}
            else:
                jobs.append((i, job, len(job.documents)))
        k = self.adapters_per_batch
        measures = measure_names(measure, len(items), self_questions)
        for c in range(0, len(jobs), k):
            chunk = jobs[c:c + k]
            stats = self.inner.train_many([job for _, job, _ in chunk])
            trained = [(slot, i, st, n) for slot, ((i, _, n), st) in enumerate(zip(chunk, stats))
                       if not isinstance(st, InnerLoopError)]
            for (i, job, _), st in zip(chunk, stats):
                if isinstance(st, InnerLoopError):
                    out[i] = {"skipped": str(st), "seed": job.seed}
            passages, slots = [items[i][0] for _, i, _, _ in trained], [slot for slot, _, _, _ in trained]
            measured, seconds = {}, {}
            for m in sorted(measures, key=MEASURE_ORDER.index):  # likelihood, accuracy, self_questions
                start = time.perf_counter()
                if m == "likelihood":  # teacher-forced, no generation
                    measured[m] = [(mean_logprob(qs), qs) for qs in self.answer_logprobs(passages, slots)]
                else:  # graded closed-book answers to the gold questions, or to the self-written ones
                    asked = passages if m == "accuracy" else [
                        examined(items[i][0], self_questions[i]) for _, i, _, _ in trained]  # type: ignore[index]
                    measured[m] = [(accuracy(qs), qs) for qs in self.answer(asked, slots)]
                seconds[m] = (time.perf_counter() - start) / max(1, len(trained))
            first = min(measures, key=("accuracy", "likelihood", "self_questions").index)
            for j, (slot, i, st, n) in enumerate(trained):
                out[i] = {"seed": items[i][3], first: measured[first][j][0], "n_docs": n, "train": st.to_dict(),
                          "questions": measured[first][j][1]}
                for m in measures:
                    if m != first:
                        out[i] |= {m: measured[m][j][0], f"{m}_questions": measured[m][j][1]}
                if len(measures) > 1:  # several rewards of the same inner loop, and what each cost (per loop)
                    out[i]["measure_seconds"] = seconds
                if locality is not None and i in locality_items:
                    with self.inner.adapter(slot) as model:
                        out[i]["locality"] = locality.measure(model, self.tok, items[i][0])
        return [rec | extra[i] for i, rec in enumerate(out)]  # type: ignore[operator]


MEASURE_ORDER = ("likelihood", "accuracy", "self_questions")  # the order a chunk's measures run in


def measure_names(measure: str | tuple[str, ...], n_items: int, self_questions: list | None) -> tuple[str, ...]:
    """`adapt_and_evaluate_many`'s measures as a tuple ("both": accuracy and likelihood), checked."""
    names = ("accuracy", "likelihood") if measure == "both" else (measure,) if isinstance(measure, str) \
        else tuple(measure)
    unknown = [m for m in names if m not in MEASURE_ORDER]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"measure: {measure!r}: name each of {', '.join(MEASURE_ORDER)} at most once")
    if "self_questions" in names and (self_questions is None or len(self_questions) != n_items):
        raise ValueError("measure self_questions needs the self-written questions of every item (self_questions=)")
    return names


def accuracy(questions: list[dict]) -> float:
    return sum(q["correct"] for q in questions) / len(questions) if questions else 0.0


def mean_logprob(questions: list[dict]) -> float:
    return sum(q["logprob"] for q in questions) / len(questions) if questions else 0.0


def record_base_accuracies(task: KnowledgeTask, rd: RunDir, passages: list[Passage], key: Callable[[Passage], str],
                           head: Callable[[Passage], dict]) -> None:
    """The unadapted model's accuracy per passage, the passages not yet recorded in chunks of K
    (`pending_chunks`), each chunk answered in one call and recorded in one write under `key(p)` as
    `{**head(p), accuracy, questions}`."""
    for group in pending_chunks(passages, task.adapters_per_batch, lambda p: rd.has(key(p))):
        rd.put_many([(key(p), {**head(p), "accuracy": acc, "questions": qs})
                     for p, (acc, qs) in zip(group, task.base_accuracies(group))])
