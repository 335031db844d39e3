"""SEAL on ARC: the self-edit is a test-time-training configuration; its reward is whether the
adapted model solves the task (REFERENCE 1.2). The outer loop runs it through recipe `arc_restem`.

    seal experiment=arc_demo     # CPU: SmolLM2 on a few pinned tasks, small caps, one round
    seal experiment=arc_eval     # ICL vs self-edits without RL vs oracle (rounds=0)
    seal experiment=arc_restem   # the paper's setting: Llama-3.2-1B-Instruct, 11 + 8 pinned tasks

Per self-edit (one inner loop):
  1. parse the policy's JSON configuration against the strict schema (`seal.domains.arc.self_edit`); a
     malformed or over-budget configuration is recorded with its reason and reward 0, never trained
  2. test-time-training data from the task's demonstrations: leave-one-out and leave-two-out tasks,
     every chosen augmenter (grids over `max_side` dropped), one round of colour and example-order
     permutation when any augmenter is chosen, deduplicated, capped; (prompt, output) pairs, loss on
     all tokens or on the output only, as the configuration says
  3. LoRA SFT with the configuration's lr and epochs through the batched multi-adapter inner loop
  4. evaluation: for each test input, prompts under invertible geometric test-time augmentations and
     demonstration orders (optionally leave-one-out demonstration subsets), greedy decoding, outputs
     mapped back through the inverse transform, majority vote to 2 attempts; solved iff every test
     input's solution is among its attempts (pass@2); reward 1/0
Sampling retries invalid configurations a bounded number of times (`arc.max_attempts`).
"""

from __future__ import annotations

from dataclasses import replace

from seal.domains.arc.augment import TTA
from seal.domains.arc.config import ARCSetup
from seal.domains.arc.data import ARCTask, output_text, text_to_grid
from seal.domains.arc.self_edit import ARCEdit, EditRejected, check_budget, parse_edit, policy_prompt
from seal.domains.arc.ttt import eval_prompts, inverse_or_none, solved, ttt_examples, vote
from seal.generation.backends import make_generator
from seal.generation.hf import SamplingConfig
from seal.infra.config import ConfigError, derive_seed
from seal.infra.run_dir import RunDir
from seal.inner_loop.trainer import InnerLoop, InnerLoopError, TrainJob
from seal.models.loading import ModelConfig, format_prompt, load_model, model_folder, prompt_ids, uses_chat
from seal.rl.reward import REWARDS, EditReward


