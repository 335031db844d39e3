"""SEAL on ARC: the self-edit is a test-time-training configuration; its reward is whether the
adapted model solves the task (REFERENCE 1.2). Recipe `arc_restem`, on the shared outer loop.

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

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from seal.domains.arc.augment import IDENTITY, TTA, Grid, Transform, augmenters, fits, random_colours
from seal.domains.arc.data import ARCDataConfig, ARCTask, load_tasks, output_text, task_prompt, text_to_grid
from seal.domains.arc.self_edit import ARCEdit, EditLimits, EditRejected, check_budget, parse_edit
from seal.generation.backends import BackendConfig, make_generator
from seal.infra.config import ConfigError, derive_seed
from seal.generation.hf import SamplingConfig
from seal.inner_loop.trainer import InnerLoop, InnerLoopConfig, InnerLoopError, TrainJob
from seal.rl.m_step import MStepConfig
from seal.models.loading import ModelConfig, format_prompt, load_model, model_folder, prompt_ids, uses_chat
from seal.rl.outer_loop import OuterLoopConfig, outer_loop, validate_outer
from seal.infra.run_dir import RunDir
from seal.infra.runtime import RuntimeConfig
from seal.rl.selection import SelectionConfig
from seal.infra.tracking import WandbConfig


@dataclass
class TTTConfig:
    leave_one_out: bool = True
    leave_two_out: bool = True
    max_examples: int = 250  # cap after augmentation and dedupe (REFERENCE 1.2)
    max_side: int = 30  # augmented grids larger than this are dropped
    max_steps: int = 375  # a configuration needing more optimizer steps is rejected (reward 0)
    permute: bool = True  # one round of colour + demonstration-order permutation when any augmenter is on


@dataclass
class ARCEvalConfig:
    tta: int = 5  # invertible geometric test-time augmentations besides the identity (0..5)
    orderings: int = 2  # demonstration orders per prompt: 1 (as given) or 2 (and reversed)
    leave_one_out: bool = True  # also prompt with each leave-one-out subset of the demonstrations
    attempts: int = 2  # pass@attempts
    max_new_tokens: int = 1024  # cap; per task, 2x the longest demonstration output + 8
    batch_size: int = 32


@dataclass
class ARCConfig:
    ttt: TTTConfig = field(default_factory=TTTConfig)
    eval: ARCEvalConfig = field(default_factory=ARCEvalConfig)
    limits: EditLimits = field(default_factory=EditLimits)
    k: int = 15  # configurations sampled per training task (REFERENCE 1.2)
    max_k: int = 64  # a larger k is refused as a likely typo (raise this if you mean it)
    sample_chunk: int = 0  # tasks sampled and recorded together (resume redoes at most one chunk); 0: 64 prompts' worth
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 128
    sample_batch_size: int = 16
    max_attempts: int = 4  # samples per configuration slot before it is recorded as invalid
    # the start of the policy's reply, written for it (the self-edit is this prefix + what it writes);
    # small models rarely open a JSON object on their own
    response_prefix: str = ""
    # the hand-tuned reference configuration (`oracle`), checked by the same schema
    oracle: str = ('{"geometric": true, "size": true, "chain": true, "repeat": true, "loss": "output_only", '
                   '"lr": 0.0001, "epochs": 2}')


@dataclass
class ARCReSTEMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    arc_data: ARCDataConfig = field(default_factory=ARCDataConfig)  # training tasks (E-step)
    arc_eval_data: ARCDataConfig = field(default_factory=ARCDataConfig)  # held-out tasks
    arc: ARCConfig = field(default_factory=ARCConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    restem: OuterLoopConfig = field(default_factory=OuterLoopConfig)
    selection: SelectionConfig = field(default_factory=lambda: SelectionConfig(rule="score_above"))
    m_step: MStepConfig = field(default_factory=MStepConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0


# ------------------------------------------------------------------------------------ training data

def _subtasks(task: ARCTask, cfg: TTTConfig) -> list[tuple[list[tuple[Grid, Grid]], Grid, Grid]]:
    """(demonstrations, pseudo-test input, its output) from the task's own demonstrations."""
    demos, n, out = task.train, len(task.train), []
    if cfg.leave_one_out and n >= 2:
        out += [([d for j, d in enumerate(demos) if j != i], *demos[i]) for i in range(n)]
    if cfg.leave_two_out and n >= 3:
        out += [([d for m, d in enumerate(demos) if m not in (i, j)], *demos[i])
                for i in range(n) for j in range(n) if j != i]
    return out


