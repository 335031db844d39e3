"""Recipe `restem`: the SEAL outer loop (ReST-EM) for knowledge incorporation.

    seal experiment=ki_demo                 # one small round on CPU (the README's main job)
    seal experiment=ki_restem               # the paper's setting (Qwen2.5-7B, SQuAD, GPU)
    seal experiment=ki_demo resume=runs/ki_demo/<stamp>   # continue a killed run

A round, for policy r (round 0 = the base model):
  1. evaluate policy r on held-out passages: one self-edit per passage, one inner loop, closed-book
     accuracy; beside it the unadapted policy (`base`) and training on the passage alone (`passage`)
  2. E-step on fresh training contexts: sample k self-edits per context (one seeded batch), run each
     through the inner loop with `seeds_per_edit` seeds; score = mean adapted accuracy; the unadapted
     accuracy of each context is computed once and the gain recorded beside the score
  3. selection (`best_of_k`, `improves_baseline`, `top_fraction`); every edit records kept and why
  4. M-step: SFT of policy r on the kept (prompt, self-edit) pairs with TRL's SFTTrainer, loss on the
     completion only, LoRA (or full fine-tuning), merged and saved as safetensors; it is policy r+1
     and the next round's inner-loop base
After the last round the final policy is evaluated too, and `report.md` shows accuracy per round.

Every inner loop is recorded the moment it finishes under (round, context, sample, seed); a policy
folder appears only once its M-step has finished (written to a temp folder, then renamed). So a
resumed run skips all finished work and, with the same seeds, ends with identical results.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seal.backends import BackendConfig
from seal.config import ConfigError, derive_seed
from seal.data import DataConfig, Passage, load_passages
from seal.graders import GraderConfig
from seal.inner_loop import InnerLoopConfig
from seal.knowledge import KnowledgeTask, chunks, record_base_accuracies
from seal.models import ModelConfig, load_model
from seal.qa_eval import QAEvalConfig, mean_stderr
from seal.run_dir import RunDir
from seal.self_edits import MODEL_FORMATS, SelfEditConfig, self_edit_prompt
from seal.tracking import Tracker, WandbConfig

RULES = ("best_of_k", "improves_baseline", "top_fraction")


@dataclass
class SelectionConfig:
    rule: str = "best_of_k"  # best_of_k | improves_baseline | top_fraction
    threshold: float = 0.0  # improves_baseline: keep edits whose gain exceeds this
    fraction: float = 0.2  # top_fraction: keep this share of the round's edits, by score
    min_score: float | None = None  # best_of_k / top_fraction: also require score >= this (None: no floor)


@dataclass
class MStepConfig:
    full_finetune: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lr: float = 3e-4
    epochs: int = 2
    batch_size: int = 1
    grad_accum: int = 10  # effective batch 10 (REFERENCE 1.1)
    scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_length: int = 2048


@dataclass
class OuterLoopConfig:
    rounds: int = 2
    contexts_per_round: int = 50
    seeds_per_edit: int = 3
    eval_passages: int = 200
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
    seed: int = 0


def validate(cfg: ReSTEMConfig) -> None:
    if cfg.selection.rule not in RULES:
        raise ConfigError(f"selection.rule: unknown rule '{cfg.selection.rule}' (choose {', '.join(RULES)})")
    if not 0 < cfg.selection.fraction <= 1:
        raise ConfigError(f"selection.fraction must be in (0, 1], got {cfg.selection.fraction}")
    if cfg.self_edit.format not in MODEL_FORMATS:
        raise ConfigError(f"self_edit.format: ReST-EM needs a model-written format ({', '.join(MODEL_FORMATS)}), "
                          f"got '{cfg.self_edit.format}'")
    for name in ("rounds", "contexts_per_round", "seeds_per_edit", "eval_passages"):
        if getattr(cfg.restem, name) < 1:
            raise ConfigError(f"restem.{name} must be at least 1, got {getattr(cfg.restem, name)}")
    if cfg.self_edit.k < 1:
        raise ConfigError(f"self_edit.k must be at least 1, got {cfg.self_edit.k}")
    if cfg.restem.references not in ("every_round", "first_round"):
        raise ConfigError(f"restem.references must be every_round or first_round, got '{cfg.restem.references}'")


# --------------------------------------------------------------------------------------------- selection

def select(edits: list[dict], cfg: SelectionConfig) -> list[dict]:
    """Mark each edit {context, sample, score, gain} with `kept` and `why`; returns the same list."""
    by_ctx: dict[str, list[dict]] = {}
    for e in edits:
        by_ctx.setdefault(e["context"], []).append(e)
    floor = cfg.min_score
    if cfg.rule == "best_of_k":
        for ctx_edits in by_ctx.values():
            best = max(ctx_edits, key=lambda e: (e["score"], -e["sample"]))  # ties: the earliest sample
            for e in ctx_edits:
                if e is not best:
                    e["kept"], e["why"] = False, f"not the best of {len(ctx_edits)} (best score {best['score']:.3f})"
                elif floor is not None and e["score"] < floor:
                    e["kept"], e["why"] = False, f"best of {len(ctx_edits)} but score {e['score']:.3f} < {floor}"
                else:
                    e["kept"], e["why"] = True, f"best of {len(ctx_edits)} (score {e['score']:.3f})"
    elif cfg.rule == "improves_baseline":
        for e in edits:
            e["kept"] = e["gain"] > cfg.threshold
            e["why"] = f"gain {e['gain']:+.3f} {'>' if e['kept'] else '<='} threshold {cfg.threshold}"
    elif cfg.rule == "top_fraction":
        n_keep = max(1, round(cfg.fraction * len(edits)))
        ranked = sorted(edits, key=lambda e: (-e["score"], e["context"], e["sample"]))
        cut = ranked[n_keep - 1]["score"]
        for rank, e in enumerate(ranked):
            e["kept"] = rank < n_keep and (floor is None or e["score"] >= floor)
            e["why"] = (f"rank {rank + 1} of {len(edits)}, top {n_keep} kept (cut-off score {cut:.3f})"
                        + ("" if floor is None or e["score"] >= floor else f", below floor {floor}"))
    else:
        raise ConfigError(f"selection.rule: unknown rule '{cfg.rule}'")
    return edits


# ------------------------------------------------------------------------------------------------ M-step

def m_step(policy_path: str, model_cfg: ModelConfig, pairs: list[dict], cfg: MStepConfig, seed: int, out: Path,
           chat: bool) -> dict:
    """SFT the policy on (prompt, completion) pairs, loss on the completion only; merge; save to `out`."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(replace(model_cfg, name=policy_path))
    if chat:
        rows = [{"prompt": [{"role": "user", "content": p["prompt"]}],
                 "completion": [{"role": "assistant", "content": p["completion"]}]} for p in pairs]
    else:
        rows = [{"prompt": p["prompt"], "completion": p["completion"]} for p in pairs]
    work = out.parent / f".{out.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    args = SFTConfig(
        output_dir=str(work / "trainer"), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio, max_length=cfg.max_length, completion_only_loss=True,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=seed,
        data_seed=seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=False, dataloader_num_workers=0,
        # TRL turns bf16 autocast on when it is left unset; on a CPU without bf16 units that made each
        # step ~30x slower (measured: 110 s for 354 tokens). Follow the model's own dtype instead.
        bf16=model_cfg.dtype == "bfloat16" and torch.cuda.is_available(), fp16=False,
    )
    peft_config = None if cfg.full_finetune else LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=peft_config)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trained = trainer.model
    merged = trained if cfg.full_finetune else trained.merge_and_unload()
    merged.save_pretrained(work / "policy", safe_serialization=True)
    tok.save_pretrained(work / "policy")
    if out.exists():
        shutil.rmtree(out)
    os.replace(work / "policy", out)  # the policy folder appears only when complete
    shutil.rmtree(work, ignore_errors=True)
    del trainer, trained, merged, model
    gc.collect()
    return {"steps": result.global_step, "train_loss": result.training_loss, "losses": losses,
            "pairs": len(pairs)}