class ARCSession:
    """One policy: samples configurations, runs test-time training K at a time, scores by pass@2."""

    def __init__(self, model, tok, model_cfg: ModelConfig, cfg: ARCSetup, seed: int):
        self.tok, self.cfg, self.arc = tok, cfg, cfg.arc
        self.chat = uses_chat(model_cfg, tok)
        self.system_prompt = model_cfg.system_prompt
        self.inner = InnerLoop(model, tok, cfg.inner_loop)
        self.adapters_per_batch = self.inner.slots
        backend = cfg.backend
        self.gen = make_generator(backend, None if backend.name == "hf" else model_folder(model_cfg), model, tok,
                                  self.inner.lora, cfg.inner_loop, self.inner.slots, seed)
        self.oracle = parse_edit(self.arc.oracle, self.arc.limits)

    def close(self) -> None:
        if hasattr(self.gen, "close"):
            self.gen.close()

    def edit_prompt(self, task: ARCTask) -> str:
        return policy_prompt(task, self.arc.limits)

    # -- sampling
    def check(self, task: ARCTask, text: str) -> ARCEdit:
        """The configuration a text encodes, or EditRejected (schema, or the step budget)."""
        edit = parse_edit(text, self.arc.limits)
        n = len(ttt_examples(task, edit, self.arc.ttt, seed=0))
        check_budget(n, self.inner.cfg.batch_size * self.inner.cfg.grad_accum, edit.epochs, self.arc.ttt.max_steps)
        return edit

    def adapter_info(self) -> dict:
        return self.inner.adapter_info()

    def sample_prompt(self, task: ARCTask) -> str:
        """What the policy is given: the chat-formatted request and the reply prefix written for it."""
        return self._chat(self.edit_prompt(task)) + self.arc.response_prefix

    def sample(self, tasks: list[ARCTask], k: int, seed: int, desc: str):
        """k configurations per task; a slot whose sample is invalid is resampled, up to max_attempts
        samples in all. Returns the texts (the reply prefix included), the token ids each kept sample
        drew (after the prefix) and, per task, each slot's attempt count and last rejection."""
        sampling = SamplingConfig(max_new_tokens=self.arc.max_new_tokens, temperature=self.arc.temperature,
                                  top_p=self.arc.top_p, batch_size=self.arc.sample_batch_size)
        texts = [[""] * k for _ in tasks]
        ids: list[list[list[int]]] = [[[] for _ in range(k)] for _ in tasks]
        tries = [[0] * k for _ in tasks]
        why: list[list[str | None]] = [[None] * k for _ in tasks]
        open_slots = [(t, i) for t in range(len(tasks)) for i in range(k)]
        for attempt in range(self.arc.max_attempts):
            if not open_slots:
                break
            pre = self.arc.response_prefix
            prompts = [self.sample_prompt(tasks[t]) for t, _ in open_slots]
            with self.inner.base_model():
                outs = self.gen.generate(prompts, sampling, seed=derive_seed(seed, "attempt", attempt),
                                         desc=f"{desc} (attempt {attempt + 1})", with_ids=True)
            still = []
            for (t, i), (out, out_ids) in zip(open_slots, outs):
                text = pre + out
                texts[t][i], ids[t][i], tries[t][i] = text, out_ids, attempt + 1
                try:
                    self.check(tasks[t], text)
                    why[t][i] = None
                except EditRejected as e:
                    why[t][i] = str(e)
                    still.append((t, i))
            open_slots = still
        info = {task.uid: {"attempts": tries[t], "rejected": why[t]} for t, task in enumerate(tasks)}
        return texts, ids, info

    def _chat(self, text: str) -> str:
        return format_prompt(self.tok, text, self.chat, self.system_prompt)

    # -- scoring
    def base_many(self, tasks: list[ARCTask], phase: str = "eval") -> list[dict]:
        """In-context learning: the unadapted policy, the same prompts and vote (the same for either
        phase: every ARC reward reads accuracy)."""
        return self._evaluate(tasks, [-1] * len(tasks))

    def adapt_many(self, items) -> list[dict]:
        out: list[dict | None] = [None] * len(items)
        jobs = []
        for n, (cond, task, text, seed, *_) in enumerate(items):  # an Item's base: ARC rewards need only accuracy
            try:
                edit = self.oracle if cond == "oracle" else parse_edit(text, self.arc.limits)
                docs = self._documents(task, edit, seed)
                steps = check_budget(len(docs), self.inner.cfg.batch_size * self.inner.cfg.grad_accum, edit.epochs,
                                     self.arc.ttt.max_steps)
            except EditRejected as e:
                out[n] = {"seed": seed, "accuracy": 0.0, "skipped": str(e)}
                continue
            jobs.append((n, TrainJob(docs, seed, lr=edit.lr, epochs=edit.epochs,
                                     completion_only=edit.loss == "output_only"), edit, steps))
        k = self.adapters_per_batch
        for c in range(0, len(jobs), k):
            chunk = jobs[c:c + k]
            stats = self.inner.train_many([job for _, job, _, _ in chunk])
            trained = []
            for slot, ((n, job, edit, steps), st) in enumerate(zip(chunk, stats)):
                if isinstance(st, InnerLoopError):
                    out[n] = {"seed": job.seed, "accuracy": 0.0, "skipped": str(st)}
                else:
                    trained.append((slot, n, job, edit, st))
            results = self._evaluate([items[n][1] for _, n, _, _, _ in trained], [slot for slot, *_ in trained])
            for (slot, n, job, edit, st), res in zip(trained, results):
                out[n] = {"seed": job.seed, **res, "config": edit.to_json(), "n_examples": len(job.documents),
                          "train": st.to_dict()}
        return out  # type: ignore[return-value]

    def _documents(self, task: ARCTask, edit: ARCEdit, seed: int) -> list[tuple[str, str]]:
        """Training pairs that fit inner_loop.max_seq_len (longer ones are dropped, like oversized grids)."""
        limit, eos = self.inner.cfg.max_seq_len, int(self.inner.cfg.add_eos)
        pairs = ttt_examples(task, edit, self.arc.ttt, seed)
        # the length the inner loop will see: one BOS where the tokenizer uses one (seal.models.loading.prompt_ids)
        return [(p, c) for p, c in pairs
                if len(prompt_ids(self.tok, p)) + len(self.tok(c, add_special_tokens=False)["input_ids"]) + eos <= limit]

    def _evaluate(self, tasks: list[ARCTask], slots: list[int]) -> list[dict]:
        """pass@attempts of each task read by adapter slots[i] (-1: no adapter), one generate call per
        answer-length group."""
        ec = self.arc.eval
        rows = []  # (task index, test index, transform, prompt, max_new_tokens)
        for ti, task in enumerate(tasks):
            longest = max(len(output_text(o)) for _, o in task.train)
            max_new = min(ec.max_new_tokens, 2 * longest + 8)
            for xi in range(len(task.test)):
                rows += [(ti, xi, t, p, max_new) for p, t in eval_prompts(task, xi, ec)]
        answers: list[str | None] = [None] * len(rows)
        for max_new in sorted({r[4] for r in rows}):
            idx = [n for n, r in enumerate(rows) if r[4] == max_new]
            outs = self.gen.generate([rows[n][3] for n in idx], SamplingConfig(max_new_tokens=max_new, temperature=0.0,
                                                                               batch_size=ec.batch_size),
                                     adapters=[slots[rows[n][0]] for n in idx])
            for n, text in zip(idx, outs):
                answers[n] = text
        results = []
        for ti, task in enumerate(tasks):
            tests = []
            for xi in range(len(task.test)):
                cands = [inverse_or_none(r[2], text_to_grid(a)) for r, a in zip(rows, answers)
                         if r[0] == ti and r[1] == xi]
                att = vote(cands, ec.attempts)
                tests.append({"attempts": att, "valid_answers": sum(c is not None for c in cands),
                              "prompts": len(cands),
                              "correct": None if task.solutions is None else task.solutions[xi] in att})
            ok = task.solutions is not None and solved([t["attempts"] for t in tests], task.solutions)
            results.append({"accuracy": float(ok), "tests": tests})
        return results