def _mapped(sub, t: Transform):
    demos, x, y = sub
    return [(t.forward(i), t.forward(o)) for i, o in demos], t.forward(x), t.forward(y)


def ttt_examples(task: ARCTask, edit: ARCEdit, cfg: TTTConfig, seed: int) -> list[tuple[str, str]]:
    """The (prompt, output) pairs a configuration trains on; seeded (translations, permutations, cap)."""
    rng = np.random.default_rng(seed)
    base = _subtasks(task, cfg)
    transforms = augmenters(edit.augment_choice(), rng)
    subs = list(base)
    for t in transforms:
        subs += [_mapped(s, t) for s in base]
    subs = [s for s in subs if all(fits(g, cfg.max_side) for d in s[0] for g in d) and fits(s[1], cfg.max_side)
            and fits(s[2], cfg.max_side)]
    if transforms and cfg.permute:
        permuted = []
        for s in subs:
            demos, x, y = _mapped(s, random_colours(rng))
            permuted.append(([demos[i] for i in rng.permutation(len(demos))], x, y))
        subs += permuted
    pairs = list(dict.fromkeys((task_prompt(d, x), output_text(y)) for d, x, y in subs))  # dedupe, keep order
    order = rng.permutation(len(pairs))[: cfg.max_examples]
    return [pairs[i] for i in sorted(order)]


# --------------------------------------------------------------------------------------- evaluation

def eval_prompts(task: ARCTask, test_index: int, cfg: ARCEvalConfig) -> list[tuple[str, Transform]]:
    """Prompts for one test input and the transform whose inverse maps each answer back."""
    n = len(task.train)
    subsets = [list(range(n))]
    if cfg.leave_one_out and n >= 3:
        subsets += [[j for j in range(n) if j != i] for i in range(n)]
    out = []
    for t in (IDENTITY, *TTA[: cfg.tta]):
        demos = [(t.forward(i), t.forward(o)) for i, o in task.train]
        x = t.forward(task.test[test_index])
        for sub in subsets:
            orders = [sub, sub[::-1]][: cfg.orderings] if len(sub) > 1 else [sub]
            out += [(task_prompt([demos[j] for j in order], x), t) for order in orders]
    return out


def vote(candidates: list[Grid | None], attempts: int = 2) -> list[Grid]:
    """The `attempts` most frequent valid answers; ties go to the answer seen first."""
    counts = Counter(tuple(map(tuple, g)) for g in candidates if g is not None)
    first = {}
    for g in candidates:
        if g is not None:
            first.setdefault(tuple(map(tuple, g)), len(first))
    ranked = sorted(counts, key=lambda k: (-counts[k], first[k]))
    return [[list(row) for row in k] for k in ranked[:attempts]]


def solved(attempts: list[list[Grid]], solutions: list[Grid]) -> bool:
    """pass@k: every test input's solution is among its attempts."""
    return len(attempts) == len(solutions) and all(sol in att for att, sol in zip(attempts, solutions))


def _inverse_or_none(t: Transform, g: Grid | None) -> Grid | None:
    if g is None:
        return None
    try:
        return t.inverse(g)
    except (ValueError, IndexError):  # an answer whose shape the inverse cannot take
        return None


# ------------------------------------------------------------------------------------------ session

