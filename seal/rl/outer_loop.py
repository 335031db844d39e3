"""The SEAL outer loop (ReST-EM), one implementation for every domain; recipe `restem` runs it on
knowledge incorporation, `seal.domains.arc.domain` (recipe `arc_restem`) on ARC.

    seal experiment=ki_demo                 # one small round on CPU (the README's main job)
    seal experiment=ki_restem               # the paper's setting (Qwen2.5-7B, SQuAD, GPU)
    seal experiment=ki_demo resume=runs/ki_demo/<stamp>   # continue a killed run

A round, for policy r (round 0 = the base model):
  1. evaluate policy r on held-out contexts: `eval_samples` self-edits per context, one inner loop
     each; beside it the unadapted policy (`base`) and the domain's references (knowledge: training
     on the passage alone, `passage`; ARC: the hand-tuned configuration, `oracle`)
  2. E-step on fresh training contexts: sample k self-edits per context (seeded, recorded in chunks), run each
     through the inner loop with `seeds_per_edit` seeds; score = mean adapted accuracy; the unadapted
     accuracy of each context is computed once and the gain recorded beside the score
  3. selection (`best_of_k`, `improves_baseline`, `score_above`, `top_fraction`); every edit records
     kept and why
  4. M-step: SFT of policy r on the kept (prompt, self-edit) pairs with TRL's SFTTrainer, loss on the
     completion only, LoRA (or full fine-tuning), merged and saved as safetensors; it is policy r+1
     and the next round's inner-loop base
After the last round the final policy is evaluated too, and `report.md` shows accuracy per round.
A domain (`Domain`/`Session` below) supplies contexts, sampling, scoring and the M-step prompt;
the loop, selection, M-step, records and report are shared.

Every inner loop is recorded the moment it finishes under (round, context, sample, seed); a policy
folder appears only once its M-step has finished (written to a temp folder, then renamed). So a
resumed run skips all finished work and, with the same seeds, ends with identical results.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from seal.generation.backends import BackendConfig
from seal.infra.config import ConfigError, derive_seed
from seal.rl.contexts import record_contexts, round_contexts
from seal.data.sources import DataConfig, Passage, load_passages
from seal.eval.graders import GraderConfig
from seal.inner_loop.trainer import InnerLoopConfig
from seal.domains.knowledge.task import KnowledgeTask, chunks
from seal.rl.m_step import MStepConfig, m_step, validate_m_step
from seal.models.loading import ModelConfig, load_model
from seal.eval.qa import QAEvalConfig
from seal.rl.report import eval_conditions, eval_key, eval_summary, summarise, write_report
from seal.infra.run_dir import RunDir
from seal.infra.runtime import LocalRunner, RuntimeConfig, make_runner
from seal.self_edit.sampling import chunk_seed, contexts_per_chunk, read_samples, sample_chunked
from seal.rl.selection import RULES, SelectionConfig, select
from seal.self_edit.formats import MODEL_FORMATS, SelfEditConfig, SelfEditError, check_format
from seal.infra.tracking import Tracker, WandbConfig


@dataclass
class OuterLoopConfig:
    rounds: int = 2
    contexts_per_round: int = 50
    seeds_per_edit: int = 3
    eval_passages: int = 200
    eval_samples: int = 1  # self-edits per held-out context (ARC: 5)
    references: str = "every_round"  # every_round | first_round: when to recompute base/passage references


@dataclass
class ReSTEMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # training contexts
    eval_data: DataConfig = field(default_factory=lambda: DataConfig(seed=1))  # held-out passages
    self_edit: SelfEditConfig = field(default_factory=SelfEditConfig)
    inner_loop: InnerLoopConfig = field(default_factory=InnerLoopConfig)
    qa_eval: QAEvalConfig = field(default_factory=QAEvalConfig)
    grader: GraderConfig = field(default_factory=GraderConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    restem: OuterLoopConfig = field(default_factory=OuterLoopConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    m_step: MStepConfig = field(default_factory=MStepConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0



def validate(cfg: ReSTEMConfig) -> None:
    import os

    if cfg.grader.kind == "openai" and not os.environ.get(cfg.grader.api_key_env):
        raise ConfigError(f"grader=openai needs an API key in the environment variable {cfg.grader.api_key_env} "
                          "(grader.api_key_env); it is checked before any model is loaded")
    if cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format: ReST-EM needs a model-written format ({', '.join(MODEL_FORMATS)}), "
                          f"got '{cfg.self_edit.format}'")
    try:
        check_format(cfg.self_edit.format, cfg.self_edit)  # a from_file template is read and checked here
    except SelfEditError as e:
        raise ConfigError(str(e)) from None
    validate_outer(cfg.restem, cfg.selection, cfg.self_edit.k)



def validate_outer(oc: OuterLoopConfig, selection: SelectionConfig, k: int) -> None:
    if selection.rule not in RULES:
        raise ConfigError(f"selection.rule: unknown rule '{selection.rule}' (choose {', '.join(RULES)})")
    if not 0 < selection.fraction <= 1:
        raise ConfigError(f"selection.fraction must be in (0, 1], got {selection.fraction}")
    if oc.rounds < 0:
        raise ConfigError(f"restem.rounds must be at least 0 (0: evaluate the policy only), got {oc.rounds}")
    for name in ("contexts_per_round", "seeds_per_edit", "eval_passages", "eval_samples"):
        if getattr(oc, name) < 1:
            raise ConfigError(f"restem.{name} must be at least 1, got {getattr(oc, name)}")
    if k < 1:
        raise ConfigError(f"self_edit.k must be at least 1, got {k}")
    if oc.references not in ("every_round", "first_round"):
        raise ConfigError(f"restem.references must be every_round or first_round, got '{oc.references}'")


# ---------------------------------------------------------------------------------------------- domains

class Session(Protocol):
    """One policy loaded for a round: what the outer loop asks of a domain."""
    adapters_per_batch: int  # K: recipes cut job lists into fixed chunks of K (resume batches identically)

    def sample(self, contexts: list, k: int, seed: int, desc: str
               ) -> tuple[list[list[str]], list[list[list[int]]], dict | None]:
        """k self-edits per context from the unadapted policy: their texts, the token ids each sample
        really drew (the M-step trains on exactly these), and optional sampling details to record."""

    def sample_prompt(self, context) -> str:
        """The exact text the policy was given to write a self-edit (chat template applied): the M-step's
        prompt, tokenized by `seal.models.loading.prompt_ids` as sampling tokenized it."""

    def adapter_info(self) -> dict:
        """The inner loop's adapter: target modules and trainable parameters (`InnerLoop.adapter_info`)."""

    def base_many(self, contexts: list) -> list[dict]:
        """The unadapted policy's score per context: {accuracy, ...}, in one call."""

    def adapt_many(self, items: list[tuple[str, Any, str, int]]) -> list[dict]:
        """(condition, context, self-edit text, seed) -> {accuracy, ...} or {skipped: reason, ...}.
        condition is "self_edit" or one of the domain's references; up to K items per call."""

    def close(self) -> None: ...