# ---------------------------------------------------------------------------------------------- the loop

def run(cfg: ReSTEMConfig, rd: RunDir) -> dict:
    validate(cfg)
    oc = cfg.restem
    need = oc.rounds * oc.contexts_per_round
    train = load_passages(cfg.data)
    if len(train) < need:
        raise ConfigError(f"restem: {oc.rounds} rounds x {oc.contexts_per_round} contexts need {need} training "
                          f"passages, data gives {len(train)} (raise data.num_passages / data.limit)")
    held_out = load_passages(cfg.eval_data)[: oc.eval_passages]
    overlap = {p.context for p in held_out} & {p.context for p in train[:need]}
    if overlap:
        raise ConfigError(f"restem: {len(overlap)} held-out passages are also training contexts; "
                          "use a different eval_data seed/offset/split")
    fmt = cfg.self_edit.format
    k = cfg.self_edit.k
    tracker = Tracker(cfg.wandb, rd, rd.config, name=f"restem-{rd.path.name}")
    evals = {}
    for r in range(oc.rounds + 1):
        # policy r: the base model, or the folder the previous M-step wrote (kept relative to the run folder)
        policy = cfg.model.name if r == 0 else _policy_path(rd, rd.get(rd.key("m_step", r - 1))["policy"])
        model, tok = load_model(replace(cfg.model, name=policy))
        # with an engine worker (backend=vllm) each policy gets a fresh engine process
        task = KnowledgeTask(model, tok, replace(cfg.model, name=policy), cfg.inner_loop, cfg.qa_eval, cfg.grader,
                             cfg.self_edit, backend=cfg.backend, seed=derive_seed(cfg.seed, "engine", r))
        refs = oc.references == "every_round" or r == 0
        evals[r] = evaluate_policy(task, rd, r, held_out, fmt, cfg.seed, refs, tracker)
        if r == oc.rounds:
            task.close()
            break
        contexts = train[r * oc.contexts_per_round:(r + 1) * oc.contexts_per_round]
        edits = e_step(task, rd, r, contexts, fmt, k, oc.seeds_per_edit, cfg.seed, tracker)
        select(edits, cfg.selection)
        kept = [e for e in edits if e["kept"]]
        if not rd.has(rd.key("select", r)):
            rd.put(rd.key("select", r), {"round": r, "rule": cfg.selection.rule, "edits": edits,
                                         "n_kept": len(kept)})
        by_uid = {p.uid: p for p in contexts}
        # the user turn only: the M-step applies the chat template itself
        pairs = [{"prompt": self_edit_prompt(by_uid[e["context"]], fmt, cfg.self_edit), "completion": e["self_edit"]}
                 for e in kept]
        chat = task.chat
        task.close()  # the engine's GPU memory is the M-step's now
        del task, model
        gc.collect()
        done = rd.get(rd.key("m_step", r))
        if done is None or not Path(_policy_path(rd, done["policy"])).is_dir():
            if not pairs:  # nothing passed selection: the policy carries over unchanged, and the report says so
                rd.put(rd.key("m_step", r), {"round": r, "policy": done["policy"] if done else policy,
                                             "skipped": f"selection '{cfg.selection.rule}' kept no self-edit"})
                continue
            name = f"policy_round{r + 1}"
            stats = m_step(policy, cfg.model, pairs, cfg.m_step, derive_seed(cfg.seed, "m_step", r), rd.path / name,
                           chat=chat)
            rd.put(rd.key("m_step", r), {"round": r, "policy": name, **stats})
            rd.metric(round=r, m_step_loss=stats["train_loss"], m_step_pairs=len(pairs))
            tracker.log({"m_step/loss": stats["train_loss"], "m_step/pairs": len(pairs), "round": r})
    results = summarise(cfg, rd, evals)
    write_report(cfg, rd, results)
    tracker.finish()
    return results


