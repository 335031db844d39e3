"""Knowledge incorporation as a domain of the outer loop (`seal.rl.protocols`): contexts are passages,
a self-edit is text to train on, the reward is closed-book accuracy on the passage's questions after
the inner loop; the reference `passage` trains on the passage alone.

With `restem.reward=self_questions` the E-step's questions are the ones the round's unadapted policy
writes itself (`seal.eval.self_questions`): the session writes them once per E-step context, seeded by
the config seed, the round and the context uid, in a generate call per context, when it scores the
context's base; the base record holds them (`self_questions_exam`, with its hash `self_questions_exam_sha`,
the graded answers in `self_questions_questions`, the raw text in `self_questions_text`). Every inner
loop of the context is then asked exactly that recorded exam, passed along with its item (`Item.base`),
whichever process runs it and after any resume, and records the exam's hash; the reward refuses a run
whose hash differs from the base's. A context with no parseable pair records `self_questions_unusable`;
its edits are not trained and their reward is unusable. Held-out evaluation always uses the gold
questions, and held-out bases write no exam."""

from __future__ import annotations

from dataclasses import replace

from seal.data.passage import Passage
from seal.domains.knowledge.config import KnowledgeSetup
from seal.domains.knowledge.directive import DIRECTIVE_FORMATS, DIRECTIVE_POSITION, for_run, format_lr
from seal.domains.knowledge.directive_report import directive_section, round_directives
from seal.domains.knowledge.self_edit import SelfEditConfig
from seal.domains.knowledge.task import KnowledgeTask
from seal.eval.locality_check import LocalityCheck, LocalityCheckConfig, mean_of
from seal.eval.self_questions import NO_PAIRS, SelfQuestionsConfig, as_records, exam_of, exam_sha, examined
from seal.infra.config import derive_seed
from seal.infra.run_dir import RunDir
from seal.models.loading import load_model
from seal.rl.protocols import PHASES, Item
from seal.rl.reward import MEASURES, REWARDS, EditReward


class KnowledgeDomain:
    title = "ReST-EM (SEAL outer loop) on knowledge incorporation"
    unit = "questions"
    references = ("passage",)
    labels = {"self_edit": "self-edit accuracy", "base": "base (no update)", "passage": "passage only"}

    def __init__(self, cfg: KnowledgeSetup, held_out_source: str = "", eval_passages: int = 0,
                 reward: str = "accuracy", self_questions: SelfQuestionsConfig | None = None):
        self.cfg, self.held_out_source, self.eval_passages = cfg, held_out_source, eval_passages
        self.reward_name = reward
        self.self_questions = self_questions or SelfQuestionsConfig()  # the self_questions reward's exam

    def open(self, policy: str, round_: int) -> KnowledgeSession:
        cfg = self.cfg
        model_cfg = replace(cfg.model, name=policy)
        model, tok = load_model(model_cfg)
        # with an engine worker (backend=vllm) each policy gets a fresh engine process
        task = KnowledgeTask(model, tok, model_cfg, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                             backend=cfg.backend, seed=derive_seed(cfg.seed, "engine", round_))
        return KnowledgeSession(task, cfg.self_edit, MEASURES[self.reward_name], self.self_questions,
                                seed=derive_seed(cfg.seed, "self_questions", round_))

    def reward(self, context: Passage, sample: int, runs: list[dict], base: dict) -> EditReward:
        """`restem.reward` (`seal.rl.reward.REWARDS`); the paper's is `accuracy`: the adapted model's
        accuracy on the passage's questions, mean over seeds."""
        return REWARDS[self.reward_name](context.uid, sample, runs, base)

    def outcomes(self, record: dict, context: Passage) -> list[float]:
        if "questions" in record:
            return [float(q["correct"]) for q in record["questions"]]
        return [0.0] * len(context.questions)  # a skipped edit scores 0 on every question

    def describe(self) -> str:
        c = self.cfg
        return (f"Model `{c.model.name}`; training data `{c.data.source}`, held-out `{self.held_out_source}` "
                f"({self.eval_passages} passages); format `{c.self_edit.format}`; grader `{c.grader.kind}`.")

    def report_sections(self, rd: RunDir) -> list[str]:
        """With a format that carries training directives (implications-hp): what they chose per round."""
        if self.cfg.self_edit.format not in DIRECTIVE_FORMATS:
            return []
        il = self.cfg.inner_loop
        d = for_run(self.cfg.self_edit, il.lr, il.epochs).directive  # the settings the run's tasks used
        return directive_section(rd, f"`self_edit.directive`: defaults lr={format_lr(d.default_lr)}, epochs="
                                     f"{d.default_epochs}, passage={'yes' if d.default_passage else 'no'}; "
                                     f"epochs allowed {d.epochs_min} to {d.epochs_max}; on_invalid={d.on_invalid}",
                                 DIRECTIVE_POSITION[self.cfg.self_edit.format])

    def round_summary(self, rd: RunDir, r: int) -> dict:
        """Extra per-round entries of results.json (`seal.rl.report.summarise`): with implications-hp,
        `directives` (share valid, settings chosen, fallbacks, per held-out / E-step / kept self-edits)."""
        if self.cfg.self_edit.format not in DIRECTIVE_FORMATS:
            return {}
        found = round_directives(rd, r)
        return {"directives": found} if found else {}