class Domain(Protocol):
    title: str  # report heading
    unit: str  # what standard errors are over ("questions", "tasks")
    references: tuple[str, ...]  # reference conditions evaluated beside self_edit and base
    labels: dict[str, str]  # condition -> column label

    def open(self, policy: str, round_: int) -> Session: ...

    def outcomes(self, record: dict, context) -> list[float]:
        """The 0/1 (or fractional) outcomes a record contributes to accuracy and its standard error."""

    def describe(self) -> str:
        """One line of settings for the report."""

    def report_sections(self, rd: RunDir) -> list[str]:
        """Extra markdown lines for the report (domain-specific tables)."""


class KnowledgeDomain:
    """Knowledge incorporation: contexts are passages, a self-edit is text to train on, the score is
    closed-book accuracy on the passage's questions; reference `passage` trains on the passage alone."""
    title = "ReST-EM (SEAL outer loop) on knowledge incorporation"
    unit = "questions"
    references = ("passage",)
    labels = {"self_edit": "self-edit accuracy", "base": "base (no update)", "passage": "passage only"}

    def __init__(self, cfg: ReSTEMConfig):
        self.cfg = cfg

    def open(self, policy: str, round_: int) -> KnowledgeSession:
        cfg = self.cfg
        model_cfg = replace(cfg.model, name=policy)
        model, tok = load_model(model_cfg)
        # with an engine worker (backend=vllm) each policy gets a fresh engine process
        task = KnowledgeTask(model, tok, model_cfg, cfg.inner_loop, cfg.qa_eval, cfg.grader, cfg.self_edit,
                             backend=cfg.backend, seed=derive_seed(cfg.seed, "engine", round_))
        return KnowledgeSession(task, cfg.self_edit)

    def outcomes(self, record: dict, context: Passage) -> list[float]:
        if "questions" in record:
            return [float(q["correct"]) for q in record["questions"]]
        return [0.0] * len(context.questions)  # a skipped edit scores 0 on every question

    def describe(self) -> str:
        c = self.cfg
        return (f"Model `{c.model.name}`; training data `{c.data.source}`, held-out `{c.eval_data.source}` "
                f"({c.restem.eval_passages} passages); format `{c.self_edit.format}`; grader `{c.grader.kind}`.")

    def report_sections(self, rd: RunDir) -> list[str]:
        return []