def _policy_path(rd: RunDir, policy: str) -> str:
    """A policy recorded as a folder name inside the run folder, or a model name/path as given."""
    inside = rd.path / policy
    return str(inside) if inside.is_dir() or policy.startswith("policy_round") else policy


def evaluate_policy(task: KnowledgeTask, rd: RunDir, r: int, held_out: list[Passage], fmt: str, seed: int,
                    refs: bool, tracker: Tracker) -> dict:
    """Held-out accuracy of policy r: one self-edit per passage, one inner loop; plus references."""
    comp_key = rd.key("eval", r, "completions")
    if not rd.has(comp_key):
        s = derive_seed(seed, "eval_sampling", r)
        texts = task.sample(held_out, fmt, 1, s, desc=f"round {r} eval: sampling")
        rd.put(comp_key, {"round": r, "seed": s, "completions": {p.uid: t[0] for p, t in zip(held_out, texts)}})
    comps = rd.get(comp_key)["completions"]
    conditions = ["self_edit"] + (["base", "passage"] if refs else [])
    k = task.adapters_per_batch
    if "base" in conditions:
        record_base_accuracies(task, rd, held_out, key=lambda p: rd.key("eval", r, "base", p.uid),
                               head=lambda p: {"round": r, "condition": "base", "passage": p.uid})
    jobs = [(c, p) for c in conditions if c != "base" for p in held_out]
    todo = [c for c in chunks(jobs, k) if not all(rd.has(rd.key("eval", r, cond, p.uid)) for cond, p in c)]
    bar = tqdm(total=sum(len(c) for c in todo), desc=f"round {r} eval: inner loops", disable=not todo)
    for chunk in todo:
        items = [(p, comps[p.uid], fmt) if cond == "self_edit" else (p, "", "none") for cond, p in chunk]
        outs = task.adapt_and_evaluate_many([(p, text, f, derive_seed(seed, "eval_inner", r, cond, p.uid))
                                             for (cond, _), (p, text, f) in zip(chunk, items)])
        rd.put_many([(rd.key("eval", r, cond, p.uid), {"round": r, "condition": cond, "passage": p.uid,
                                                       "self_edit": text, **out})
                     for (cond, p), (_, text, _), out in zip(chunk, items, outs)])
        bar.update(len(chunk))
    bar.close()
    summary = {}
    for cond in conditions:
        recs = [rd.get(rd.key("eval", r, cond, p.uid)) for p in held_out]
        accs = [x["accuracy"] if "accuracy" in x else 0.0 for x in recs]  # a skipped edit scores 0
        qvals = [float(q["correct"]) for x in recs if "questions" in x for q in x["questions"]]
        qvals += [0.0 for x, p in zip(recs, held_out) if "questions" not in x for _ in p.questions]
        acc, se = mean_stderr(qvals)
        summary[cond] = {"accuracy": acc, "stderr": se, "n_questions": len(qvals), "passage_mean": statistics.fmean(accs),
                         "n_skipped": sum("skipped" in x for x in recs)}
    rd.metric(round=r, **{f"eval_{c}": v["accuracy"] for c, v in summary.items()})
    tracker.log({f"eval/{c}": v["accuracy"] for c, v in summary.items()} | {"round": r})
    return summary