class ARCDomain:
    title = "ReST-EM (SEAL outer loop) on ARC: self-edited test-time training"
    unit = "tasks x samples"
    references = ("oracle",)
    labels = {"self_edit": "self-edit TTT (pass@2)", "base": "ICL, no TTT", "oracle": "oracle configuration"}

    def __init__(self, cfg: ARCSetup, reward: str = "accuracy"):
        self.cfg, self.reward_name = cfg, reward

    def open(self, policy: str, round_: int) -> ARCSession:
        model_cfg = replace(self.cfg.model, name=policy)
        model, tok = load_model(model_cfg)
        return ARCSession(model, tok, model_cfg, self.cfg, derive_seed(self.cfg.seed, "engine", round_))

    def reward(self, context: ARCTask, sample: int, runs: list[dict], base: dict) -> EditReward:
        """`restem.reward`; the paper's is `accuracy`: 1 if the adapted model solved the task (pass@2),
        mean over seeds; a malformed or over-budget configuration scores 0."""
        return REWARDS[self.reward_name](context.uid, sample, runs, base)

    def outcomes(self, record: dict, context: ARCTask) -> list[float]:
        return [float(record.get("accuracy", 0.0))]

    def describe(self) -> str:
        c = self.cfg
        t, e = c.arc.ttt, c.arc.eval
        return (f"Model `{c.model.name}`; training tasks {', '.join(c.arc_data.tasks) or c.arc_data.source}; held-out "
                f"tasks {', '.join(c.arc_eval_data.tasks) or c.arc_eval_data.source}. Test-time training: LoRA "
                f"r={c.inner_loop.lora_r}, at most {t.max_examples} examples and {t.max_steps} steps; evaluation "
                f"{1 + e.tta} transforms x {e.orderings} orders{' + leave-one-out subsets' if e.leave_one_out else ''}"
                f", pass@{e.attempts}. Oracle configuration `{c.arc.oracle}`.")


    def report_sections(self, rd: RunDir) -> list[str]:
        """Cost per test-time training and how often the policy wrote a usable configuration."""
        from seal.infra.report import md_table

        groups: dict[str, list[dict]] = {}
        sampled: dict[str, list[int]] = {}
        for key, rec in rd.records.items():
            parts = key.split("/")
            if parts[0] in ("eval", "estep") and parts[2] == "completions":  # one record per sampling chunk
                name = f"round {parts[1]} {'held-out' if parts[0] == 'eval' else 'E-step'}"
                info = rec.get("sampling", {})
                slots = [(a, why) for v in info.values() for a, why in zip(v["attempts"], v["rejected"])]
                n, ok, tries = sampled.get(name, [0, 0, 0])
                sampled[name] = [n + len(slots), ok + sum(why is None for _, why in slots),
                                 tries + sum(a for a, _ in slots)]
            elif "train" in rec:
                cond = rec.get("condition", "self_edit")
                groups.setdefault(f"round {parts[1]} {'E-step' if parts[0] == 'estep' else 'held-out'} {cond}",
                                  []).append(rec)
        rows = []
        for name, recs in groups.items():
            per = [x["train"]["seconds"] / x["train"]["adapters"] for x in recs]
            rows.append([name, len(recs), sum(per) / len(per), sum(x["train"]["steps"] for x in recs) / len(recs),
                         sum(x["train"]["tokens"] for x in recs) / len(recs),
                         sum(x["n_examples"] for x in recs) / len(recs),
                         sum(x["accuracy"] for x in recs) / len(recs)])
        srows = [[name, n, ok, f"{ok / n:.2f}" if n else "—", tries] for name, (n, ok, tries) in sampled.items()]
        return ["## Cost per test-time training", "",
                ("Seconds are each batch's wall time divided by the adapters trained in it (K adapters share "
                 "every forward/backward)."), "",
                md_table(["inner loops", "trained", "seconds each", "steps", "tokens", "examples", "solved"], rows), "",
                "## Configurations the policy wrote", "",
                md_table(["sampling", "slots", "valid configurations", "valid share", "samples drawn"], srows), ""]


def validate_arc(cfg: ARCSetup) -> None:
    """The ARC settings a run cannot start with."""
    t, e = cfg.arc.ttt, cfg.arc.eval
    if not 0 <= e.tta <= len(TTA):
        raise ConfigError(f"arc.eval.tta must be in 0..{len(TTA)}, got {e.tta}")
    if e.orderings not in (1, 2):
        raise ConfigError(f"arc.eval.orderings must be 1 or 2, got {e.orderings}")
    for name, v in (("arc.ttt.max_examples", t.max_examples), ("arc.ttt.max_steps", t.max_steps),
                    ("arc.eval.attempts", e.attempts), ("arc.max_attempts", cfg.arc.max_attempts)):
        if v < 1:
            raise ConfigError(f"{name} must be at least 1, got {v}")
    try:
        parse_edit(cfg.arc.oracle, cfg.arc.limits)
    except EditRejected as err:
        raise ConfigError(f"arc.oracle: {err}") from None