class KnowledgeSession:
    def __init__(self, task: KnowledgeTask, se_cfg: SelfEditConfig):
        self.task, self.fmt, self.se_cfg = task, se_cfg.format, se_cfg
        self.adapters_per_batch = task.adapters_per_batch

    def sample(self, contexts, k, seed, desc):
        out = self.task.sample(contexts, self.fmt, k, seed, desc=desc, with_ids=True)
        return [[t for t, _ in row] for row in out], [[ids for _, ids in row] for row in out], None

    def base_many(self, contexts):
        return [{"accuracy": acc, "questions": qs} for acc, qs in self.task.base_accuracies(contexts)]

    def adapt_many(self, items):
        return self.task.adapt_and_evaluate_many([(p, text, self.fmt, seed) if cond == "self_edit" else (p, "", "none", seed)
                                                  for cond, p, text, seed in items])

    def sample_prompt(self, context):
        return self.task.prompt(context, self.fmt)

    def adapter_info(self):
        return self.task.inner.adapter_info()

    def close(self):
        self.task.close()


# ---------------------------------------------------------------------------------------------- the loop

def run(cfg: ReSTEMConfig, rd: RunDir) -> dict:
    """Recipe `restem`: the outer loop on knowledge incorporation."""
    validate(cfg)
    oc = cfg.restem
    need = oc.rounds * oc.contexts_per_round
    train = load_passages(cfg.data)
    if len(train) < need:
        raise ConfigError(f"restem: {oc.rounds} rounds x {oc.contexts_per_round} contexts need {need} training "
                          f"passages, data gives {len(train)} (raise data.num_passages / data.limit)")
    held_out = load_passages(cfg.eval_data)[: oc.eval_passages]
    overlap = {p.context for p in held_out} & {p.context for p in train}
    if overlap:
        raise ConfigError(f"restem: {len(overlap)} held-out passages are also training contexts; "
                          "use a different eval_data seed/offset/split")
    return outer_loop(KnowledgeDomain(cfg), train, held_out, cfg.model, oc, cfg.selection, cfg.m_step, cfg.wandb,
                      cfg.seed, rd, k=cfg.self_edit.k, runtime=cfg.runtime, sample_chunk=cfg.self_edit.sample_chunk)


def outer_loop(domain: Domain, train: list, held_out: list, model_cfg: ModelConfig, oc: OuterLoopConfig,
               selection: SelectionConfig, m_cfg: MStepConfig, wandb_cfg: WandbConfig, seed: int, rd: RunDir,
               k: int, runtime: RuntimeConfig | None = None, sample_chunk: int = 0) -> dict:
    """ReST-EM rounds over any domain: evaluate policy r, E-step, selection, M-step -> policy r+1.
    Round r trains on `round_contexts(train, oc, seed)[r]`; self-edits are sampled `sample_chunk` contexts
    at a time (`sample_in_chunks`)."""
    validate_m_step(m_cfg)
    rounds = round_contexts(train, oc, seed)
    record_contexts(rd, rounds)
    tracker = Tracker(wandb_cfg, rd, rd.config, name=f"restem-{rd.path.name}")
    runner = make_runner(runtime or RuntimeConfig(), domain)
    evals = {}
    try:
        for r in range(oc.rounds + 1):
            # policy r: the base model, or the folder the previous M-step wrote (kept relative to the run folder)
            policy = model_cfg.name if r == 0 else _policy_path(rd, rd.get(rd.key("m_step", r - 1))["policy"])
            session = domain.open(policy, r)
            if not rd.has(rd.key("adapter", r)):
                rd.put(rd.key("adapter", r), {"round": r, **session.adapter_info()})
            evals[r] = evaluate_policy(domain, session, rd, r, held_out, oc.eval_samples, seed,
                                       eval_conditions(domain, oc, r), tracker, runner, policy, sample_chunk)
            if r == oc.rounds:
                session.close()
                break
            contexts = rounds[r]
            edits = e_step(session, rd, r, contexts, k, oc.seeds_per_edit, seed, tracker, runner, policy,
                           sample_chunk)
            select(edits, selection)
            kept = [e for e in edits if e["kept"]]
            if not rd.has(rd.key("select", r)):
                rd.put(rd.key("select", r), {"round": r, "rule": selection.rule, "edits": edits, "n_kept": len(kept)})
            pairs = m_step_pairs(session, rd, r, contexts, kept)
            session.close()  # the engine's GPU memory is the M-step's now
            del session
            gc.collect()
            done = rd.get(rd.key("m_step", r))
            if done is None or not Path(_policy_path(rd, done["policy"])).is_dir():
                if not pairs:  # nothing passed selection: the policy carries over unchanged, and the report says so
                    rd.put(rd.key("m_step", r), {"round": r, "policy": done["policy"] if done else policy,
                                                 "skipped": f"selection '{selection.rule}' kept no self-edit"})
                    continue
                name = f"policy_round{r + 1}"
                stats = m_step(policy, model_cfg, pairs, m_cfg, derive_seed(seed, "m_step", r), rd.path / name)
                rd.put(rd.key("m_step", r), {"round": r, "policy": name, **stats})
                rd.metric(round=r, m_step_loss=stats["train_loss"], m_step_pairs=len(pairs))
                tracker.log({"m_step/loss": stats["train_loss"], "m_step/pairs": len(pairs), "round": r})
    finally:
        runner.close()
    results = summarise(rd, evals, seed=seed)
    write_report(domain, oc, selection, m_cfg, k, seed, rd, results)
    tracker.finish()
    return results