def e_step(task: KnowledgeTask, rd: RunDir, r: int, contexts: list[Passage], fmt: str, k: int, n_seeds: int,
           seed: int, tracker: Tracker) -> list[dict]:
    """Sample k self-edits per context and score each with n_seeds inner loops; returns edit summaries."""
    record_base_accuracies(task, rd, contexts, key=lambda p: rd.key("estep", r, "base", p.uid),
                           head=lambda p: {"round": r, "passage": p.uid})
    comp_key = rd.key("estep", r, "completions")
    if not rd.has(comp_key):
        s = derive_seed(seed, "estep_sampling", r)
        texts = task.sample(contexts, fmt, k, s, desc=f"round {r} E-step: sampling")
        rd.put(comp_key, {"round": r, "seed": s, "completions": {p.uid: t for p, t in zip(contexts, texts)}})
    comps = rd.get(comp_key)["completions"]
    jobs = [(p, i, s) for p in contexts for i in range(k) for s in range(n_seeds)]
    todo = [c for c in chunks(jobs, task.adapters_per_batch)
            if not all(rd.has(rd.key("estep", r, p.uid, i, s)) for p, i, s in c)]
    bar = tqdm(total=sum(len(c) for c in todo), desc=f"round {r} E-step: inner loops", disable=not todo)
    for chunk in todo:
        outs = task.adapt_and_evaluate_many([(p, comps[p.uid][i], fmt, derive_seed(seed, "estep_inner", r, p.uid, i, s))
                                             for p, i, s in chunk])
        recs = rd.put_many([(rd.key("estep", r, p.uid, i, s), {"round": r, "context": p.uid, "sample": i,
                                                                "seed_index": s, **out})
                            for (p, i, s), out in zip(chunk, outs)])
        for (p, i, s), rec in zip(chunk, recs):
            if "accuracy" in rec:
                tracker.log({"estep/accuracy": rec["accuracy"], "estep/gain": rec["accuracy"] - rd.get(
                    rd.key("estep", r, "base", p.uid))["accuracy"], "round": r})
        bar.update(len(chunk))
    bar.close()
    edits = []
    for p in contexts:
        base = rd.get(rd.key("estep", r, "base", p.uid))["accuracy"]
        for i in range(k):
            runs = [rd.get(rd.key("estep", r, p.uid, i, s)) for s in range(n_seeds)]
            skipped = [x["skipped"] for x in runs if "skipped" in x]
            score = statistics.fmean(x.get("accuracy", 0.0) for x in runs)  # an unusable edit scores 0
            edits.append({"context": p.uid, "sample": i, "score": score, "base": base, "gain": score - base,
                          "seed_scores": [x.get("accuracy") for x in runs], "self_edit": comps[p.uid][i],
                          "skipped": skipped[0] if skipped else None})
    return edits