POLICY_PROMPT = (
    "Here are the solved examples of a grid puzzle:\n\n{demos}"
    "Before solving it you will fine-tune yourself on augmented copies of these examples. Choose the "
    "training setup as one JSON object with exactly these keys:\n"
    '- "geometric": true or false (rotations, flips, reflections, transpose, shifts)\n'
    '- "size": true or false (grids scaled up 2x)\n'
    '- "chain": true or false (a geometric change followed by scaling)\n'
    '- "repeat": true or false (grids tiled twice)\n'
    '- "loss": "all_tokens" or "output_only"\n'
    '- "lr": learning rate, a number from {lr_min:g} to {lr_max:g}\n'
    '- "epochs": an integer from {ep_min} to {ep_max}\n'
    'The format, with values you should choose for this puzzle: {{"geometric": false, "size": true, '
    '"chain": false, "repeat": true, "loss": "all_tokens", "lr": 0.0003, "epochs": 4}}\n'
    "Reply with the JSON object only."
)


def policy_prompt(task: ARCTask, limits: EditLimits) -> str:
    demos = "".join(f"Input:\n{_txt(i)}\nOutput:\n{_txt(o)}\n\n" for i, o in task.train)
    return POLICY_PROMPT.format(demos=demos, lr_min=limits.lr_min, lr_max=limits.lr_max, ep_min=limits.epochs_min,
                                ep_max=limits.epochs_max)


def _txt(g: Grid) -> str:
    return "\n".join("".join(map(str, r)) for r in g)


class ARCSession:
    """One policy: samples configurations, runs test-time training K at a time, scores by pass@2."""

    def __init__(self, model, tok, model_cfg: ModelConfig, cfg: ARCReSTEMConfig, seed: int):
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
    def base_many(self, tasks: list[ARCTask]) -> list[dict]:
        """In-context learning: the unadapted policy, the same prompts and vote."""
        return self._evaluate(tasks, [-1] * len(tasks))

    def adapt_many(self, items) -> list[dict]:
        out: list[dict | None] = [None] * len(items)
        jobs = []
        for n, (cond, task, text, seed) in enumerate(items):
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
                cands = [_inverse_or_none(r[2], text_to_grid(a)) for r, a in zip(rows, answers)
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

    def __init__(self, cfg: ARCReSTEMConfig):
        self.cfg = cfg

    def open(self, policy: str, round_: int) -> ARCSession:
        model_cfg = replace(self.cfg.model, name=policy)
        model, tok = load_model(model_cfg)
        return ARCSession(model, tok, model_cfg, self.cfg, derive_seed(self.cfg.seed, "engine", round_))

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


def validate(cfg: ARCReSTEMConfig) -> None:
    validate_outer(cfg.restem, cfg.selection, cfg.arc.k)
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


def run(cfg: ARCReSTEMConfig, rd: RunDir) -> dict:
    validate(cfg)
    oc = cfg.restem
    train = load_tasks(cfg.arc_data) if oc.rounds else []
    held_out = load_tasks(cfg.arc_eval_data)[: oc.eval_passages]
    need = oc.rounds * oc.contexts_per_round
    if len(train) < need:
        raise ConfigError(f"arc: {oc.rounds} rounds x {oc.contexts_per_round} tasks need {need} training tasks, "
                          f"arc_data gives {len(train)}")
    overlap = {t.uid for t in held_out} & {t.uid for t in train[:need]}
    if overlap:
        raise ConfigError(f"arc: held-out tasks are also training tasks: {', '.join(sorted(overlap))}")
    for name, tasks in (("arc_eval_data", held_out), ("arc_data", train[:need])):
        unscored = [t.uid for t in tasks if t.solutions is None]
        if unscored:
            raise ConfigError(f"{name}: no solutions for task(s) {', '.join(unscored)}, so no reward "
                              f"(set {name}.solutions)")
    return outer_loop(ARCDomain(cfg), train, held_out, cfg.model, oc, cfg.selection, cfg.m_step, cfg.wandb, cfg.seed,
                      rd, k=cfg.arc.k, runtime=cfg.runtime, sample_chunk=cfg.arc.sample_chunk)