def m_step_pairs(session: Session, rd: RunDir, r: int, contexts: list, kept: list[dict]) -> list[dict]:
    """The kept self-edits as M-step examples: the exact prompt text the policy was sampled with and
    the exact token ids it drew (a record from before ids were kept falls back to the text)."""
    by_uid = {c.uid: c for c in contexts}
    ids = read_samples(rd, rd.key("estep", r, "completions")).get("completion_ids", {})
    pairs = []
    for e in kept:
        pair = {"prompt": session.sample_prompt(by_uid[e["context"]]), "completion": e["self_edit"]}
        if e["context"] in ids:
            pair["completion_ids"] = ids[e["context"]][e["sample"]]
        pairs.append(pair)
    return pairs


def _policy_path(rd: RunDir, policy: str) -> str:
    """A policy recorded as a folder name inside the run folder, or a model name/path as given."""
    inside = rd.path / policy
    # absolute, so that workers in other processes (runtime=ray) find it whatever their working folder
    return str(inside.resolve()) if inside.is_dir() or policy.startswith("policy_round") else policy


def record_base(session: Session, rd: RunDir, contexts: list, key, head) -> None:
    """The unadapted policy's score per context, in fixed chunks of K, one write per chunk."""
    for group in chunks(contexts, session.adapters_per_batch):
        if not all(rd.has(key(c)) for c in group):
            rd.put_many([(key(c), {**head(c), **out}) for c, out in zip(group, session.base_many(group))])


def evaluate_policy(domain: Domain, session: Session, rd: RunDir, r: int, held_out: list, n_samples: int, seed: int,
                    conditions: list[str], tracker: Tracker, runner=None, policy: str = "",
                    sample_chunk: int = 0) -> dict:
    """Held-out score of policy r under `conditions` (`restem_report.eval_conditions`): n_samples
    self-edits per context, one inner loop each; and, when listed, the unadapted policy (`base`) and the
    domain's references, once per context. The inner loops run on `runner` (`seal.infra.runtime`; default:
    this session, in order)."""
    runner = runner or LocalRunner()
    sampled = sample_in_chunks(session, rd, "eval", r, held_out, n_samples, seed, sample_chunk)
    comps = {uid: [t] if isinstance(t, str) else t for uid, t in sampled["completions"].items()}
    references = [c for c in conditions if c in domain.references]
    if "base" in conditions:
        record_base(session, rd, held_out, key=lambda c: eval_key(rd, r, "base", c.uid),
                    head=lambda c: {"round": r, "condition": "base", "passage": c.uid})
    jobs = [("self_edit", c, i) for c in held_out for i in range(n_samples)]
    jobs = [("self_edit", c, 0) for c in held_out] + [j for j in jobs if j[2]] + [(ref, c, 0) for ref in references
                                                                               for c in held_out]
    todo = [ch for ch in chunks(jobs, session.adapters_per_batch)
            if not all(rd.has(eval_key(rd, r, cond, c.uid, i)) for cond, c, i in ch)]
    texts = [[comps[c.uid][i] if cond == "self_edit" else "" for cond, c, i in ch] for ch in todo]
    items = [[(cond, c, text, derive_seed(seed, "eval_inner", r, cond, c.uid, *([i] if i else [])))
              for (cond, c, i), text in zip(ch, tx)] for ch, tx in zip(todo, texts)]
    bar = tqdm(total=sum(len(ch) for ch in todo), desc=f"round {r} eval: inner loops", disable=not todo)
    for j, outs in runner.map(session, policy, r, items):  # chunks arrive as they finish
        rd.put_many([(eval_key(rd, r, cond, c.uid, i), {"round": r, "condition": cond, "passage": c.uid,
                                                        **({"sample": i} if i else {}), "self_edit": text, **out})
                     for (cond, c, i), text, out in zip(todo[j], texts[j], outs)])
        bar.update(len(todo[j]))
    bar.close()
    summary = eval_summary(domain, rd, r, held_out, n_samples, conditions)
    rd.metric(round=r, **{f"eval_{c}": v["accuracy"] for c, v in summary.items()})
    tracker.log({f"eval/{c}": v["accuracy"] for c, v in summary.items()} | {"round": r})
    return summary