# ---------------------------------------------------------------------------------------------- reporting

def summarise(cfg: ReSTEMConfig, rd: RunDir, evals: dict) -> dict:
    rounds = []
    for r in sorted(evals):
        entry = {"round": r, "eval": evals[r]}
        sel = rd.get(rd.key("select", r))
        if sel:
            edits = sel["edits"]
            entry["e_step"] = {
                "n_edits": len(edits), "n_kept": sel["n_kept"],
                "mean_score": statistics.fmean(e["score"] for e in edits),
                "mean_gain": statistics.fmean(e["gain"] for e in edits),
                "kept_mean_gain": statistics.fmean(e["gain"] for e in edits if e["kept"]) if sel["n_kept"] else None,
                "kept_not_beating_base": sum(1 for e in edits if e["kept"] and e["gain"] <= 0),
                "mean_words": statistics.fmean(len(e["self_edit"].split()) for e in edits),
                "n_unusable": sum(1 for e in edits if e["skipped"]),
            }
        ms = rd.get(rd.key("m_step", r))
        if ms:
            entry["m_step"] = {k: ms[k] for k in ("steps", "train_loss", "pairs", "skipped") if k in ms}
        rounds.append(entry)
    results = {"rounds": rounds, "final": rounds[-1]["eval"],
               "conditions": {f"round{e['round']}_{c}": v for e in rounds for c, v in e["eval"].items()}}
    rd.write_json("results.json", results)
    return results