class KnowledgeSession:
    def __init__(self, task: KnowledgeTask, se_cfg: SelfEditConfig, estep_measure: str = "accuracy",
                 self_questions: SelfQuestionsConfig | None = None, seed: int = 0):
        self.task, self.fmt, self.se_cfg = task, se_cfg.format, se_cfg
        self.adapters_per_batch = task.adapters_per_batch
        self.estep_measure = estep_measure  # what E-step items measure (`seal.rl.reward.MEASURES`)
        self.sq_cfg, self.sq_seed = self_questions or SelfQuestionsConfig(), seed  # seed: per round (`open`)
        self.written: dict[str, dict] = {}  # context uid -> {"text", "questions"} the policy wrote about it

    def sample(self, contexts, k, seed, desc):
        out = self.task.sample(contexts, self.fmt, k, seed, desc=desc, with_ids=True)
        return [[t for t, _ in row] for row in out], [[ids for _, ids in row] for row in out], None

    def self_questions(self, contexts: list[Passage]) -> list[dict]:
        """The questions the unadapted policy writes about each context, {"text", "questions"}: written
        once per context (its own generate call and seed, `seal.eval.self_questions`), then kept."""
        todo = list({c.uid: c for c in contexts if c.uid not in self.written}.values())
        seeds = [derive_seed(self.sq_seed, c.uid) for c in todo]
        for c, w in zip(todo, self.task.write_self_questions(todo, self.sq_cfg, seeds) if todo else []):
            self.written[c.uid] = w
        return [self.written[c.uid] for c in contexts]

    def base_many(self, contexts, phase: str = "eval"):
        """The unadapted accuracy on the gold questions; for E-step contexts (phase "estep") also what
        the reward compares with: the unadapted likelihood, or the exam the policy writes itself, with
        its hash and the unadapted accuracy on it. Held-out bases (phase "eval") write and grade nothing
        more."""
        if phase not in PHASES:
            raise ValueError(f"base_many: phase must be one of {', '.join(PHASES)}, got {phase!r}")
        out = [{"accuracy": acc, "questions": qs} for acc, qs in self.task.base_accuracies(contexts)]
        if phase != "estep":
            return out
        if self.estep_measure == "likelihood":  # the E-step's gains are over the unadapted likelihood
            for rec, (lp, qs) in zip(out, self.task.base_likelihoods(contexts)):
                rec["likelihood"], rec["likelihood_questions"] = lp, qs
        if self.estep_measure == "self_questions":  # ... over the unadapted accuracy on its own questions
            written = self.self_questions(contexts)
            scored = iter(self.task.base_accuracies([examined(c, w["questions"])
                                                     for c, w in zip(contexts, written) if w["questions"]]))
            for rec, w in zip(out, written):
                acc, qs = next(scored) if w["questions"] else (0.0, [])
                rec |= {"self_questions": acc, "self_questions_questions": qs, "self_questions_text": w["text"],
                        "self_questions_exam": as_records(w["questions"]),
                        "self_questions_exam_sha": exam_sha(w["questions"])}
                if not w["questions"]:
                    rec["self_questions_unusable"] = NO_PAIRS
        return out

    def adapt_many(self, items):
        """Held-out items (self_edit and references) measure accuracy on the gold questions, E-step items
        what the reward needs (`estep_measure`); the outer loop never mixes the two in one call. With
        the self_questions reward, an E-step item is asked exactly the exam its base record holds
        (`Item.base`, `seal.eval.self_questions.exam_of`), and its record keeps that exam's hash."""
        items = [Item(*it) for it in items]
        conditions = {it.condition for it in items}
        if "estep" in conditions and len(conditions) > 1:
            raise ValueError(f"adapt_many: E-step items mixed with {sorted(conditions - {'estep'})} in one call")
        jobs = [(it.context, it.text, self.fmt, it.seed) if it.condition in ("self_edit", "estep")
                else (it.context, "", "none", it.seed) for it in items]
        if conditions != {"estep"}:
            return self.task.adapt_and_evaluate_many(jobs)
        if self.estep_measure != "self_questions":
            return self.task.adapt_and_evaluate_many(jobs, measure=self.estep_measure)
        if any(it.base is None for it in items):
            raise ValueError("adapt_many: with the self_questions reward every E-step item needs its context's base "
                             "record (Item.base), which holds the exam")
        # a context the policy wrote no question about has nothing to score: its edits are not trained
        out: list[dict] = [{"skipped": NO_PAIRS, "seed": seed, **self.task.directive_record(text, fmt)}
                           for _, text, fmt, seed in jobs]
        asked = [j for j, it in enumerate(items) if "self_questions_unusable" not in it.base]  # type: ignore[operator]
        exams = {j: exam_of(items[j].base) for j in asked}  # type: ignore[arg-type]
        done = self.task.adapt_and_evaluate_many([jobs[j] for j in asked], measure="self_questions",
                                                 self_questions=[exams[j] for j in asked])
        for j, rec in zip(asked, done):
            out[j] = rec if "skipped" in rec else {**rec, "self_questions_exam_sha": exam_sha(exams[j])}
        return out

    def measure_locality(self, cfg: LocalityCheckConfig, known_ids: list[str] | None, items: list[Item]) -> dict:
        """Locality of this policy unadapted, and locality + bleed of each item's adapted model (`items`:
        self-edits to train, one inner loop each, K at a time). `known_ids`: the base model's known questions
        (None: this policy is the base model, so find them; they are returned with the figures)."""
        task = self.task
        if known_ids is None:
            known_ids = LocalityCheck.known_ids(task.inner.model, task.tok, cfg, task.chat, task.system_prompt)
        check = LocalityCheck(cfg, known_ids, task.chat, task.system_prompt)
        with task.inner.base_model() as model:
            policy = check.measure(model, task.tok)
        adapted = []
        for start in range(0, len(items), task.adapters_per_batch):
            jobs = [(it, task.train_job(it.context, it.text, self.fmt, it.seed)[0])
                    for it in items[start:start + task.adapters_per_batch]]
            jobs = [(it, job) for it, job in jobs if job is not None]
            stats = task.inner.train_many([job for _, job in jobs]) if jobs else []
            for slot, ((it, _), st) in enumerate(zip(jobs, stats)):
                if isinstance(st, Exception):
                    continue
                with task.inner.adapter(slot) as model:
                    adapted.append({"passage": it.context.uid, **check.measure(model, task.tok, it.context)})
        return {"known_ids": list(known_ids), "policy": policy["locality"], "n_questions": len(known_ids),
                "adapted_locality": mean_of(adapted, "locality"), "adapted_bleed": mean_of(adapted, "bleed"),
                "n_adapted": len(adapted), "adapted": adapted}

    def sample_prompt(self, context):
        return self.task.prompt(context, self.fmt)

    def adapter_info(self):
        return self.task.inner.adapter_info()

    def close(self):
        self.task.close()