def sample_in_chunks(session: Session, rd: RunDir, phase: str, r: int, contexts: list, per_context: int, seed: int,
                     sample_chunk: int) -> dict:
    """`per_context` self-edits per context, sampled and recorded in fixed chunks of contexts
    (`<phase>/<r>/completions/<j>`, `seal.self_edit.sampling`): a resumed run redoes at most one chunk."""
    size = contexts_per_chunk(per_context, sample_chunk)
    n_chunks = -(-len(contexts) // size)

    def draw(j: int, group: list) -> dict:
        s = chunk_seed(seed, (f"{phase}_sampling", r), j)
        label = "E-step" if phase == "estep" else "eval"
        texts, ids, info = session.sample(group, per_context, s,
                                          desc=f"round {r} {label}: sampling (chunk {j + 1} of {n_chunks})")
        rec = {"round": r, "chunk": j, "seed": s, "completions": {c.uid: t for c, t in zip(group, texts)}}
        if phase == "estep":  # the M-step trains on exactly the ids the policy drew
            rec["completion_ids"] = {c.uid: i for c, i in zip(group, ids)}
        return {**rec, **({"sampling": info} if info else {})}

    return sample_chunked(rd, rd.key(phase, r, "completions"), contexts, size, draw)


def e_step(session: Session, rd: RunDir, r: int, contexts: list, k: int, n_seeds: int, seed: int,
           tracker: Tracker, runner=None, policy: str = "", sample_chunk: int = 0) -> list[dict]:
    """Sample k self-edits per context and score each with n_seeds inner loops (on `runner`, as in
    `evaluate_policy`); returns edit summaries."""
    runner = runner or LocalRunner()
    record_base(session, rd, contexts, key=lambda c: rd.key("estep", r, "base", c.uid),
                head=lambda c: {"round": r, "passage": c.uid})
    comps = sample_in_chunks(session, rd, "estep", r, contexts, k, seed, sample_chunk)["completions"]
    jobs = [(c, i, s) for c in contexts for i in range(k) for s in range(n_seeds)]
    todo = [ch for ch in chunks(jobs, session.adapters_per_batch)
            if not all(rd.has(rd.key("estep", r, c.uid, i, s)) for c, i, s in ch)]
    items = [[("self_edit", c, comps[c.uid][i], derive_seed(seed, "estep_inner", r, c.uid, i, s)) for c, i, s in ch]
             for ch in todo]
    bar = tqdm(total=sum(len(ch) for ch in todo), desc=f"round {r} E-step: inner loops", disable=not todo)
    for j, outs in runner.map(session, policy, r, items):  # chunks arrive as they finish
        ch = todo[j]
        recs = rd.put_many([(rd.key("estep", r, c.uid, i, s), {"round": r, "context": c.uid, "sample": i,
                                                                "seed_index": s, **out})
                            for (c, i, s), out in zip(ch, outs)])
        for (c, i, s), rec in zip(ch, recs):
            if "accuracy" in rec:
                tracker.log({"estep/accuracy": rec["accuracy"], "estep/gain": rec["accuracy"] - rd.get(
                    rd.key("estep", r, "base", c.uid))["accuracy"], "round": r})
        bar.update(len(ch))
    bar.close()
    edits = []
    for c in contexts:
        base = rd.get(rd.key("estep", r, "base", c.uid))["accuracy"]
        for i in range(k):
            runs = [rd.get(rd.key("estep", r, c.uid, i, s)) for s in range(n_seeds)]
            skipped = [x["skipped"] for x in runs if "skipped" in x]
            score = statistics.fmean(x.get("accuracy", 0.0) for x in runs)  # an unusable edit scores 0
            edits.append({"context": c.uid, "sample": i, "score": score, "base": base, "gain": score - base,
                          "seed_scores": [x.get("accuracy") for x in runs], "self_edit": comps[c.uid][i],
                          "skipped": skipped[0] if skipped else None})
    return edits