def write_report(cfg: ReSTEMConfig, rd: RunDir, results: dict) -> None:
    from seal.report import line_plot, md_table, print_table

    rounds = results["rounds"]
    conds = ["self_edit", "base", "passage"]
    rows = []
    for e in rounds:
        ev = e["eval"]
        rows.append([e["round"]] + [f"{ev[c]['accuracy']:.3f} ± {ev[c]['stderr']:.3f}" if c in ev else "—" for c in conds]
                    + [ev["self_edit"]["n_questions"]])
    headers = ["policy (round)", "self-edit accuracy", "base (no update)", "passage only", "questions"]
    print_table("ReST-EM: held-out accuracy per round", headers, rows)
    xs = [e["round"] for e in rounds]
    series = {c: ([e["eval"][c]["accuracy"] for e in rounds if c in e["eval"]],
                  [e["eval"][c]["stderr"] for e in rounds if c in e["eval"]]) for c in conds}
    series = {c: v for c, v in series.items() if v[0]}
    if len(series.get("base", ([], []))[0]) == 1:  # references only at round 0: draw them flat
        for c in ("base", "passage"):
            if c in series:
                series[c] = (series[c][0] * len(xs), series[c][1] * len(xs))
    line_plot(rd.path / "accuracy_per_round.png", xs, series, title="Held-out closed-book accuracy",
              xlabel="ReST-EM round (policy)")
    erows = [[e["round"], x["n_edits"], x["n_kept"], x["mean_score"], x["mean_gain"],
              x["kept_mean_gain"] if x["kept_mean_gain"] is not None else "—", x["kept_not_beating_base"],
              x["mean_words"], x["n_unusable"], e.get("m_step", {}).get("train_loss", "—")]
             for e in rounds if (x := e.get("e_step"))]
    _reward_histogram(rd)
    oc = cfg.restem
    lines = [
        "# ReST-EM (SEAL outer loop) on knowledge incorporation", "",
        f"Model `{cfg.model.name}`; training data `{cfg.data.source}`, held-out `{cfg.eval_data.source}` "
        f"({oc.eval_passages} passages); {oc.rounds} round(s) x {oc.contexts_per_round} contexts x "
        f"{cfg.self_edit.k} self-edits x {oc.seeds_per_edit} seeds; format `{cfg.self_edit.format}`; selection "
        f"`{cfg.selection.rule}`; M-step {'full FT' if cfg.m_step.full_finetune else f'LoRA r={cfg.m_step.lora_r}'} "
        f"lr {cfg.m_step.lr}, {cfg.m_step.epochs} epochs; grader `{cfg.grader.kind}`; seed {cfg.seed}.", "",
        "## Held-out accuracy per round", "", md_table(headers, rows), "",
        "![accuracy per round](accuracy_per_round.png)", "",
        "## E-step and M-step per round", "",
        md_table(["round", "edits", "kept", "mean score", "mean gain", "kept mean gain", "kept but no gain",
                  "mean words", "unusable", "M-step loss"], erows), "",
        "![reward distribution](rewards.png)", "",
        "## Example self-edits", "",
    ]
    for r in range(len(rounds)):
        comp = rd.get(rd.key("eval", r, "completions"))
        if not comp:
            continue
        uid, text = next(iter(comp["completions"].items()))
        rec = rd.get(rd.key("eval", r, "self_edit", uid)) or {}
        acc = f"{rec['accuracy']:.2f}" if "accuracy" in rec else "skipped"
        lines += [f"**Policy {r}**, held-out passage {uid} (accuracy {acc}):", "", "```", text[:1000], "```", ""]
    (rd.path / "report.md").write_text("\n".join(lines))


def _reward_histogram(rd: RunDir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    r = 0
    while (sel := rd.get(rd.key("select", r))) is not None:
        ax.hist([e["gain"] for e in sel["edits"]], bins=15, alpha=0.6, label=f"round {r}")
        r += 1
    ax.set_xlabel("self-edit reward: adapted accuracy - unadapted accuracy")
    ax.set_ylabel("self-edits")
    if r:
        ax.legend()
    fig.tight_layout()
    fig.savefig(rd.path / "rewards.png", dpi=120)
    plt.close(fig)
